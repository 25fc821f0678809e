"""``recsys evaluate``: train a model on NCF-format files and report HR@10 / NDCG@10.

Reads the NCF paper's files (``recsys.ncf_files``), trains GMF / MLP / NeuMF (``recsys.ncf``) or
fits a baseline (``recsys.baselines``: popularity, item-kNN, EASE, iALS), and ranks each test item among
its 99 negatives (``recsys.evaluation``). Without ``--negatives``, 99 are drawn per test row with
``--seed`` from the items the user has neither trained nor is tested on. EASE's penalty is
``--ease-lambda`` or is chosen on one training pair per user held out, never on the test rows.
The neural models start from ``--preset`` (``ncf``: NCFConfig's ML-1M defaults; ``worker``: what
``recsys train`` trains) and take ``--set FIELD=VALUE`` for any NCFConfig field.

``recsys split-plays`` (registered here too) writes such files from ``user item count`` play counts
(``recsys.playsplit``): a test cut and a validation cut, one random pair per user each.

``torchrun --standalone --nproc-per-node 2 -m recsys evaluate ...`` trains the neural models with
DDP over two processes (``recsys.ncf.distributed``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from recsys.errors import InputError

log = logging.getLogger("recsys.evaluate")

NEURAL_MODELS = ("neumf", "gmf", "mlp")
PRESETS = ("ncf", "worker")
USER_HISTORY = ("none", "add", "only")
MODELS = (*NEURAL_MODELS, "pop", "itemknn", "ease", "ials")
TOP_K = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="train on NCF-format files and report HR@10 / NDCG@10",
        description="Train a model on NCF-format files and report HR@10 / NDCG@10 (NCF paper protocol).",
    )
    parser.add_argument("--train", required=True, metavar="PATH", help="user\\titem\\trating\\ttimestamp lines")
    parser.add_argument("--test", required=True, metavar="PATH", help="same format, the held-out items")
    parser.add_argument("--negatives", metavar="PATH", help="(user,item)\\tneg1...\\tneg99 lines, one per test row")
    parser.add_argument("--model", choices=MODELS, default="neumf", help="the model to train and evaluate")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--epochs", type=int,
        help="epochs of the model asked for; for neumf, of the fine-tuning after pre-training (default: NCFConfig)",
    )
    parser.add_argument("--gmf-epochs", type=int, help="epochs of NeuMF's GMF pre-training")
    parser.add_argument("--mlp-epochs", type=int, help="epochs of NeuMF's MLP pre-training")
    parser.add_argument("--no-pretrain", action="store_true", help="train NeuMF from scratch")
    parser.add_argument("--factors", type=int, help="GMF factors (default: tuned NCFConfig value)")
    parser.add_argument(
        "--preset", choices=PRESETS, default="ncf",
        help="starting configuration of the neural models: ncf, NCFConfig's ML-1M defaults; worker, what "
        "`recsys train` trains at the current RECSYS_TRAIN_* settings (recsys.worker.ncf_config)",
    )
    parser.add_argument(
        "--user-history", choices=USER_HISTORY,
        help="a user's vector: none, a free row; add, the row plus their training items (SVD++); only, "
        "their training items alone (FISM). Default: the preset's",
    )
    parser.add_argument("--history-alpha", type=float, help="exponent of the bag size of --user-history")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
        help="set any NCFConfig field (recsys/ncf/config.py), e.g. --set lr=0.002 --set mlp_layers=64,32,16; "
        "applied after --preset, before the options above; repeatable",
    )
    parser.add_argument(
        "--ease-lambda", type=float, metavar="L2",
        help="EASE's L2 penalty (default: chosen from 10 .. 30000 on one training pair per user held out)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation and sampling")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU cores to use)")
    parser.add_argument("--full", action="store_true", help="also rank against the whole catalogue")
    parser.add_argument("--plot", metavar="PATH", help="write the training curve (PNG) here")
    parser.add_argument("--eval-every-epoch", action="store_true", help="log HR@10 after every epoch")
    parser.set_defaults(func=run)

    split = subparsers.add_parser(
        "split-plays",
        help="hold out one random pair per user (test, then validation) as NCF files for evaluate",
        description="Split user\\titem\\tcount play counts (e.g. Last.fm's user_artists.dat) into the NCF "
        "files `recsys evaluate` reads: one random pair per user held out for test, one more carved from "
        "the training pairs for validation, each with never-played negatives (recsys/playsplit.py).",
    )
    split.add_argument("plays", metavar="PATH", help="user\\titem\\tcount lines, an optional header")
    split.add_argument("--out", required=True, metavar="DIR", help="folder the files are written to")
    split.add_argument("--prefix", default="plays", help="file name prefix (default: plays)")
    split.add_argument("--seed", type=int, default=0, help="seed of both cuts and their negatives")
    split.add_argument("--negatives", type=int, default=99, help="never-played items per held-out pair")
    split.set_defaults(func=run_split)


def run(args: argparse.Namespace, settings: Any) -> int:
    """Train and evaluate; print the figures. ``settings`` only matter to ``--preset worker``.

    Under ``torchrun`` every rank reads the files and trains its share of each batch (DDP); rank 0
    evaluates and prints.
    """
    from recsys.ncf import distributed

    distributed.init_from_env()
    return _run(args, settings)


def run_split(args: argparse.Namespace, settings: Any) -> int:
    """``recsys split-plays``: write the test and validation cuts and print what they hold."""
    from recsys.playsplit import read_plays, split_plays, write_split

    if args.negatives < 1:
        raise InputError("command line", f"must be at least 1, got {args.negatives}", field="--negatives")
    plays = read_plays(args.plays)
    split = split_plays(plays, args.seed, args.negatives)
    paths = write_split(split, args.out, args.prefix)
    print(
        f"{plays.user_id.shape[0]:,} pairs of {split.user_ids.shape[0]:,} users x {split.item_ids.shape[0]:,} items "
        f"(seed {args.seed}): test {split.test.test_user_idx.shape[0]:,} pairs held out, "
        f"validation {split.valid.test_user_idx.shape[0]:,} more, {args.negatives} negatives each"
    )
    for path in paths:
        print(f"  {path}")
    return 0


def _run(args: argparse.Namespace, settings: Any) -> int:
    import numpy as np

    from recsys import evaluation
    from recsys.ncf import distributed
    from recsys.ncf_files import read_negatives, read_ratings

    train = read_ratings(args.train)
    test = read_ratings(args.test)
    negatives = read_negatives(args.negatives) if args.negatives else None
    if negatives is not None and (
        negatives.user_idx.shape != test.user_idx.shape
        or not np.array_equal(negatives.user_idx, test.user_idx)
        or not np.array_equal(negatives.item_idx, test.item_idx)
    ):
        mismatch = _first_mismatch(negatives, test)
        raise InputError(args.negatives, "(user,item) pairs do not match the test file row by row", row=mismatch)
    arrays = [train.user_idx, test.user_idx]
    items = [train.item_idx, test.item_idx]
    if negatives is not None:
        items.append(negatives.negative_item_idx.ravel())
    n_users = int(max(a.max() for a in arrays)) + 1
    n_items = int(max(a.max() for a in items)) + 1
    if negatives is None:
        try:
            negative_idx = evaluation.sample_test_negatives(
                train.user_idx, train.item_idx, test.user_idx, test.item_idx, n_items, 99, args.seed
            )
        except ValueError as exc:
            raise InputError(args.test, f"cannot draw 99 negatives per test row: {exc}") from exc
    else:
        negative_idx = negatives.negative_item_idx

    started = time.perf_counter()
    epochs: dict[str, dict[str, int]] = {}
    pretrain_epochs = 0
    config_dict = None
    extra: dict[str, Any] = {}
    if args.model in NEURAL_MODELS:
        model, config = _train_ncf(args, settings, train, n_users, n_items, test, negative_idx)
        epochs = stage_epochs(config, model.history)
        pretrain_epochs = config.total_epochs - config.stage(config.model).epochs
        config_dict = config.to_dict()
        if args.plot:
            from recsys.ncf.plots import plot_training_curve

            plot_training_curve(model.history, args.plot)
    elif args.model == "pop":
        from recsys.baselines import Popularity

        model = Popularity(train.user_idx, train.item_idx, n_items)
    elif args.model == "itemknn":
        from recsys.baselines import ItemKNN

        model = ItemKNN(train.user_idx, train.item_idx, n_users, n_items)
    elif args.model == "ials":
        model, extra = _fit_ials(args, train, test, n_users, n_items)
    else:
        model, extra = _fit_ease(args, train, test, n_users, n_items)
    seconds = time.perf_counter() - started
    processes, leader = distributed.world_size(), distributed.is_leader()
    distributed.shutdown()  # training is the only distributed part
    if not leader:
        return 0

    eval_started = time.perf_counter()
    sampled = evaluation.evaluate_sampled(model, test.user_idx, test.item_idx, negative_idx, TOP_K)
    result: dict[str, Any] = {
        "model": args.model,
        "hr@10": round(sampled.hit_ratio, 4),
        "ndcg@10": round(sampled.ndcg, 4),
        "seconds": round(seconds, 1),
        "epochs": epochs,
        "pretrain_epochs": pretrain_epochs,
        "test_cases": sampled.n_cases,
        "negatives_per_case": int(negative_idx.shape[1]),
        "processes": processes,
        **extra,
    }
    if args.full:
        full = evaluation.evaluate_full(
            model, test.user_idx, test.item_idx, train.user_idx, train.item_idx, n_items, TOP_K
        )
        result["full_hr@10"] = round(full.hit_ratio, 4)
        result["full_ndcg@10"] = round(full.ndcg, 4)
    result["eval_seconds"] = round(time.perf_counter() - eval_started, 1)
    if config_dict is not None:
        result["config"] = config_dict

    if args.json:
        print(json.dumps(result))
    else:
        if epochs:
            trained = ", ".join(f"{stage} {e['trained']} epochs (kept {e['kept']})" for stage, e in epochs.items())
        elif "ease_lambda" in extra:
            trained = f"lambda {extra['ease_lambda']:g} ({extra['ease_lambda_chosen_on']})"
        elif "ials_factors" in extra:
            trained = (f"{extra['ials_factors']} factors, reg {extra['ials_reg']:g} "
                       f"({extra['ials_chosen_on']})")
        else:
            trained = "no training epochs"
        line = (
            f"{args.model}: HR@10 {result['hr@10']:.4f}  NDCG@10 {result['ndcg@10']:.4f}  "
            f"({result['test_cases']} test cases x {result['negatives_per_case']} negatives; "
            f"{trained}; {result['seconds']:.1f} s training)"
        )
        print(line)
        if args.full:
            print(f"full catalogue: HR@10 {result['full_hr@10']:.4f}  NDCG@10 {result['full_ndcg@10']:.4f}")
    return 0


def stage_epochs(config: Any, history: list[Any], keep_best: bool = False) -> dict[str, dict[str, int]]:
    """Per stage the run planned (``gmf``, ``mlp``, then ``neumf`` for a pre-trained NeuMF): the epochs it
    ``trained`` and the epoch whose weights it ``kept`` (0: none trained, the stage's starting weights,
    as the fused NeuMF without fine-tuning). Without ``keep_best`` a stage keeps its last epoch; with it,
    its best by HR@10 (the first of equals), as ``recsys.ncf.training.train`` selects."""
    planned = ["gmf", "mlp", "neumf"] if config.model == "neumf" and config.pretrain else [config.model]
    out: dict[str, dict[str, int]] = {}
    for stage in planned:
        run = [s for s in history if s.stage == stage]
        kept = run[-1].epoch if run else 0
        if keep_best and run:
            scored = [s for s in run if s.hr_at_10 is not None]
            if scored:
                best = max(s.hr_at_10 for s in scored)
                kept = next(s.epoch for s in scored if s.hr_at_10 == best)
        out[stage] = {"trained": len(run), "kept": kept}
    return out


def _fit_ease(args: argparse.Namespace, train: Any, test: Any, n_users: int, n_items: int) -> tuple[Any, dict]:
    """EASE with ``--ease-lambda``, or with the best penalty by HR@10 (then NDCG@10) as ``ease_on_grid``
    walks ``EASE_L2_GRID`` from the top, on one training pair per user held out (99 sampled negatives
    each, never a test item), refitted on every training pair. The test cases choose nothing."""
    import numpy as np

    from recsys import evaluation
    from recsys.baselines import EASE, ease_on_grid

    if args.ease_lambda is not None:
        if not args.ease_lambda > 0:
            raise InputError("command line", f"--ease-lambda must be positive, not {args.ease_lambda}")
        model = EASE(train.user_idx, train.item_idx, n_users, n_items, l2=args.ease_lambda)
        return model, {"ease_lambda": model.l2, "ease_lambda_chosen_on": "command line"}
    rest_u, rest_i, held_u, held_i = evaluation.hold_out_one_per_user(
        train.user_idx, train.item_idx, n_items, args.seed
    )
    if held_u.size == 0:
        raise InputError(args.train, "no user has two training pairs to hold one out for choosing EASE's lambda")
    try:
        negatives = evaluation.sample_test_negatives(
            np.concatenate([train.user_idx, test.user_idx]), np.concatenate([train.item_idx, test.item_idx]),
            held_u, held_i, n_items, 99, args.seed,
        )
    except ValueError as exc:
        raise InputError(args.train, f"cannot draw 99 validation negatives per user: {exc}") from exc

    def judge(model: Any) -> tuple[float, float]:
        ranked = evaluation.evaluate_sampled(model, held_u, held_i, negatives, TOP_K)
        log.info("EASE lambda %g: validation HR@10 %.4f NDCG@10 %.4f", model.l2, ranked.hit_ratio, ranked.ndcg)
        return ranked.hit_ratio, ranked.ndcg

    picked, judged = ease_on_grid(rest_u, rest_i, n_users, n_items, judge)
    l2 = picked.l2
    del picked  # its n_items x n_items weights, before the refit makes its own
    model = EASE(train.user_idx, train.item_idx, n_users, n_items, l2=l2)
    return model, {
        "ease_lambda": model.l2,
        "ease_lambda_chosen_on": f"validation: {held_u.size} training pairs held out",
        "ease_lambda_grid": {f"{l2:g}": [round(hr, 4), round(ndcg, 4)] for l2, (hr, ndcg) in judged.items()},
    }


def _validation_pairs(args: argparse.Namespace, train: Any, test: Any, n_items: int, model_name: str):
    """One training pair per user held out, with 99 sampled negatives each (never a test item):
    ``(rest_u, rest_i, held_u, held_i, negatives)``, what a baseline's settings are chosen on."""
    import numpy as np

    from recsys import evaluation

    rest_u, rest_i, held_u, held_i = evaluation.hold_out_one_per_user(
        train.user_idx, train.item_idx, n_items, args.seed
    )
    if held_u.size == 0:
        raise InputError(args.train, f"no user has two training pairs to hold one out for choosing {model_name}'s "
                                     "settings")
    try:
        negatives = evaluation.sample_test_negatives(
            np.concatenate([train.user_idx, test.user_idx]), np.concatenate([train.item_idx, test.item_idx]),
            held_u, held_i, n_items, 99, args.seed,
        )
    except ValueError as exc:
        raise InputError(args.train, f"cannot draw 99 validation negatives per user: {exc}") from exc
    return rest_u, rest_i, held_u, held_i, negatives


