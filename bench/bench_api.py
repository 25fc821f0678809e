"""The serving API under load: p50 / p99 / requests per second of ``similar``, ``recommendations``
and the trivial ``/healthz``, measured in the same run against the real server.

    python bench/bench_api.py [--servers granian,uvicorn] [--requests 3000] [--concurrency 4]

It seeds a database ``recsys_bench`` (on RECSYS_DATABASE_URL's server, or the embedded one) with a
small synthetic casino and an active NeuMF-shaped version, starts ``recsys serve`` as a subprocess,
and drives it from a second process with a keep-alive HTTP/1.1 load generator (bench/loadgen.py).
Two loads per endpoint: ``--concurrency`` connections (throughput, and latency under that load),
and one connection (latency of a lone request). Loopback only; bounded request counts.

The loaded runs are interleaved: each endpoint's requests are cut into ``--slices`` slices, and the
endpoints take turns slice by slice, so that a machine whose speed drifts over minutes (a shared
one) slows every endpoint alike. Besides the whole run's requests per second against
``/healthz``'s, the ratio is given per round of slices (its median and range): each round's
endpoints ran within seconds of each other.

Under load it also counts whose CPU a request costs: the server's processes, PostgreSQL's (when it
runs on this machine) and the load generator's, from ``/proc``; their sum says how many requests
per second the machine's cores could give at most, whatever the concurrency.

The cost of logging every served list inside the request is read from the server's own
``recsys_recommendation_log_seconds`` histogram (``/metrics``).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadgen import Request, drive_in_another_process, postmaster_pid, spread, tree_cpu_seconds  # noqa: E402  (bench/)

BENCH_DATABASE = "recsys_bench"


# --- the synthetic casino ---------------------------------------------------------------------------


def bench_database(settings) -> str:
    """A fresh, migrated ``recsys_bench`` database on the configured (or embedded) server."""
    import psycopg

    from recsys.db import migrations
    from recsys.db.engine import libpq_url, with_database

    admin = with_database(libpq_url(settings), "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    url = with_database(admin, BENCH_DATABASE)
    migrations.upgrade(url)
    return url


def casino_arguments(parser) -> None:
    """``--slots`` and ``--players`` of :func:`seeded_casino`, for the benches that use it."""
    parser.add_argument("--slots", type=int, default=5000)
    parser.add_argument("--players", type=int, default=20000)


def seeded_casino(settings, *, slots: int, players: int):
    """A fresh ``recsys_bench`` with :func:`seed_casino`'s world (5 sessions per player): ``(url,
    engine, world)``."""
    from recsys.db.engine import create_engine

    url = bench_database(settings)
    engine = create_engine(settings, url)
    return url, engine, seed_casino(engine, slots=slots, players=players, sessions_per_player=5)


def seed_casino(engine, *, slots: int, players: int, sessions_per_player: int, seed: int = 0) -> dict:
    """Slots in 40 taste clusters from 30 providers, players with a few sessions each, and an active
    NeuMF-shaped version (factors 32, MLP 64-32-16) whose vectors follow the clusters.

    Returns ``{"slot_ids", "player_ids", "version"}``.
    """
    import pandas as pd
    import sqlalchemy as sa

    from recsys.db import versions
    from recsys.db.bulk import array_literal, copy_frame
    from recsys.ncf.config import NCFConfig
    from recsys.ncf.vectors import normalize_rows

    rng = np.random.default_rng(seed)
    clusters = 40
    slot_cluster = rng.integers(0, clusters, slots)
    themes = np.array(["fruit", "egypt", "asian", "mythology", "adventure", "animals", "megaways", "jackpot"])
    slot_frame = pd.DataFrame({
        "slot_id": [f"slot-{i:05d}" for i in range(slots)],
        "name": [f"Slot {i}" for i in range(slots)],
        "provider": [f"provider-{p:02d}" for p in np.minimum(rng.zipf(1.6, slots), 30)],
        "theme": themes[slot_cluster % themes.size],
        "volatility": np.array(["low", "medium", "high"])[slot_cluster % 3],
        "rtp": np.round(rng.uniform(94, 97, slots), 2),
        "min_bet": 0.1,
        "max_bet": 100.0,
        "active": True,
        "markets": [array_literal(["SE"]) if i % 50 == 0 else None for i in range(slots)],
    })
    player_frame = pd.DataFrame({
        "player_id": [f"player-{i:07d}" for i in range(players)],
        "market": np.where(rng.random(players) < 0.8, "GB", "SE"),
        "marketing_consent": rng.random(players) < 0.97,
        "risk_flag": rng.random(players) < 0.02,
    })
    with engine.begin() as conn:
        copy_frame(conn, "slots", slot_frame)
        copy_frame(conn, "players", player_frame)
        slot_keys = np.array(conn.execute(sa.text("SELECT id FROM slots ORDER BY slot_id")).scalars().all())
        player_keys = np.array(conn.execute(sa.text("SELECT id FROM players ORDER BY player_id")).scalars().all())
    player_cluster = rng.integers(0, clusters, players)
    by_cluster = [np.flatnonzero(slot_cluster == c) for c in range(clusters)]
    n = players * sessions_per_player
    who = np.repeat(np.arange(players), sessions_per_player)
    what = np.array([rng.choice(by_cluster[player_cluster[p]]) for p in who])
    started = pd.Timestamp.now(tz="UTC") - pd.to_timedelta(rng.integers(0, 60 * 86400, n), unit="s")
    seconds = rng.exponential(900, n).round()
    ended = started + pd.to_timedelta(seconds, unit="s")
    sessions = pd.DataFrame({
        "session_id": [f"session-{i}" for i in range(n)],
        "player_key": player_keys[who],
        "slot_key": slot_keys[what],
        "started_at": started,
        "last_event_at": ended,
        "ended_at": ended,
        "seconds": seconds,
    })
    with engine.begin() as conn:
        copy_frame(conn, "play_sessions", sessions)
        conn.execute(sa.text("ANALYZE"))

    centres = rng.normal(size=(clusters, 32)).astype(np.float32)
    slot_gmf = (centres[slot_cluster] + 0.5 * rng.normal(size=(slots, 32))).astype(np.float32)
    player_gmf = (centres[player_cluster] + 0.5 * rng.normal(size=(players, 32))).astype(np.float32) * 0.3
    config = NCFConfig(model="neumf", factors=32, mlp_layers=(64, 32, 16))
    weights = {
        "mlp.0.weight": rng.normal(scale=0.2, size=(32, 64)).astype(np.float32),
        "mlp.0.bias": np.zeros(32, np.float32),
        "mlp.1.weight": rng.normal(scale=0.2, size=(16, 32)).astype(np.float32),
        "mlp.1.bias": np.zeros(16, np.float32),
        "predict.weight": rng.normal(scale=0.3, size=(1, 48)).astype(np.float32),
        "predict.bias": np.zeros(1, np.float32),
    }
    version = versions.create_version(engine, "neumf", config.to_dict())
    versions.write_embeddings(
        engine, version, player_keys,
        {"gmf": player_gmf, "mlp": rng.normal(scale=0.3, size=(players, 32)).astype(np.float32)},
        slot_keys,
        {"gmf": slot_gmf, "mlp": rng.normal(scale=0.3, size=(slots, 32)).astype(np.float32)},
        normalize_rows(slot_gmf),
    )
    versions.finish_version(engine, version, state={"config": config.to_dict(), "weights": weights},
                            metrics={"hr@10": 0.5}, similarity_vector="gmf", curve_path=None)
    versions.activate(engine, version)
    return {"slot_ids": list(slot_frame["slot_id"]), "player_ids": list(player_frame["player_id"]),
            "version": version}


# --- the server ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(server: str, url: str, port: int, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "RECSYS_DATABASE_URL": url, "RECSYS_SERVE_SERVER": server, **extra_env}
    process = subprocess.Popen(
        [sys.executable, "-m", "recsys", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"recsys serve ({server}) exited: {process.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.2)
    stop_server(process)
    raise SystemExit(f"recsys serve ({server}) was not ready within 60 s")


def stop_server(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def log_write_seconds(port: int) -> tuple[float, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = float(re.search(r"^recsys_recommendation_log_seconds_sum\{\} (\S+)", text, re.M).group(1))
    count = int(re.search(r"^recsys_recommendation_log_seconds_count\{\} (\S+)", text, re.M).group(1))
    return total, count


# --- the run ------------------------------------------------------------------------------------------


def workloads(world: dict, n: int, rng: random.Random) -> dict[str, list[str]]:
    slots, players = world["slot_ids"], world["player_ids"]
    return {
        "healthz": ["/healthz"] * n,
        "similar": [f"/v1/slots/{rng.choice(slots)}/similar?k=10" for _ in range(n)],
        "recommendations": [
            f"/v1/players/{rng.choice(players)}/recommendations?k=10"
            + (f"&context_slot={rng.choice(slots)}" if rng.random() < 0.5 else "")
            for _ in range(n)
        ],
    }


def gets(paths: list[str]) -> list[Request]:
    return [Request("GET", path) for path in paths]


def joined(drives: list[dict]) -> dict:
    """Several :func:`loadgen.drive` results as one: requests and seconds summed (requests/s over
    the time spent driving), percentiles over every latency."""
    ms = np.concatenate([np.asarray(d["latencies_ms"]) for d in drives])
    seconds = sum(d["seconds"] for d in drives)
    errors = [d["first_error"] for d in drives if d["first_error"]]
    return {"requests": ms.size, "seconds": seconds, "rps": ms.size / seconds,
            "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "errors": sum(d["errors"] for d in drives), "first_error": errors[0] if errors else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="granian,uvicorn")
    parser.add_argument("--requests", type=int, default=3000, help="requests per endpoint and load")
    parser.add_argument("--concurrency", type=int, default=4)
    casino_arguments(parser)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (RECSYS_SERVE_WORKERS)")
    parser.add_argument("--durable-log", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure recommendations with RECSYS_LOG_SYNCHRONOUS_COMMIT=true")
    parser.add_argument("--slices", type=int, default=8,
                        help="each endpoint's loaded requests in this many slices, the endpoints taking turns")
    args = parser.parse_args()
    if args.slices < 1 or args.requests < args.slices:
        parser.error("--slices must be at least 1 and at most --requests")

    from recsys.db import apikeys
    from recsys.settings import Settings

    settings = Settings.from_env()
    print(f"seeding {BENCH_DATABASE}: {args.slots:,} slots, {args.players:,} players ...", flush=True)
    started = time.perf_counter()
    url, engine, world = seeded_casino(settings, slots=args.slots, players=args.players)
    key, _ = apikeys.create_key(engine, ["read"], "bench")
    engine.dispose()
    print(f"seeded in {time.perf_counter() - started:.0f} s (version {world['version']})", flush=True)

    rng = random.Random(0)
    workers = {"RECSYS_SERVE_WORKERS": str(args.workers)}
    runs = [(server, server, workers, ("healthz", "similar", "recommendations")) for server in args.servers.split(",")]
    if args.durable_log:
        first = runs[0][1]
        durable = {**workers, "RECSYS_LOG_SYNCHRONOUS_COMMIT": "true"}
        runs.append((f"{first}, durable log", first, durable, ("recommendations",)))
    postgres = postmaster_pid(url)
    results, cpu, per_round = {}, {}, {}
    for label, server, env, endpoints in runs:
        port = free_port()
        process = start_server(server, url, port, env)
        try:
            for name, paths in workloads(world, 300, rng).items():  # warm-up
                if name in endpoints:
                    drive_in_another_process(port, spread(gets(paths), args.concurrency), key)
            logged_before = log_write_seconds(port)
            chosen = {name: paths for name, paths in workloads(world, args.requests, rng).items() if name in endpoints}
            slices: dict[str, list[dict]] = {name: [] for name in chosen}
            spent: dict[str, np.ndarray] = {name: np.zeros(3) for name in chosen}
            for part in range(args.slices):  # the endpoints take turns, slice by slice
                for name, paths in chosen.items():
                    share = paths[part * len(paths) // args.slices:(part + 1) * len(paths) // args.slices]
                    before = tree_cpu_seconds(process.pid), tree_cpu_seconds(postgres) if postgres else 0.0
                    loaded = drive_in_another_process(port, spread(gets(share), args.concurrency), key)
                    after = tree_cpu_seconds(process.pid), tree_cpu_seconds(postgres) if postgres else 0.0
                    spent[name] += [after[0] - before[0], after[1] - before[1], loaded["cpu_seconds"]]
                    slices[name].append(loaded)
            for name, paths in chosen.items():
                loaded = joined(slices[name])
                alone = drive_in_another_process(port, [gets(paths[: max(args.requests // 3, 200)])], key)
                results[(label, name)] = (loaded, alone)
                cpu[(label, name)] = list(1000 * spent[name] / loaded["requests"])
                if loaded["errors"] or alone["errors"]:
                    print(f"  {label} {name}: {loaded['errors'] + alone['errors']} non-200 answers, e.g. "
                          f"{loaded['first_error'] or alone['first_error']}")
            if "healthz" in chosen:
                for name in chosen:
                    ratios = [mine["rps"] / trivial["rps"] for mine, trivial in zip(slices[name], slices["healthz"],
                                                                                     strict=True)]
                    per_round[(label, name)] = ratios
            logged_after = log_write_seconds(port)
        finally:
            stop_server(process)
        count = logged_after[1] - logged_before[1]
        results[(label, "log")] = (1000 * (logged_after[0] - logged_before[0]) / max(count, 1), count)

    print(f"\n{os.cpu_count()} CPUs, {args.workers} server worker(s), load average {os.getloadavg()[0]:.1f} at the "
          f"end; {args.requests:,} requests per endpoint at concurrency {args.concurrency}, then a third of them "
          f"on one connection (alone)\n")
    print(f"{'server':<22} {'endpoint':<16} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}   {'alone p50':>9} {'p99 ms':>8}"
          f"   {'req/s / healthz':>15}   per round of slices: median (range)")
    for label, _, _, endpoints in runs:
        trivial = results.get((label, "healthz"), results[(runs[0][0], "healthz")])[0]["rps"]
        for name in endpoints:
            loaded, alone = results[(label, name)]
            ratios = per_round.get((label, name))
            rounds = (f"{np.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})" if ratios
                      else "(no /healthz in this run)")
            print(f"{label:<22} {name:<16} {loaded['rps']:>8.0f} {loaded['p50']:>8.2f} {loaded['p99']:>8.2f}   "
                  f"{alone['p50']:>9.2f} {alone['p99']:>8.2f}   {loaded['rps'] / trivial:>15.2f}   {rounds}")
        if args.workers > 1:  # /metrics answers from whichever worker takes the request: not summable
            print(f"{label:<22} writing the served list: not measured with {args.workers} workers (per-process)")
            continue
        mean_ms, count = results[(label, "log")]
        print(f"{label:<22} writing the served list, inside the request: {mean_ms:.2f} ms on average over "
              f"{count:,} lists ({mean_ms / results[(label, 'recommendations')][1]['p50']:.0%} of a lone "
              f"recommendation's p50)")
    print(f"\nCPU per request at concurrency {args.concurrency}, ms (the server's processes, PostgreSQL's, the load "
          f"generator's), and the requests/s those {os.cpu_count()} CPUs could give if nothing else ran and the load "
          "kept them all busy:\n")
    print(f"{'server':<22} {'endpoint':<16} {'server':>8} {'postgres':>9} {'loadgen':>8} {'total':>8} {'ceiling':>9}")
    for label, _, _, endpoints in runs:
        for name in endpoints:
            spent = cpu[(label, name)]
            if postgres is None:
                print(f"{label:<22} {name:<16} {spent[0]:>8.3f} {'n/a':>9} {spent[2]:>8.3f}   (PostgreSQL not local)")
                continue
            total = sum(spent)
            print(f"{label:<22} {name:<16} {spent[0]:>8.3f} {spent[1]:>9.3f} {spent[2]:>8.3f} {total:>8.3f} "
                  f"{1000 * os.cpu_count() / total:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
