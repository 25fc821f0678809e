"""Where one recommendation's time goes, in-process: Python, each SQL round trip, the log and its commit.

    python bench/bench_list.py [--lists 2000] [--slots 5000] [--players 20000]

Seeds ``recsys_bench`` with bench_api.py's casino (an active NeuMF-shaped version), loads a
``ServingState`` as the API does, and makes ``--lists`` lists with
``recsys.serving.lists.make_list`` one after another on one asyncio connection (half with a context
slot, as bench_api.py asks), timing each stage with the stages wrapped: the statements of
``recsys.db.lists`` (their time includes the round trip, and the log's its commit), the policy's
Python steps, and the rest of the list's code (the whole minus the stages), then the CPU of a list
in this process and in its PostgreSQL backend (from ``/proc``). No HTTP: bench_api.py measures the
server around it.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.cli.serve import SINGLE_THREADED  # noqa: E402

# As in the server: BLAS and OpenMP pools that spin after each call would take the CPU from
# PostgreSQL and double the statements' times (measured); they read these when numpy loads.
for variable, value in SINGLE_THREADED.items():
    os.environ.setdefault(variable, value)

import bench_api  # noqa: E402  (bench/ is the script's folder)
import numpy as np  # noqa: E402
from loadgen import tree_cpu_seconds  # noqa: E402


class NoMetrics:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def timed(module, name: str, spent: dict[str, list[float]], cpu: dict[str, list[float]], label: str) -> None:
    """Replace ``module.name`` by a wrapper adding its duration to ``spent[label]`` and the CPU time
    this process spent in it to ``cpu[label]``."""
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label][-1] += time.perf_counter() - started
            cpu[label][-1] += time.thread_time() - started_cpu

    setattr(module, name, wrapper)


def timed_async(module, name: str, spent: dict[str, list[float]], cpu: dict[str, list[float]], label: str) -> None:
    """:func:`timed` for a coroutine function (its time includes the round trip it awaits)."""
    inner = getattr(module, name)

    async def wrapper(*args, **kwargs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            return await inner(*args, **kwargs)
        finally:
            spent[label][-1] += time.perf_counter() - started
            cpu[label][-1] += time.thread_time() - started_cpu

    setattr(module, name, wrapper)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=2000)
    bench_api.casino_arguments(parser)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="then profile the lists with cProfile and print the N costliest functions")
    args = parser.parse_args()

    import asyncio

    import psycopg

    from recsys.index import set_threads
    from recsys.serving import lists
    from recsys.serving.state import ServingState
    from recsys.settings import Settings

    settings = Settings.from_env()
    url, engine, world = bench_api.seeded_casino(settings, slots=args.slots, players=args.players)
    set_threads(1)
    state = ServingState(settings, engine, url, NoMetrics())
    state.reload_all()

    spent: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    stages = {
        "SQL: the player and the exclusions": (lists.db, "read_player", timed_async),
        "SQL: the log and its commit": (lists.db, "log_lists", timed_async),
        "Python: candidates": (lists, "generate_candidates", timed),
        "Python: model logits": (lists, "model_logits", timed),
        "Python: ranking": (lists, "rank", timed),
    }
    for label, (module, name, wrap) in stages.items():
        wrap(module, name, spent, cpu, label)

    rng = random.Random(0)
    slot_keys = [state.snapshot.catalogue.key_of[s] for s in world["slot_ids"]]
    requests = [(rng.choice(world["player_ids"]), rng.choice(slot_keys) if rng.random() < 0.5 else None)
                for _ in range(args.lists)]

    async def make(conn, player_id: str, context_key: int | None) -> None:
        await lists.make_list(conn, state, state.snapshot, player_id, k=10, trigger=lists.API, context_key=context_key)

    async def connect():
        return await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0)

    backend: list[float] = []  # the PostgreSQL backend's CPU seconds over the measured round

    async def measure() -> None:
        async with await connect() as conn:
            for round_ in ("warm-up", "measured"):
                spent.clear()
                cpu.clear()
                backend.append(tree_cpu_seconds(conn.info.backend_pid))
                for player_id, context_key in requests if round_ == "measured" else requests[:200]:
                    for label in (*stages, "whole list"):
                        spent[label].append(0.0)
                        cpu[label].append(0.0)
                    started, started_cpu = time.perf_counter(), time.thread_time()
                    await make(conn, player_id, context_key)
                    spent["whole list"][-1] = time.perf_counter() - started
                    cpu["whole list"][-1] = time.thread_time() - started_cpu
            backend.append(tree_cpu_seconds(conn.info.backend_pid))

    asyncio.run(measure())

    def ms(table: dict[str, list[float]], label: str) -> np.ndarray:
        return np.array(table[label]) * 1000

    rows = [(label, ms(spent, label), ms(cpu, label)) for label in stages]
    rows.append(("Python: the rest of the list", ms(spent, "whole list") - sum(r[1] for r in rows),
                 ms(cpu, "whole list") - sum(r[2] for r in rows)))
    rows.append(("whole list", ms(spent, "whole list"), ms(cpu, "whole list")))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.lists:,} lists, one connection, "
          f"{args.slots:,} slots, {args.players:,} players. Wall time, and the CPU time of this process (the "
          "part that other processes' load does not inflate; a statement's wall time is mostly PostgreSQL's)\n")
    print(f"{'stage':<36} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'share':>7}   {'CPU mean ms':>11} {'share':>7}")
    whole, whole_cpu = rows[-1][1].mean(), rows[-1][2].mean()
    for label, wall, used in rows:
        print(f"{label:<36} {wall.mean():>8.3f} {np.percentile(wall, 50):>8.3f} {np.percentile(wall, 99):>8.3f} "
              f"{wall.mean() / whole:>7.0%}   {used.mean():>11.3f} {used.mean() / whole_cpu:>7.0%}")
    postgres = (backend[-1] - backend[-2]) / args.lists * 1000
    print(f"\nCPU per list: this process {whole_cpu:.3f} ms + its PostgreSQL backend {postgres:.3f} ms "
          f"= {whole_cpu + postgres:.3f} ms (the backend's from /proc)")
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()

        async def profile() -> None:
            async with await connect() as conn:
                profiler.enable()
                for player_id, context_key in requests:
                    await make(conn, player_id, context_key)
                profiler.disable()

        asyncio.run(profile())
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
    state.stop()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