def _fit_ials(args: argparse.Namespace, train: Any, test: Any, n_users: int, n_items: int) -> tuple[Any, dict]:
    """iALS (``implicit``) with the best (factors, reg) by HR@10 (then NDCG@10) as ``ials_on_grid`` walks
    them, on one training pair per user held out, refitted on every training pair (as EASE's lambda)."""
    from recsys import evaluation
    from recsys.baselines import IALS, ials_on_grid

    rest_u, rest_i, held_u, held_i, negatives = _validation_pairs(args, train, test, n_items, "iALS")

    def judge(model: Any) -> tuple[float, float]:
        ranked = evaluation.evaluate_sampled(model, held_u, held_i, negatives, TOP_K)
        log.info("iALS %d factors, reg %g: validation HR@10 %.4f NDCG@10 %.4f", model.factors, model.reg,
                 ranked.hit_ratio, ranked.ndcg)
        return ranked.hit_ratio, ranked.ndcg

    picked, judged = ials_on_grid(rest_u, rest_i, n_users, n_items, judge, seed=args.seed)
    model = IALS(train.user_idx, train.item_idx, n_users, n_items, picked.factors, picked.reg, seed=args.seed)
    return model, {
        "ials_factors": model.factors,
        "ials_reg": model.reg,
        "ials_chosen_on": f"validation: {held_u.size} training pairs held out",
        "ials_grid": {f"{f}/{reg:g}": [round(hr, 4), round(ndcg, 4)] for (f, reg), (hr, ndcg) in judged.items()},
    }


