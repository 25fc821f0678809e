"""The trigger's list replayed (recsys.replay) over blend weight x exploration share, on a synthetic casino.

Trains one version with the worker's settings (``recsys.worker.run_training``) on an embedded
PostgreSQL in a temporary folder (or ``RECSYS_DATABASE_URL``) on the casino's days up to
``--replay-days`` before its end, as last night's version would have been, then replays every long
session of the days after it: each new slot a player first played in the 24 h after a crossing is a
target the version never saw. The players are split in two halves (seeded): the sweep on the
validation half's cases chooses the setting, and the test half's give its figures next to the served
default's and the simple policies'. Prints both tables.

    python bench/bench_replay_sweep.py --players 20000 --slots 500 --days 30 --replay-days 7
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

from recsys.db import migrations
from recsys.db.consolidation import consolidate
from recsys.db.embedded import embedded_url
from recsys.db.engine import create_engine, with_database
from recsys.db.synth_store import write_casino
from recsys.db.training_data import latest_day
from recsys.holdout_cases import time_holdout
from recsys.replay import counted_cases, replay
from recsys.replay_run import ReplayInputs, replay_inputs
from recsys.settings import Settings
from recsys.synth import SynthConfig
from recsys.worker import run_training

DATABASE = "recsys_bench_replay"
BLENDS = (0.0, 0.3, 0.5, 0.7, 1.0)
SHARES = (0.0, 0.1, 0.2)
SIMPLE = ("faiss", "model", "itemknn", "popularity")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=20_000)
    parser.add_argument("--slots", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override RECSYS_TRAIN_EPOCHS")
    parser.add_argument("--draws", type=int, default=5, help="exploration draws averaged per case")
    parser.add_argument("--replay-days", type=int, default=7, help="days after the version's window replayed")
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
    last = latest_day(engine)
    trained_to = last - timedelta(days=args.replay_days)
    outcome = run_training(engine, settings, end_day=trained_to)
    data = outcome.data
    holdout = time_holdout(data, settings.training)
    window = (_midnight(trained_to + timedelta(days=1)), _midnight(last + timedelta(days=1)))
    print(
        f"casino {args.players:,} players x {args.slots:,} slots x {args.days} days (seed {args.seed}); version "
        f"{outcome.version_id} trained to {trained_to}: HR@10 {outcome.metrics.model.hr:.3f} (sampled); "
        f"replaying {window[0]:%Y-%m-%d} .. {last}; built in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    t = time.perf_counter()
    everyone = replay_inputs(engine, settings, outcome.version_id, data, holdout.train, window=window)
    players = np.unique([case.player_key for case in everyone.cases])
    validation_players = set(np.random.default_rng(args.seed).permutation(players)[: players.size // 2].tolist())
    halves = {
        "validation": ReplayInputs([c for c in everyone.cases if c.player_key in validation_players], everyone.world),
        "test": ReplayInputs([c for c in everyone.cases if c.player_key not in validation_players], everyone.world),
    }
    for name, half in halves.items():
        print(f"{name} half: {counted_cases(half.cases):,} long sessions with a new slot in the next "
              f"{settings.training.replay_hours} h", flush=True)
    print(f"({time.perf_counter() - t:.1f} s to read)")

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

    # Exploration costs hits by design (it is there for what it learns about new slots), so the best
    # blend is chosen at each share; the table shows what each share costs.
    best = {share: max(BLENDS, key=lambda b, s=share: (sweep[b, s].hr, sweep[b, s].ndcg)) for share in SHARES}
    print("\nbest blend on the validation half at each exploration share: "
          + ", ".join(f"{share}: {blend}" for share, blend in best.items()))
    test = halves["test"]
    print("test half, HR@10 / NDCG@10:")
    rows = [("served default", *served)] + [(f"best blend at exploration {s}", b, s) for s, b in best.items()]
    for label, blend, share in rows:
        setting = dataclasses.replace(ranking, blend_weight=blend, exploration_share=share)
        figures = replay(test.cases, test.world, setting, draws=args.draws, seed=settings.training.seed,
                         policies=("served",))["served"]
        print(f"  {label:<32} (blend {blend}, exploration {share}): {figures.hr:.3f} / {figures.ndcg:.3f}", flush=True)
    for policy, figures in replay(test.cases, test.world, ranking, policies=SIMPLE).items():
        print(f"  {policy:<32}: {figures.hr:.3f} / {figures.ndcg:.3f}")

    # Is the served default level with the best simple policy? The difference per session, and its
    # standard error (both lists are scored on the same sessions, so the pair's noise is what counts).
    rival = max(SIMPLE, key=lambda p: (simple_validation[p].hr, simple_validation[p].ndcg))
    print(f"\nserved default minus {rival} (the best simple policy on the validation half), per session, "
          "mean +- standard error, HR@10 / NDCG@10:")
    for name, half in halves.items():
        differences = np.array([
            [served.hr - other.hr, served.ndcg - other.ndcg]
            for case in half.cases if case.target_keys.size
            for served, other in [_pair(case, half.world, ranking, rival, args.draws, settings.training.seed)]
        ])
        mean, error = differences.mean(axis=0), differences.std(axis=0, ddof=1) / np.sqrt(len(differences))
        print(f"  {name:<10}: {mean[0]:+.3f} +- {error[0]:.3f} / {mean[1]:+.3f} +- {error[1]:.3f}")


def _pair(case, world, ranking, rival: str, draws: int, seed: int):
    figures = replay([case], world, ranking, draws=draws, seed=seed, policies=("served", rival))
    return figures["served"], figures[rival]


def _midnight(day) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


if __name__ == "__main__":
    sys.exit(main())
