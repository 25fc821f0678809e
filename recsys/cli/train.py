"""``recsys train``: the training worker (NeuMF on consolidated interactions -> a gated model version).

``torchrun --standalone --nproc-per-node 2 -m recsys train`` trains with DDP over two processes:
rank 0 reads the database, evaluates and writes the version; the other ranks only train.
"""

from __future__ import annotations

import argparse
from datetime import date

from recsys.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train NeuMF, evaluate, write a version, gate and activate it")
    parser.add_argument("--end-day", type=date.fromisoformat, help="last day of the window (default: latest data)")
    parser.add_argument("--epochs", type=int, help="override RECSYS_TRAIN_EPOCHS")
    parser.add_argument(
        "--no-activate", dest="activate", action="store_false",
        help="gate the version as usual but leave one that passes ready, not active (exit 0): a candidate "
        "for an experiment (docs/experiments.md)",
    )
    parser.add_argument(
        "--outcome-file", metavar="PATH",
        help="also write the outcome as JSON here (torchrun turns every failing exit code into 1; "
        "`recsys pipeline run` reads this instead). Only for the pipeline: it holds the pipeline lock, "
        "so this run does not take it",
    )
    parser.set_defaults(func=run)


EXIT_REFUSED = 3
"""The quality gate refused the version (it stays inactive). A version that passes exits 0: active, or
ready with ``--no-activate``."""

EXIT_BUSY = 4
"""As ``recsys pipeline run``: another pipeline or training run holds the pipeline lock."""


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Under ``torchrun`` rank 0 runs the worker and the other ranks train alongside it (DDP)."""
    from recsys.ncf import distributed

    if distributed.init_from_env() and not distributed.is_leader():
        from recsys.followers import follow_training

        follow_training()
        return 0
    return _run(args, settings)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    from recsys.db.engine import create_engine
    from recsys.db.pipeline_runs import PipelineBusy, pipeline_lock
    from recsys.worker import is_training_busy, run_training

    if args.epochs is not None:
        settings = settings.replace(train_epochs=args.epochs)
    try:
        engine = create_engine(settings)
        try:
            if args.outcome_file:
                # Started by `recsys pipeline run` under torchrun: the pipeline holds its lock itself.
                outcome = run_training(engine, settings, end_day=args.end_day, activate=args.activate)
            else:
                # The pipeline's own lock: a pipeline started meanwhile exits 4 instead of failing its
                # training stage, and this run exits 4 while a pipeline runs (issue 10).
                with pipeline_lock(engine):
                    outcome = run_training(engine, settings, end_day=args.end_day, activate=args.activate)
        finally:
            engine.dispose()
    except PipelineBusy as exc:
        print(f"recsys train: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except Exception as exc:
        if args.outcome_file:
            _write_outcome(args.outcome_file, {"error": _describe(exc), "busy": is_training_busy(exc)})
        raise
    if args.outcome_file:
        _write_outcome(args.outcome_file, {
            "version_id": outcome.version_id,
            "activated": outcome.activated,
            "seconds": outcome.seconds,
            "stage_seconds": outcome.stage_seconds,
        })
    from recsys.metrics import BASELINES

    m = outcome.metrics
    print(
        f"version {outcome.version_id}: HR@10 {m.model.hr:.3f}, NDCG@10 {m.model.ndcg:.3f} "
        f"(full catalogue HR@10 {m.full.hr:.3f}) on {m.test_players:,} holdout players, "
        f"{outcome.seconds:.0f} s"
    )
    measured = [(b, m.baselines[b.key]) for b in BASELINES if b.key in m.baselines]
    print("baselines on the same cases, HR@10 / NDCG@10: " + ", ".join(
        f"{b.name}{_settings(f.params)} {f.hr:.3f} / {f.ndcg:.3f}" for b, f in measured))
    verdict = {"active": "activated", "ready": "ready, NOT activated (--no-activate)"}.get(
        outcome.status, "NOT activated"
    )
    print(f"quality gate: {outcome.gate.reason} -> {verdict}")
    return 0 if outcome.passed else EXIT_REFUSED


def _describe(exc: BaseException) -> str:
    from recsys.errors import RecsysError

    return str(exc) if isinstance(exc, RecsysError) else f"{type(exc).__name__}: {exc}"


def _write_outcome(path: str, outcome: dict) -> None:
    """Write ``outcome`` as JSON, whole or not at all (a reader never sees half a file)."""
    import json
    import os

    partial = f"{path}.partial"
    with open(partial, "w") as out:
        json.dump(outcome, out)
    os.replace(partial, path)


def _settings(params: dict) -> str:
    """`` (lambda 500)``, `` (factors 64, reg 0.1)``: the settings a baseline was fitted with."""
    return "" if not params else " (" + ", ".join(f"{k} {v:g}" for k, v in params.items()) + ")"
