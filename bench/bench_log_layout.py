"""What logging one served list costs PostgreSQL, in today's layout and in a proposed one (issue 21).

    python bench/bench_log_layout.py [--lists 3000] [--rounds 3]

Today a list is one row of ``recommendations`` and one row per item of ``recommendation_items``,
both partitioned by month, with their keys and foreign keys (``recsys.db.lists.log_lists``). The
proposal measured against it: one row per list with its items as arrays (slot keys, scores,
reasons, explored), in a scratch table of the bench database with a primary key, the player's
foreign key and a (player, time) index. Both on one connection, ``synchronous_commit`` off as the
API logs, a list of 10 distinct slots each time, alternating ``--rounds`` times; the PostgreSQL
backend's CPU is read from ``/proc`` (Linux), so other processes' load does not count in it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_api  # noqa: E402  (bench/ is the script's folder)

SCRATCH = """
CREATE TABLE bench_list_arrays (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    player_key bigint NOT NULL REFERENCES players (id),
    version_id integer,
    trigger varchar NOT NULL,
    context_slot_key integer,
    market varchar,
    filters jsonb,
    slot_keys integer[] NOT NULL,
    scores float8[] NOT NULL,
    reasons varchar[] NOT NULL,
    explored boolean[] NOT NULL
)"""
ARRAYS = """
INSERT INTO bench_list_arrays (id, player_key, version_id, trigger, context_slot_key, market, filters, slot_keys,
                               scores, reasons, explored)
VALUES (%(id)s, %(player)s, %(version)s, %(trigger)s, %(context)s, %(market)s, %(filters)s, %(keys)s, %(scores)s,
        %(reasons)s, %(explored)s)"""


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, lists: int, rounds: int) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    from recsys.db.lists import log_lists
    from recsys.served import ServedItem, ServedList

    async with await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0) as conn:
        await conn.execute("SET synchronous_commit = off")  # as the API logs (log_lists sets it too)
        await conn.execute("DROP TABLE IF EXISTS bench_list_arrays")
        await conn.execute(SCRATCH)
        await conn.execute("CREATE INDEX ON bench_list_arrays (player_key, created_at)")
        players = [r[0] for r in await (await conn.execute("SELECT id FROM players LIMIT %s", (lists,))).fetchall()]
        slots = [r[0] for r in await (await conn.execute("SELECT id FROM slots")).fetchall()]
        version = (await (await conn.execute("SELECT max(id) FROM model_versions")).fetchone())[0]
        rng = random.Random(0)
        pid = conn.info.backend_pid

        def made(player: int) -> ServedList:
            items = tuple(ServedItem(k, f"slot-{k}", rng.random(), "similar", False) for k in rng.sample(slots, 10))
            return ServedList(uuid.uuid4(), "bench", player, version, "api", None, None, "GB", items,
                              {"k": 10, "strategy": "model"})

        async def today(served: ServedList) -> None:
            await log_lists(conn, [served])

        async def arrays(served: ServedList) -> None:
            await conn.execute(ARRAYS, {
                "id": served.recommendation_id, "player": served.player_key, "version": served.version_id,
                "trigger": served.trigger, "context": served.context_slot_key, "market": served.market,
                "filters": Jsonb(served.filters), "keys": [i.slot_key for i in served.items],
                "scores": [i.score for i in served.items], "reasons": [i.reason for i in served.items],
                "explored": [i.explored for i in served.items],
            })

        print(f"{len(players):,} lists of 10 items per layout and round; the backend's CPU and the wall time per list")
        figures: dict[str, list[float]] = {"today": [], "arrays": []}
        for round_ in range(1, rounds + 1):
            for name, write in (("today", today), ("arrays", arrays)):
                batch = [made(p) for p in players]
                cpu, wall = backend_cpu(pid), time.perf_counter()
                for served in batch:
                    await write(served)
                cpu, wall = (backend_cpu(pid) - cpu) / len(batch), (time.perf_counter() - wall) / len(batch)
                figures[name].append(cpu)
                print(f"  round {round_} {name:<7} CPU {cpu * 1000:.3f} ms   wall {wall * 1000:.3f} ms", flush=True)
        await conn.execute("DROP TABLE bench_list_arrays")
        today_cpu, arrays_cpu = (sum(v) / len(v) for v in figures.values())
        print(f"mean CPU per list: today {today_cpu * 1000:.3f} ms, one row with item arrays "
              f"{arrays_cpu * 1000:.3f} ms ({today_cpu / arrays_cpu:.1f}x)")


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