def _first_mismatch(negatives: Any, test: Any) -> int:
    n = min(len(negatives.user_idx), len(test.user_idx))
    for row in range(n):
        if negatives.user_idx[row] != test.user_idx[row] or negatives.item_idx[row] != test.item_idx[row]:
            return row + 1
    return n + 1


def ncf_config_from_args(args: argparse.Namespace, settings: Any, n_pairs: int) -> Any:
    """The NCFConfig a neural ``recsys evaluate`` run trains: ``--preset``, then ``--set``, then the
    named options (``--model``, ``--seed``, ``--threads``, epochs, ``--factors``, ``--user-history``...)."""
    from recsys.ncf.config import NCFConfig

    if args.preset == "worker":
        from recsys.worker import ncf_config

        base = ncf_config(settings.training, n_pairs)
    else:
        base = NCFConfig()
    try:
        config = base.replace(**parse_overrides(args.overrides))
    except ValueError as exc:
        raise InputError("command line", str(exc), field="--set") from exc
    changes: dict[str, Any] = {"model": args.model, "seed": args.seed, "threads": args.threads}
    if args.epochs is not None:
        if args.model == "neumf":
            changes["finetune_epochs" if config.pretrain and not args.no_pretrain else "epochs"] = args.epochs
        else:
            changes[f"{args.model}_epochs"] = args.epochs
    if args.gmf_epochs is not None:
        changes["gmf_epochs"] = args.gmf_epochs
    if args.mlp_epochs is not None:
        changes["mlp_epochs"] = args.mlp_epochs
    if args.no_pretrain:
        changes["pretrain"] = False
    if args.factors is not None:
        changes["factors"] = args.factors
    if args.user_history is not None:
        changes["user_history"] = args.user_history
    if args.history_alpha is not None:
        changes["history_alpha"] = args.history_alpha
    try:
        return config.replace(**changes)
    except ValueError as exc:
        raise InputError("command line", str(exc)) from exc


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["lr=0.002", "mlp_layers=64,32,16", "pretrain=false"]`` as NCFConfig changes, each value read
    as the type of the field's default (``extra`` cannot be set). Raises InputError naming the field."""
    import dataclasses

    from recsys.ncf.config import NCFConfig

    defaults = {f.name: getattr(NCFConfig(), f.name) for f in dataclasses.fields(NCFConfig) if f.name != "extra"}
    changes: dict[str, Any] = {}
    for item in overrides:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or name not in defaults:
            raise InputError("command line", f"expected FIELD=VALUE with FIELD an NCFConfig field, got {item!r}",
                             field="--set")
        default = defaults[name]
        try:
            if isinstance(default, bool):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(f"expected true or false, got {text!r}")
                value: Any = text.lower() in ("true", "1")
            elif isinstance(default, tuple):
                value = tuple(int(part) for part in text.split(","))
            elif name == "patience":
                value = None if text.lower() == "none" else int(text)
            else:
                value = type(default)(text)
        except ValueError as exc:
            raise InputError("command line", f"{name}: {exc}", field="--set") from None
        changes[name] = value
    return changes


