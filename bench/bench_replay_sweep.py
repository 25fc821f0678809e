"""The trigger's list replayed (recsys.replay) over blend weight x exploration share, on a synthetic casino.

Trains one version with the worker's settings (``recsys.worker.run_training``) on an embedded
PostgreSQL in a temporary folder (or ``RECSYS_DATABASE_URL``), then replays the long sessions of the
holdout days: the sweep on the validation half's players chooses the setting, and the test half's
players give its figures next to the served default's and the simple policies'. Prints both tables.

    python bench/bench_replay_sweep.py --players 20000 --slots 500 --days 30
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from recsys.db import migrations
from recsys.db.consolidation import consolidate
from recsys.db.embedded import embedded_url
from recsys.db.engine import create_engine, with_database
from recsys.db.synth_store import write_casino
from recsys.holdout_cases import evaluation_cases, time_holdout
from recsys.replay import counted_cases, replay
from recsys.replay_run import replay_inputs
from recsys.settings import Settings
from recsys.synth import SynthConfig
from recsys.worker import run_training

DATABASE = "recsys_bench_replay"
BLENDS = (0.0, 0.3, 0.5, 0.7, 0.9, 1.0)
SHARES = (0.0, 0.1, 0.2, 0.3)
SIMPLE = ("faiss", "model", "itemknn", "popularity")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=20_000)
    parser.add_argument("--slots", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override RECSYS_TRAIN_EPOCHS")
    parser.add_argument("--draws", type=int, default=5, help="exploration draws averaged per case")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as folder:
        server = os.environ.get("RECSYS_DATABASE_URL") or embedded_url(Path(folder) / "server")
        admin = with_database(server, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DATABASE}")
        url = with_database(server, DATABASE)
        migrations.upgrade(url)
        settings = Settings.from_env(database_url=url, data_dir=Path(folder) / "data")
        if args.epochs is not None:
            settings = settings.replace(train_epochs=args.epochs)
        engine = create_engine(settings, url)
        try:
            _run(engine, settings, args)
        finally:
            engine.dispose()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    return 0


def _run(engine, settings: Settings, args) -> None:
    started = time.perf_counter()
    config = SynthConfig(players=args.players, slots=args.slots, days=args.days, seed=args.seed)
    write_casino(engine, config, progress=False)
    consolidate(engine, settings.scoring)
    outcome = run_training(engine, settings)
    data = outcome.data
    holdout = time_holdout(data, settings.training)
    _, _, test_cases, validation_cases = evaluation_cases(data, holdout, settings.training)
    print(
        f"casino {args.players:,} players x {args.slots:,} slots x {args.days} days (seed {args.seed}); version "
        f"{outcome.version_id}: HR@10 {outcome.metrics.model.hr:.3f} (sampled); built in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    halves = {}
    for name, cases in (("validation", validation_cases), ("test", test_cases)):
        t = time.perf_counter()
        halves[name] = replay_inputs(engine, settings, outcome.version_id, data, cases[0], holdout.train)
        print(f"{name} half: {counted_cases(halves[name].cases):,} long sessions with a new slot in the next "
              f"{settings.training.replay_hours} h ({time.perf_counter() - t:.1f} s to read)", flush=True)

    ranking = settings.ranking
    served = (ranking.blend_weight, ranking.exploration_share)
    print(f"\nvalidation half, served policy HR@10 / NDCG@10 (default: blend {served[0]}, exploration {served[1]}; "
          f"exploration averaged over {args.draws} draws)")
    print(f"{'blend':>5}  " + "  ".join(f"{'explore ' + format(s, '.1f'):>15}" for s in SHARES))
    sweep = {}
    t = time.perf_counter()
    for blend in BLENDS:
        cells = []
        for share in SHARES:
            setting = dataclasses.replace(ranking, blend_weight=blend, exploration_share=share)
            figures = replay(halves["validation"].cases, halves["validation"].world, setting, draws=args.draws,
                             seed=settings.training.seed, policies=("served",))["served"]
            sweep[blend, share] = figures
            cells.append(f"{figures.hr:.3f} / {figures.ndcg:.3f}")
        print(f"{blend:>5}  " + "  ".join(f"{c:>15}" for c in cells), flush=True)
    simple_validation = replay(halves["validation"].cases, halves["validation"].world, ranking, policies=SIMPLE)
    print("simple policies: " + ", ".join(f"{p} {f.hr:.3f} / {f.ndcg:.3f}" for p, f in simple_validation.items())
          + f"  ({time.perf_counter() - t:.0f} s)")

    # Exploration costs hits by design; it is chosen for what it learns, so the best blend is chosen at
    # each share, and the share is the served one.
    best_blend = max(BLENDS, key=lambda b: (sweep[b, served[1]].hr, sweep[b, served[1]].ndcg))
    print(f"\nchosen on the validation half: blend {best_blend} at exploration {served[1]}")
    test = halves["test"]
    print("test half, HR@10 / NDCG@10:")
    for label, blend, share in (("served default", *served), ("chosen blend", best_blend, served[1]),
                                ("chosen blend, exploration off", best_blend, 0.0)):
        setting = dataclasses.replace(ranking, blend_weight=blend, exploration_share=share)
        figures = replay(test.cases, test.world, setting, draws=args.draws, seed=settings.training.seed,
                         policies=("served",))["served"]
        print(f"  {label:<31} (blend {blend}, exploration {share}): {figures.hr:.3f} / {figures.ndcg:.3f}")
    for policy, figures in replay(test.cases, test.world, ranking, policies=SIMPLE).items():
        print(f"  {policy:<31}: {figures.hr:.3f} / {figures.ndcg:.3f}")


if __name__ == "__main__":
    sys.exit(main())
