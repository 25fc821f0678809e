"""What logging one served list costs PostgreSQL: the layout before migration 0015 against today's.

    python bench/bench_log_layout.py [--lists 3000] [--rounds 3]

Before migration 0015 a list was one row of ``recommendations`` and one row per item of
``recommendation_items`` (partitioned by month, its key, a unique key, two indexes, a foreign key
to ``slots`` per item), written by one statement. Today it is one row of ``recommendations`` with
its items as four arrays (``recsys.db.lists.log_lists``). The old item table is rebuilt here as a
scratch table of the bench database (``bench_items_0014``, dropped at the end) and written by the
old statement; both run on one connection, ``synchronous_commit`` off as the API logs, a list of 10
distinct slots each time, alternating ``--rounds`` times. The PostgreSQL backend's CPU is read from
``/proc`` (Linux), so other processes' load does not count in it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_api  # noqa: E402  (bench/ is the script's folder)
from loadgen import tree_cpu_seconds  # noqa: E402

# recommendation_items as migrations 0006 and 0013 made it.
SCRATCH = (
    """CREATE TABLE bench_items_0014 (
        recommendation_id uuid NOT NULL,
        rank smallint NOT NULL,
        slot_key integer NOT NULL REFERENCES slots (id),
        score float8 NOT NULL,
        reason varchar(16) NOT NULL CHECK (reason IN ('similar', 'personal', 'explore', 'popular', 'cold_start')),
        explored boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (recommendation_id, rank, created_at),
        UNIQUE (recommendation_id, slot_key, created_at)
    ) PARTITION BY RANGE (created_at)""",
    "CREATE TABLE bench_items_0014_default PARTITION OF bench_items_0014 DEFAULT",
    "CREATE INDEX ON bench_items_0014 (slot_key)",
    "CREATE INDEX ON bench_items_0014 (created_at)",
)
# recsys.db.lists' statement before migration 0015, for one list.
BEFORE = """
WITH served AS (
    INSERT INTO recommendations (id, player_key, version_id, trigger, context_slot_key, market, filters)
    VALUES (%(id)s, %(player)s, %(version)s, %(trigger)s, %(context)s, %(market)s, %(filters)s)
    RETURNING id, created_at
)
INSERT INTO bench_items_0014 (recommendation_id, rank, slot_key, score, reason, explored, created_at)
SELECT served.id, i.rank, i.slot_key, i.score, i.reason, i.explored, served.created_at
FROM served, unnest(CAST(%(ranks)s AS smallint[]), CAST(%(keys)s AS integer[]), CAST(%(scores)s AS float8[]),
                    CAST(%(reasons)s AS varchar[]), CAST(%(explored)s AS boolean[]))
    AS i(rank, slot_key, score, reason, explored)
"""


async def measure(url: str, lists: int, rounds: int) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    from recsys.db.lists import log_lists
    from recsys.served import ServedItem, ServedList

    async with await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0) as conn:
        await conn.execute("SET synchronous_commit = off")  # as the API logs (log_lists sets it too)
        await conn.execute("DROP TABLE IF EXISTS bench_items_0014")
        for statement in SCRATCH:
            await conn.execute(statement)
        players = [r[0] for r in await (await conn.execute("SELECT id FROM players LIMIT %s", (lists,))).fetchall()]
        slots = [r[0] for r in await (await conn.execute("SELECT id FROM slots")).fetchall()]
        version = (await (await conn.execute("SELECT max(id) FROM model_versions")).fetchone())[0]
        rng = random.Random(0)
        pid = conn.info.backend_pid

        def made(player: int) -> ServedList:
            items = tuple(ServedItem(k, f"slot-{k}", rng.random(), "similar", False) for k in rng.sample(slots, 10))
            return ServedList(uuid.uuid4(), "bench", player, version, "api", None, None, "GB", items,
                              {"k": 10, "strategy": "model"})

        async def before(served: ServedList) -> None:
            await conn.execute(BEFORE, {
                "id": served.recommendation_id, "player": served.player_key, "version": served.version_id,
                "trigger": served.trigger, "context": served.context_slot_key, "market": served.market,
                "filters": Jsonb(served.filters), "ranks": list(range(1, len(served.items) + 1)),
                "keys": [i.slot_key for i in served.items], "scores": [i.score for i in served.items],
                "reasons": [i.reason for i in served.items], "explored": [i.explored for i in served.items],
            })

        async def today(served: ServedList) -> None:
            await log_lists(conn, [served])

        print(f"{len(players):,} lists of 10 items per layout and round; the backend's CPU and the wall time per list")
        figures: dict[str, list[float]] = {"before": [], "today": []}
        for round_ in range(1, rounds + 1):
            for name, write in (("before", before), ("today", today)):
                batch = [made(p) for p in players]
                cpu, wall = tree_cpu_seconds(pid), time.perf_counter()
                for served in batch:
                    await write(served)
                cpu, wall = (tree_cpu_seconds(pid) - cpu) / len(batch), (time.perf_counter() - wall) / len(batch)
                figures[name].append(cpu)
                print(f"  round {round_} {name:<7} CPU {cpu * 1000:.3f} ms   wall {wall * 1000:.3f} ms", flush=True)
        await conn.execute("DROP TABLE bench_items_0014")
        before_cpu, today_cpu = (sum(v) / len(v) for v in figures.values())
        print(f"mean CPU per list: before migration 0015 (a row per item) {before_cpu * 1000:.3f} ms, today (the "
              f"items as arrays of the list's row) {today_cpu * 1000:.3f} ms ({before_cpu / today_cpu:.1f}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    bench_api.casino_arguments(parser)
    args = parser.parse_args()
    from recsys.settings import Settings

    url, engine, _ = bench_api.seeded_casino(Settings.from_env(), slots=args.slots, players=args.players)
    engine.dispose()
    asyncio.run(measure(url, args.lists, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
