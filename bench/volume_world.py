"""A casino at real volume for the operator's views (issue 22, failure 5), built once and kept.

    python bench/volume_world.py [--items 1000000] [--rebuild]

``--items`` logged list items (10 per list, plus one suppressed list in 20 without items) spread
evenly over the last 30 days, feedback on a tenth of them (impressions 7 %, clicks 2 %, dismissals
1 %), a play session attributed to 1 % (the clicked ones that were played), two unattributed sessions
per list, 20 experiments one after
the other (the last still running, two arms each) and bench_api.py's seeded casino (slots,
players, an active NeuMF-shaped version) so that recommendations can be served from the same
database. At 10^7 items that is 10^6 feedback rows and ~330k items in any 24 hours (the issue saw
373k).

Everything past the casino is made in SQL (``INSERT ... SELECT`` over ``generate_series``, one day
at a time with a progress line), in the database ``recsys_volume_<items>`` of an embedded server in
``bench/out/volume`` (ignored by git). The world is kept between runs and rebuilt only when asked or
when it is older than ``--max-age-hours``: its timestamps are fixed at build time, so the dashboard's
"last 24 hours" empties as the world ages. A kept world is upgraded to this checkout's head; when a
merge re-chains the migrations under it (a revision inserted below the one it stands at), rebuild
it with ``--rebuild``. Lists that benches served into it are deleted when it is opened again.
Never part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DATA_DIR = ROOT / "bench" / "out" / "volume"
DAYS = 30
ITEMS_PER_LIST = 10
EXPERIMENTS = 20
FEEDBACK_RATES = {"impression": 0.07, "click": 0.02, "dismiss": 0.01}  # of items; clicks and dismissals are
PLAYED = 0.01  # of items: of the clicked ones, a play session attributed   # drawn among the impressed

# One draw in [0, 1) per item (list g, rank k), the same in every statement that needs it.
DRAW = "(abs(hashint8(g * 16 + k)::bigint) %% 100000) / 100000.0::float8"


def server_url() -> str:
    """The bench's own embedded server (started here, stopped when this process exits)."""
    from recsys.db.embedded import embedded_url

    return embedded_url(DATA_DIR)


def open_world(items: int, *, rebuild: bool = False, max_age_hours: float = 12.0,
               slots: int = 5000, players: int = 20000) -> tuple[str, dict]:
    """The URL of the world with ``items`` logged items (built now if missing, unfinished, too old or
    ``rebuild``) and what it holds: ``{"items", "built_at", "player_ids", "slot_ids", "version"}``."""
    import psycopg

    from recsys.db import migrations
    from recsys.db.engine import with_database

    database = f"recsys_volume_{items}"
    admin = with_database(server_url(), "postgres")
    url = with_database(admin, database)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is not None
    if exists and not rebuild:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT items, built_at, now() - built_at < make_interval(secs => %s) FROM bench_world "
                "WHERE finished", (max_age_hours * 3600,)).fetchone() if _has_marker(conn) else None
        if row is not None and row[2]:
            print(f"world {database}: kept from {row[1]:%Y-%m-%d %H:%M} UTC", flush=True)
            migrations.upgrade(url)  # this branch's newer migrations (indexes) reach a kept world too
            with psycopg.connect(url) as conn:  # the lists earlier benches had served go, and with them
                # the running experiment's rollup
                conn.execute("DELETE FROM recommendations WHERE created_at > %s", (row[1],))
                for table in ("experiment_list_outcomes", "experiment_player_outcomes"):
                    conn.execute(f"DELETE FROM {table} WHERE experiment_id IN "
                                 "(SELECT id FROM experiments WHERE status = 'running')")
                conn.execute("DELETE FROM experiment_rollups WHERE frozen IS NULL")
            return url, _describe(url, items, row[1])
        print(f"world {database}: {'unfinished' if row is None else 'too old'}, rebuilding", flush=True)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {database}")
    migrations.upgrade(url)
    build(url, items, slots=slots, players=players)
    with psycopg.connect(url) as conn:
        built_at = conn.execute("SELECT built_at FROM bench_world").fetchone()[0]
    return url, _describe(url, items, built_at)


def _has_marker(conn) -> bool:
    return conn.execute("SELECT to_regclass('bench_world') IS NOT NULL").fetchone()[0]


def _describe(url: str, items: int, built_at) -> dict:
    import psycopg

    with psycopg.connect(url) as conn:
        slot_ids = [r[0] for r in conn.execute("SELECT slot_id FROM slots ORDER BY id")]
        player_ids = [r[0] for r in conn.execute("SELECT player_id FROM players ORDER BY id")]
        version = conn.execute("SELECT id FROM model_versions WHERE status = 'active'").fetchone()[0]
    return {"items": items, "built_at": built_at, "slot_ids": slot_ids, "player_ids": player_ids, "version": version}


