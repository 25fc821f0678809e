"""Experiment results at volume: the per-player query against the views it replaced, and its plan.

    python bench/bench_experiment_query.py [--experiments 10] [--lists 20000] [--background 100000]
                                           [--grow 3] [--repeat 3]

Builds, in an embedded PostgreSQL in a temporary folder, a log of ``--experiments`` experiments
with ``--lists`` lists each, and ``--background`` lists made outside any experiment, all of 5
items logged in the last day, with an impression of every item, a click on a tenth of them, a play
session attributed to each click and a dismissal on a fiftieth (10^6 items with the defaults).
Then times, best of ``--repeat``:

* **before**: the results of one experiment as ``GET /v1/experiments/{name}`` read them before
  migration 0009 (``v_experiment_outcomes`` and each click's minutes from ``v_experiment_items``),
  without the new indexes (``GET /v1/experiments`` read that once per experiment listed; every
  read aggregated every experiment's items, so each costs the same; ``--before-all`` times them all);
* **after**: ``recsys.db.experiments.outcomes`` (per-player sums, with the indexes of 0009) for
  one experiment, and for every experiment (``GET /v1/experiments``).

It prints the new query's EXPLAIN (ANALYZE) for one experiment, then adds ``--grow`` times the
background log and times both again: the new query's time follows the experiment's size, not the
log's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.db import experiments as store  # noqa: E402
from recsys.db import migrations  # noqa: E402
from recsys.db.embedded import embedded_url  # noqa: E402
from recsys.db.engine import sqlalchemy_url  # noqa: E402
from recsys.experiments import Arm  # noqa: E402

PLAYERS, SLOTS, ITEMS = 20_000, 500, 5
NEW_INDEXES = ("ix_recommendations_experiment", "ix_play_sessions_recommendation_id_slot_key")


def seed(engine, experiments: int, lists: int, background: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO players (player_id, marketing_consent) "
                             "SELECT 'P' || g, true FROM generate_series(1, :n) g"), {"n": PLAYERS})
        conn.execute(sa.text(
            "INSERT INTO slots (slot_id, name, provider, theme, volatility, rtp, min_bet, max_bet) "
            "SELECT 's' || g, 'S' || g, 'acme', 'fruit', 'medium', 96.0, 0.1, 100 FROM generate_series(1, :n) g"),
            {"n": SLOTS})
    for e in range(experiments):
        experiment = store.start(engine, f"exp-{e}", (Arm("control", None, 50), Arm("candidate", None, 50)))
        add_lists(engine, lists, experiment.id)
        store.stop(engine, experiment.name)


def add_lists(engine, lists: int, experiment_id: int | None) -> None:
    """``lists`` lists of 5 items over the last day, with their feedback and attributed play."""
    with engine.begin() as conn:
        conn.execute(sa.text("""
            CREATE TEMP TABLE new_lists ON COMMIT DROP AS
            SELECT gen_random_uuid() AS id, (SELECT min(id) FROM players) + (random() * (:players - 1))::int AS p,
                   now() - random() * interval '23 hours' AS at,
                   CASE WHEN random() < 0.5 THEN 'control' ELSE 'candidate' END AS arm
            FROM generate_series(1, :n)"""), {"n": lists, "players": PLAYERS})
        conn.execute(sa.text(
            "INSERT INTO recommendations (id, player_key, trigger, experiment_id, arm, created_at) "
            "SELECT id, p, 'api', CAST(:e AS int), CASE WHEN :e IS NULL THEN NULL ELSE arm END, at FROM new_lists"),
            {"e": experiment_id})
        conn.execute(sa.text("""
            CREATE TEMP TABLE new_items ON COMMIT DROP AS
            SELECT l.id AS r, l.p, l.at, rank, (SELECT min(id) FROM slots) + ((abs(hashtext(l.id::text)) + rank * 97)
                   % :slots) AS s, random() AS u
            FROM new_lists l, generate_series(1, :k) rank"""), {"k": ITEMS, "slots": SLOTS})
        conn.execute(sa.text(
            "UPDATE recommendations r SET slot_keys = i.slots, scores = i.scores, reasons = i.reasons, "
            "explored = i.explored FROM (SELECT r, at, array_agg(s ORDER BY rank) AS slots, "
            "array_agg(1.0 ORDER BY rank) AS scores, array_agg('personal' ORDER BY rank) AS reasons, "
            "array_agg(false ORDER BY rank) AS explored FROM new_items GROUP BY r, at) i "
            "WHERE r.id = i.r AND r.created_at = i.at"))
        conn.execute(sa.text("""
            INSERT INTO feedback (recommendation_id, slot_key, action, ts)
            SELECT r, s, 'impression', at FROM new_items
            UNION ALL SELECT r, s, 'click', at FROM new_items WHERE u < 0.1
            UNION ALL SELECT r, s, 'dismiss', at FROM new_items WHERE u > 0.98"""))
        conn.execute(sa.text("""
            INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at, ended_at,
                                       seconds, recommendation_id)
            SELECT 'b-' || r || '-' || rank, p, s, at, at + interval '10 minutes', at + interval '10 minutes',
                   u * 6000, r FROM new_items WHERE u < 0.1"""))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("ANALYZE recommendations, feedback, play_sessions"))


def before(engine, experiment_ids: list[int]) -> None:
    """What the results read per experiment before 0009 (recsys.db.experiments.outcomes then)."""
    with engine.connect() as conn:
        for e in experiment_ids:
            conn.execute(sa.text("SELECT arm, players, lists, items, impressions, clicks, plays, dismissals "
                                 "FROM v_experiment_outcomes WHERE experiment_id = :e"), {"e": e}).all()
            conn.execute(sa.text("SELECT arm, array_agg(seconds_after_click / 60.0) FROM v_experiment_items "
                                 "WHERE experiment_id = :e AND clicked GROUP BY arm"), {"e": e}).all()


def after(engine, experiments) -> None:
    for experiment in experiments:
        store.outcomes(engine, experiment)


def best(repeat: int, call) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def indexes(engine, present: bool) -> None:
    with engine.begin() as conn:
        if present:
            conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_recommendations_experiment ON recommendations "
                                 "(experiment_id, arm, player_key) WHERE experiment_id IS NOT NULL"))
            conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_play_sessions_recommendation_id_slot_key "
                                 "ON play_sessions (recommendation_id, slot_key) WHERE recommendation_id IS NOT NULL"))
        else:
            for name in NEW_INDEXES:
                conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))


def log_items(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(sa.text("SELECT count(*) FROM recommendation_items")).scalar_one(),
                conn.execute(sa.text("SELECT count(*) FROM recommendation_items i JOIN recommendations r "
                                     "ON r.id = i.recommendation_id WHERE r.experiment_id IS NOT NULL")).scalar_one())


def measure(engine, experiments, repeat: int, before_all: bool) -> None:
    total, in_experiments = log_items(engine)
    ids = [e.id for e in experiments]
    print(f"log: {total:,} items in the last day, {in_experiments:,} of them in {len(experiments)} experiments "
          f"({in_experiments // len(experiments):,} each)")
    indexes(engine, present=False)
    old_one = best(repeat, lambda: before(engine, ids[:1]))
    print(f"  before (views, no 0009 indexes), one experiment:             {old_one * 1000:8.0f} ms")
    if before_all:
        old_all = best(repeat, lambda: before(engine, ids))
        print(f"  before, {len(ids)} experiments:                                  {old_all * 1000:8.0f} ms")
    indexes(engine, present=True)
    new_one = best(repeat, lambda: after(engine, experiments[:1]))
    new_all = best(repeat, lambda: after(engine, experiments))
    print(f"  after (per-player query, 0009 indexes), one experiment:      {new_one * 1000:8.0f} ms"
          f"   (x{old_one / new_one:.1f} faster)")
    print(f"  after, {len(ids)} experiments:                                   {new_all * 1000:8.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--lists", type=int, default=10_000, help="lists per experiment")
    parser.add_argument("--background", type=int, default=100_000, help="lists outside any experiment")
    parser.add_argument("--grow", type=int, default=3, help="then add this many times --background more")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before-all", action="store_true", help="also time the views for every experiment")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-experiment-query-") as folder:
        url = embedded_url(Path(folder))
        migrations.upgrade(url)
        engine = sa.create_engine(sqlalchemy_url(url))
        started = time.perf_counter()
        seed(engine, args.experiments, args.lists, args.background)
        add_lists(engine, args.background, None)
        print(f"seeded in {time.perf_counter() - started:.0f} s")
        experiments = store.list_all(engine, args.experiments)
        measure(engine, experiments, args.repeat, args.before_all)
        with engine.connect() as conn:
            plan = conn.execute(sa.text("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) "
                                        + store._PER_PLAYER), {"e": experiments[0].id, "threshold": 3600.0})
            print("\nEXPLAIN ANALYZE of the per-player query, one experiment:")
            print("\n".join("    " + row[0] for row in plan))
        if args.grow:
            started = time.perf_counter()
            add_lists(engine, args.grow * args.background, None)
            print(f"\nadded {args.grow * args.background:,} lists outside the experiments "
                  f"in {time.perf_counter() - started:.0f} s")
            measure(engine, experiments, args.repeat, args.before_all)
        engine.dispose()


if __name__ == "__main__":
    main()