def _train_ncf(
    args: argparse.Namespace, settings: Any, train: Any, n_users: int, n_items: int, test: Any, negative_idx: Any
):
    from recsys import evaluation
    from recsys.ncf.training import train as train_ncf

    config = ncf_config_from_args(args, settings, len(train))
    hit_ratio = None
    if args.eval_every_epoch:
        hit_ratio = evaluation.hit_ratio_callback(test.user_idx, test.item_idx, negative_idx, TOP_K)
    progress = _ProgressLog(config)
    try:
        model = train_ncf(
            config, train.user_idx, train.item_idx, n_users, n_items, callback=progress, evaluate=hit_ratio
        )
    except ValueError as exc:  # e.g. a user who has every item leaves no negative to sample
        raise InputError(args.train, str(exc)) from exc
    return model, config


class _ProgressLog:
    """Logs one line per epoch to stderr: loss, samples/s, HR@10 if measured, and the run's ETA."""

    def __init__(self, config: Any) -> None:
        self.planned = config.total_epochs
        self.done = 0
        self.seconds = 0.0

    def __call__(self, stats: Any) -> None:
        self.done += 1
        self.seconds += stats.seconds + stats.eval_seconds
        eta = self.seconds / self.done * (self.planned - self.done)
        hr = f"  HR@10 {stats.hr_at_10:.4f}" if stats.hr_at_10 is not None else ""
        log.info(
            "%s epoch %d/%d  loss %.4f  %.1f s  %.0fk samples/s%s  ETA %.0f s",
            stats.stage, stats.epoch, stats.epochs, stats.loss, stats.seconds,
            stats.samples_per_second / 1e3, hr, eta,
        )
        sys.stderr.flush()
