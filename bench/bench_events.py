"""Sustained play-event ingestion with the database in the loop: ``POST /v1/events`` against a real
``recsys serve``, single events and batches of 100, next to ``/healthz`` of the same server in the
same run.

    python bench/bench_events.py [--slots 2000] [--players 20000] [--concurrency 4]

It seeds ``recsys_bench_events`` (on RECSYS_DATABASE_URL's server, or the embedded one) with
bench_api.py's synthetic casino and active version, starts ``recsys serve`` (granian, one worker)
and drives it from a second process (bench/loadgen.py). Each connection owns its play sessions and
sends their events in event-time order, as a casino's event forwarder would: heartbeats and spins
every ``--spacing`` seconds of event time, so a session crosses the one-hour threshold after
3600 / spacing events and its trigger builds, logs and announces a list inside that request.

Two shapes of play: **aligned**, every session of a connection starting together, so all of them
cross the threshold in the same batch (the worst case: one request makes a list per session); and
**staggered**, each session already some way into its hour when the timed run starts (its earlier
events sent before the clock starts), so the crossings spread over the run as a casino's sessions
do. Both are printed; neither replaces the other.
Every answer is a commit (``synchronous_commit`` on: an acknowledged event survives a crash); after
the runs the script times such a commit alone (one row, then COMMIT), the floor under every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import urllib.request
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_api  # noqa: E402  (bench/ is the script's folder)
from loadgen import Request, drive_in_another_process, postmaster_pid, tree_cpu_seconds  # noqa: E402

DATABASE = "recsys_bench_events"
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
"""Event time of every session's first event: inside the server's accepted window (RECSYS_EVENT_MAX_AGE_SECONDS)."""


class Sessions:
    """Play sessions of one connection, each advancing in event time as its events are made."""

    def __init__(self, name: str, world: dict, count: int, spacing: float, rng: random.Random) -> None:
        self.ids = [f"{name}-{i}" for i in range(count)]
        self.players = [rng.choice(world["player_ids"]) for _ in range(count)]
        self.slots = [rng.choice(world["slot_ids"]) for _ in range(count)]
        self.sent = [0] * count
        self.spacing = spacing
        self.rng = rng

    def event(self, i: int) -> dict:
        n = self.sent[i]
        self.sent[i] += 1
        spin = n % 3 != 0
        event = {
            "event_id": f"{self.ids[i]}-{n}",
            "type": "start" if n == 0 else ("spin" if spin else "heartbeat"),
            "session_id": self.ids[i],
            "player_id": self.players[i],
            "slot_id": self.slots[i],
            "ts": (T0 + timedelta(seconds=n * self.spacing)).isoformat(),
        }
        if spin:
            event["bet"] = 1.0
            event["win"] = round(self.rng.random() * 1.9, 2)
        return event


def event_requests(name: str, world: dict, *, connections: int, sessions: int, batch: int, requests: int,
                   spacing: float, seed: int, stagger: int = 0) -> tuple[list[list[Request]], list[list[Request]]]:
    """Per connection: ``requests`` POSTs of ``batch`` events, round-robin over its own sessions,
    after the ones that bring the sessions to their starting ages (``stagger``: each session has
    played a uniform random 0 .. stagger - 1 of its events before the timed run; 0: every session
    starts with the run). Returns ``(warm-up, timed)``, each one list of requests per connection."""
    rng = random.Random(seed)
    warm, timed = [], []
    for c in range(connections):
        owned = Sessions(f"{name}-{c}", world, sessions, spacing, rng)
        ages = [rng.randrange(stagger) if stagger else 0 for _ in range(sessions)]
        earlier = [owned.event(i) for step in range(max(ages, default=0)) for i in range(sessions) if step < ages[i]]
        warm.append([_post(earlier[at:at + 100]) for at in range(0, len(earlier), 100)])
        share, cursor = [], 0
        for _ in range(requests):
            events = []
            for _ in range(batch):
                events.append(owned.event(cursor % sessions))
                cursor += 1
            share.append(_post(events))
        timed.append(share)
    return warm, timed


def _post(events: list[dict]) -> Request:
    return Request("POST", "/v1/events", json.dumps({"events": events}).encode())


def triggered_lists(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith(("recsys_recommendations_total{", "recsys_suppressions_total{")))


def durable_commit_ms(url: str, n: int = 300) -> list[float]:
    """The time of COMMIT alone in ``n`` transactions that each insert one row (``synchronous_commit``
    on, as every events request commits)."""
    import psycopg

    times = []
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (x integer)")
        conn.commit()
        for i in range(n):
            conn.execute("INSERT INTO bench_commit VALUES (%s)", (i,))
            started = time.perf_counter()
            conn.commit()
            times.append(1000 * (time.perf_counter() - started))
        conn.execute("DROP TABLE bench_commit")
        conn.commit()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=2000)
    parser.add_argument("--players", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batches", type=int, default=150, help="batches of 100 per connection")
    parser.add_argument("--singles", type=int, default=1500, help="single-event requests per connection")
    parser.add_argument("--sessions", type=int, default=50, help="play sessions per connection")
    parser.add_argument("--spacing", type=float, default=15.0, help="event-time seconds between a session's events")
    parser.add_argument("--rate", type=int, default=2000, help="events/s of the paced run (batches of 100)")
    parser.add_argument("--paced-seconds", type=float, default=15.0, help="length of the paced run")
    parser.add_argument("--server", default="granian")
    args = parser.parse_args()

    from recsys.db import apikeys
    from recsys.db.engine import create_engine
    from recsys.settings import Settings

    settings = Settings.from_env()
    print(f"seeding {DATABASE}: {args.slots:,} slots, {args.players:,} players ...", flush=True)
    started = time.perf_counter()
    bench_api.BENCH_DATABASE = DATABASE  # bench_api's seeding, on a database of this benchmark's own
    url = bench_api.bench_database(settings)
    engine = create_engine(settings, url)
    world = bench_api.seed_casino(engine, slots=args.slots, players=args.players, sessions_per_player=5)
    with engine.begin() as conn:  # every bench player may be marketed to: each trigger builds a list
        conn.exec_driver_sql("UPDATE players SET marketing_consent = true, risk_flag = false")
    key, _ = apikeys.create_key(engine, ["ingest"], "bench-events")
    print(f"seeded in {time.perf_counter() - started:.0f} s (version {world['version']})", flush=True)

    c, sessions = args.concurrency, args.sessions

    def load(batch: int, n: int, connections: int, run: str, stagger: bool = False) -> tuple[list, list[list[Request]]]:
        """``n`` requests of ``batch`` events per connection (batch 0: /healthz), and the untimed ones
        that stagger the sessions first; ``run`` names the sessions (each run plays new ones)."""
        if batch == 0:
            return [], [[Request("GET", "/healthz")] * n for _ in range(connections)]
        return event_requests(f"{run}-{batch}", world, connections=connections, sessions=sessions, batch=batch,
                              requests=n, spacing=args.spacing, seed=zlib.crc32(run.encode()),
                              stagger=threshold_events if stagger else 0)

    threshold_events = int(np.ceil(3600 / args.spacing))  # a session's events up to its crossing (default settings)
    per_second = args.rate / 100 / 2  # batches per second on each of two paced connections
    paced_n = max(int(per_second * args.paced_seconds), 1)
    runs = [  # label, events per request, requests per connection, connections, pacing interval, staggered
        ("healthz", 0, args.singles, c, None, False),
        ("single events", 1, args.singles, c, None, False),
        ("batches of 100", 100, args.batches, c, None, False),
        (f"batches, paced {args.rate:,} ev/s", 100, paced_n, 2, 1 / per_second, False),
        ("batches of 100, staggered", 100, args.batches, c, None, True),
        (f"paced {args.rate:,} ev/s, staggered", 100, paced_n, 2, 1 / per_second, True),
    ]
    port = bench_api.free_port()
    process = bench_api.start_server(args.server, url, port, {"RECSYS_SERVE_WORKERS": "1"})
    postgres = postmaster_pid(url)
    results = []
    try:
        drive_in_another_process(port, load(0, 100, c, "warm")[1], None)
        drive_in_another_process(port, load(100, 5, c, "warm")[1], key)
        for label, batch, n, connections, interval, stagger in runs:
            warm, timed = load(batch, n, connections, label, stagger)
            if any(warm):
                drive_in_another_process(port, warm, key)  # the sessions' earlier events, untimed
            before = triggered_lists(port)
            spent = tree_cpu_seconds(process.pid), tree_cpu_seconds(postgres) if postgres else 0.0
            loaded = drive_in_another_process(port, timed, key, interval)
            spent = [b - a for a, b in zip(spent, (tree_cpu_seconds(process.pid),
                                                   tree_cpu_seconds(postgres) if postgres else 0.0), strict=True)]
            loaded["cpu_ms"] = [1000 * seconds / loaded["requests"] for seconds in (*spent, loaded["cpu_seconds"])]
            fired = triggered_lists(port) - before
            alone = None
            if interval is None and not stagger:
                alone = drive_in_another_process(port, load(batch, max(n // 3, 50), 1, "alone " + label)[1], key)
            results.append((label, batch, n, connections, loaded, alone, fired))
            for result in (loaded, alone or {}):
                if result.get("errors"):
                    print(f"  {label}: {result['errors']} non-200 answers, e.g. {result['first_error']}")
    finally:
        bench_api.stop_server(process)
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT count(*) FROM play_events").scalar_one()
    engine.dispose()
    commit_ms = durable_commit_ms(url)

    print(f"\n{os.cpu_count()} CPUs, {args.server} with 1 worker, PostgreSQL and the load generator on the same "
          f"machine; load average {os.getloadavg()[0]:.1f} at the end. Each connection owns {sessions} sessions, "
          f"events {args.spacing:g} s apart in event time; {stored:,} events stored in all. 'alone': one "
          f"connection, a third of the requests.\n")
    trivial = results[0][4]["rps"]
    print(f"{'workload':<28} {'conn':>4} {'requests':>8} {'req/s':>8} {'events/s':>9} {'p50 ms':>7} {'p99 ms':>7}  "
          f"{'alone p50':>9} {'p99':>6}  {'vs healthz':>10} {'ev/session':>10} {'lists':>6}")
    for label, batch, n, connections, loaded, alone, fired in results:
        events = f"{loaded['rps'] * batch:>9.0f}" if batch else f"{'':>9}"
        lone = f"{alone['p50']:>9.2f} {alone['p99']:>6.2f}" if alone else f"{'':>9} {'':>6}"
        length = f"{n * batch // sessions:>10}" if batch else f"{'':>10}"
        print(f"{label:<28} {connections:>4} {loaded['requests']:>8} {loaded['rps']:>8.0f} {events} "
              f"{loaded['p50']:>7.2f} {loaded['p99']:>7.2f}  {lone}  {loaded['rps'] / trivial:>10.2f} {length} "
              f"{fired if batch else '':>6}")
    print("\nev/session: events each session holds at the end of the run (a batch's cost grows with it; staggered "
          "sessions hold up to a threshold's more). lists: triggered lists built, logged and announced inside those "
          f"requests. Aligned runs: every session of a connection crosses the threshold ({threshold_events} events) in "
          "the same batch; staggered: the crossings spread over the run.")
    print(f"\nCPU per request, ms: the server's processes, PostgreSQL's{'' if postgres else ' (not local: n/a)'}, the "
          f"load generator's; and the requests/s those {os.cpu_count()} CPUs could give at most (nothing else "
          "running):")
    print(f"{'workload':<28} {'server':>8} {'postgres':>9} {'loadgen':>8} {'ceiling':>9}")
    for label, _, _, _, loaded, _, _ in results:
        server, database, client = loaded["cpu_ms"]
        ceiling = f"{1000 * os.cpu_count() / (server + database + client):>9.0f}" if postgres else f"{'':>9}"
        print(f"{label:<28} {server:>8.3f} {database if postgres else float('nan'):>9.3f} {client:>8.3f} {ceiling}")
    print(f"\nA durable commit (one row written, then COMMIT waiting for the WAL flush), measured alone "
          f"after the runs: p50 {np.percentile(commit_ms, 50):.2f} ms, p99 {np.percentile(commit_ms, 99):.2f} ms "
          f"over {len(commit_ms)} commits: the floor of every acknowledged request above.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