def build(url: str, items: int, *, slots: int, players: int) -> None:
    """Fill the migrated, empty database at ``url`` (see the module's docstring)."""
    from datetime import timedelta

    import psycopg
    import sqlalchemy as sa
    from bench_api import seed_casino

    from recsys.db.engine import create_engine
    from recsys.db.retention import ensure_partitions
    from recsys.settings import Settings

    started = time.perf_counter()
    engine = create_engine(Settings.from_env(database_url=url), url)
    print(f"seeding the casino: {slots:,} slots, {players:,} players ...", flush=True)
    world = seed_casino(engine, slots=slots, players=players, sessions_per_player=2)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE bench_world (items bigint, built_at timestamptz DEFAULT now(), finished bool DEFAULT false)"))
        conn.execute(sa.text("INSERT INTO bench_world (items) VALUES (:n)"), {"n": items})
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
        for day in range(DAYS + 2):  # a partition for each month the 30 days touch
            ensure_partitions(conn, (now - timedelta(days=DAYS - day)).date(), 0)
    engine.dispose()

    lists = -(-items * 20 // (19 * ITEMS_PER_LIST))  # one list in 20 is suppressed, without items
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        player_low, player_high = conn.execute("SELECT min(id), max(id) FROM players").fetchone()
        slot_low, slot_high = conn.execute("SELECT min(id), max(id) FROM slots").fetchone()
        conn.execute(EXPERIMENTS_SQL, {"v": world["version"], "n": EXPERIMENTS, "days": DAYS})
        params = {"lists": lists, "days": DAYS, "v": world["version"], "p0": player_low,
                  "np": player_high - player_low + 1, "s0": slot_low, "ns": slot_high - slot_low + 1}
        per_day = -(-lists // DAYS)
        for day in range(DAYS):
            first, last = day * per_day, min((day + 1) * per_day, lists)
            step = time.perf_counter()
            with conn.transaction():
                for statement in (LISTS_SQL, FEEDBACK_SQL, PLAYS_SQL, SESSIONS_SQL):
                    conn.execute(statement, {**params, "g0": first, "g1": last})
            print(f"  day {day + 1:>2}/{DAYS}: lists {first:,}-{last - 1:,} with their items, feedback and plays "
                  f"in {time.perf_counter() - step:.1f} s", flush=True)
        print("VACUUM ANALYZE ...", flush=True)
        conn.execute("VACUUM ANALYZE")
        conn.execute("UPDATE bench_world SET finished = true, built_at = now()")  # after the last list
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM recommendations), (SELECT sum(cardinality(slot_keys)) FROM recommendations), "
            "(SELECT count(*) FROM feedback), "
            "(SELECT count(*) FROM play_sessions WHERE recommendation_id IS NOT NULL), "
            "(SELECT count(*) FROM experiments)").fetchone()
    print(f"built in {time.perf_counter() - started:.0f} s: {counts[0]:,} lists, {counts[1]:,} items, "
          f"{counts[2]:,} feedback rows, {counts[3]:,} attributed play sessions, {counts[4]} experiments", flush=True)


# Experiment k runs for 1.5 days from day 1.5 k; the last one is still running. Arms: the active
# version against popularity.
EXPERIMENTS_SQL = """
WITH made AS (
    INSERT INTO experiments (name, status, started_at, stopped_at)
    SELECT format('volume-%%s', lpad(k::text, 2, '0')),
           CASE WHEN k = %(n)s - 1 THEN 'running' ELSE 'stopped' END,
           now() - make_interval(days => %(days)s) + k * make_interval(days => %(days)s) / %(n)s,
           CASE WHEN k < %(n)s - 1 THEN now() - make_interval(days => %(days)s)
                                        + (k + 1) * make_interval(days => %(days)s) / %(n)s END
    FROM generate_series(0, %(n)s - 1) AS k
    RETURNING id
)
INSERT INTO experiment_arms (experiment_id, position, name, version_id, weight, strategy)
SELECT id, a.position, a.name, CASE WHEN a.position = 0 THEN %(v)s::int END, 50,
       CASE WHEN a.position = 1 THEN 'popularity' END
FROM made CROSS JOIN (VALUES (0, 'control'), (1, 'candidate')) AS a(position, name)
"""

