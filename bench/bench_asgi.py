"""CPU per request of the API's endpoints, in process: the real app called through ASGI, no network.

    python bench/bench_asgi.py [--requests 2000] [--slots 5000] [--players 20000] [--profile N]

Seeds ``recsys_bench`` with bench_api.py's casino (an active NeuMF-shaped version), starts the
app's lifespan (its engine, its event loop's connection pool, the snapshot with the version in
memory) and calls it ``--requests`` times per endpoint, one request after another, as granian
would, with an API key: ``/healthz``, ``similar`` and ``recommendations`` (half with a context
slot, as bench_api.py asks). It prints the CPU time of this process per request (what the server
process spends; PostgreSQL's share runs elsewhere) and its ratio to ``/healthz``'s, measured in the
same run. bench_api.py measures the same endpoints over sockets under load; this one has none of
its noise (the load generator and the server sharing two cores), so it says where a request's
CPU goes. ``--profile N`` prints the N costliest functions of each endpoint (cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.cli.serve import SINGLE_THREADED  # noqa: E402

for variable, value in SINGLE_THREADED.items():  # as in the server (see bench_list.py)
    os.environ.setdefault(variable, value)

import bench_api  # noqa: E402  (bench/ is the script's folder)


def http_scope(path: str, key: str) -> dict:
    route, _, query = path.partition("?")
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": route, "raw_path": route.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
    }


async def measure(app, paths: dict[str, list[str]], key: str, profile: int) -> dict[str, float]:
    """CPU seconds per request by endpoint; raises if any answer is not 200."""
    import cProfile
    import pstats

    statuses: list[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    out = {}
    for name, requests in paths.items():
        for path in requests[:200]:  # warm-up: prepared statements, caches, the pool's connections
            await app(http_scope(path, key), receive, send)
        statuses.clear()
        profiler = cProfile.Profile() if profile else None
        started = time.process_time()
        if profiler:
            profiler.enable()
        for path in requests:
            await app(http_scope(path, key), receive, send)
        if profiler:
            profiler.disable()
        out[name] = (time.process_time() - started) / len(requests)
        if set(statuses) != {200}:
            raise SystemExit(f"{name}: answers {sorted(set(statuses))}, expected 200")
        if profiler:
            print(f"\n--- {name}")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    return out


async def run(settings, world: dict, key: str, requests: int, profile: int) -> dict[str, float]:
    from api.app import create_app

    app = create_app(settings)
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                       inbox.get, outbox.put))
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"the app did not start: {started}")
    deadline = time.monotonic() + 60
    while app.state.serving.snapshot.model is None:  # the version loads in the background
        if time.monotonic() > deadline:
            raise SystemExit("the version was not in memory within 60 s")
        await asyncio.sleep(0.1)
    paths = bench_api.workloads(world, requests, random.Random(0))
    try:
        return await measure(app, paths, key, profile)
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per endpoint")
    bench_api.casino_arguments(parser)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print the N costliest functions of each endpoint (cProfile)")
    args = parser.parse_args()

    from dataclasses import replace

    from recsys.db import apikeys
    from recsys.settings import Settings

    settings = Settings.from_env()
    url, engine, world = bench_api.seeded_casino(settings, slots=args.slots, players=args.players)
    key, _ = apikeys.create_key(engine, ["read"], "bench")
    engine.dispose()
    settings = replace(settings, database=replace(settings.database, url=url))

    cpu = asyncio.run(run(settings, world, key, args.requests, args.profile))
    print(f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.requests:,} requests per "
          f"endpoint, one at a time, in process; {args.slots:,} slots, {args.players:,} players. CPU time of "
          "this process per request (PostgreSQL's share is not in it)\n")
    print(f"{'endpoint':<18} {'CPU ms / request':>17} {'x /healthz':>11} {'requests/s of one core':>23}")
    for name, seconds in cpu.items():
        print(f"{name:<18} {seconds * 1000:>17.3f} {seconds / cpu['healthz']:>11.1f} {1 / seconds:>23,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