# List g: created at an even spacing over the 30 days, by player p0 + (g * a prime) mod np; every
# twentieth suppressed (no items), every tenth made by the session trigger; split by the experiment
# running then (arm by the player's parity).
LISTS_SQL = """
INSERT INTO recommendations (id, player_key, version_id, trigger, market, suppressed_reason, filters,
                             experiment_id, arm, created_at, slot_keys, scores, reasons, explored)
SELECT l.id, l.player_key, CASE WHEN l.reason IS NULL THEN %(v)s::int END, l.trigger, 'GB', l.reason,
       '{"source": "bench"}'::jsonb, e.id,
       CASE WHEN e.id IS NOT NULL AND l.reason IS NULL THEN
           CASE WHEN l.player_key %% 2 = 0 THEN 'control' ELSE 'candidate' END END,
       l.created_at, i.slot_keys, i.scores, i.reasons, i.explored
FROM (
    SELECT g, md5('list' || g)::uuid AS id, %(p0)s + (g * 7919) %% %(np)s AS player_key,
           CASE WHEN g %% 10 = 3 THEN 'session_threshold' ELSE 'api' END AS trigger,
           CASE WHEN g %% 20 = 7 THEN (ARRAY['self_excluded', 'cooling_off', 'no_consent', 'risk_flag'])[g %% 4 + 1]
           END AS reason,
           now() - make_interval(days => %(days)s) + (g + 0.5)::float8 / %(lists)s * make_interval(days => %(days)s)
               AS created_at
    FROM generate_series(%(g0)s::bigint, %(g1)s::bigint - 1) AS g
) l
LEFT JOIN experiments e ON l.created_at >= e.started_at AND l.created_at < coalesce(e.stopped_at, 'infinity')
                       AND l.reason IS NULL
-- Ten items (ITEMS' slots, ranks 1-10, the last one explored), none on a suppressed list.
CROSS JOIN LATERAL (
    SELECT coalesce(array_agg(%(s0)s + (l.g * 7919 + k * 104729) %% %(ns)s ORDER BY k), '{}') AS slot_keys,
           coalesce(array_agg(1.0 - k / 20.0 ORDER BY k), '{}') AS scores,
           coalesce(array_agg(CASE WHEN k = 10 THEN 'explore' ELSE 'personal' END ORDER BY k), '{}') AS reasons,
           coalesce(array_agg(k = 10 ORDER BY k), '{}') AS explored
    FROM generate_series(1, 10) AS k WHERE l.reason IS NULL
) i
"""

ITEMS = f"""
    SELECT g, k, md5('list' || g)::uuid AS recommendation_id,
           %(p0)s + (g * 7919) %% %(np)s AS player_key,
           %(s0)s + (g * 7919 + k * 104729) %% %(ns)s AS slot_key,
           now() - make_interval(days => %(days)s) + (g + 0.5)::float8 / %(lists)s * make_interval(days => %(days)s)
               AS created_at,
           {DRAW} AS u
    FROM generate_series(%(g0)s::bigint, %(g1)s::bigint - 1) AS g CROSS JOIN generate_series(1, 10) AS k
    WHERE g %% 20 <> 7
"""

# Impressions on 7 % of items (u < 0.07), clicks on the first 2 %, dismissals on the next 1 %; the
# feedback arrives u hours after the list, never after now.
FEEDBACK_SQL = f"""
INSERT INTO feedback (recommendation_id, slot_key, action, ts, received_at)
SELECT recommendation_id, slot_key, a.action,
       least(created_at + u * interval '10 hours', now() - interval '1 second'),
       least(created_at + u * interval '10 hours' + interval '1 second', now())
FROM ({ITEMS}) i
JOIN (VALUES ('impression', 0.0, 0.07), ('click', 0.0, 0.02), ('dismiss', 0.02, 0.03)) AS a(action, low, high)
  ON i.u >= a.low AND i.u < a.high
"""

# The clicked items with u < 0.01 were played: a session five seconds after the click, attributed.
PLAYS_SQL = f"""
INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at, ended_at, seconds, spins,
                           recommendation_id, updated_at)
SELECT format('volume-%%s-%%s', g, k), player_key, slot_key, t, t + interval '5 minutes', t + interval '5 minutes',
       300, 60, recommendation_id, least(t + interval '5 minutes', now())
FROM ({ITEMS}) i
CROSS JOIN LATERAL (SELECT least(created_at + u * interval '10 hours' + interval '5 seconds', now()) AS t) s
WHERE u < {PLAYED}
"""


# Play that no list led to: two sessions per list made (2 per 10 items), on any slot, so that the
# table is as big as a casino's (the 97.6 s funnel probed it per item).
SESSIONS_SQL = """
INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at, ended_at, seconds, spins,
                           updated_at)
SELECT format('volume-own-%%s-%%s', g, j), %(p0)s + (g * 7919 + j * 31) %% %(np)s,
       %(s0)s + (g * 131 + j * 977) %% %(ns)s,
       t, t + interval '10 minutes', t + interval '10 minutes', 600, 120, least(t + interval '10 minutes', now())
FROM generate_series(%(g0)s::bigint, %(g1)s::bigint - 1) AS g CROSS JOIN generate_series(1, 2) AS j
CROSS JOIN LATERAL (SELECT now() - make_interval(days => %(days)s)
                           + (g + j / 3.0)::float8 / %(lists)s * make_interval(days => %(days)s) AS t) s
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="logged list items (10 per list)")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--max-age-hours", type=float, default=12.0)
    args = parser.parse_args()
    open_world(args.items, rebuild=args.rebuild, max_age_hours=args.max_age_hours)
    return 0


if __name__ == "__main__":
    sys.exit(main())
