"""The operator's views at volume (issue 22, failure 5): each dashboard page's answer time, and
recommendations' p99 alone and while simulated tabs reload the dashboard.

    python bench/bench_dashboard.py [--items 1000000] [--tabs 4] [--cache-seconds 0,5] [--before] [--explain]
                                    [--verify]

The world is bench/volume_world.py's (built once, kept). Three parts, in this order:

1. **Queries** (in this process, no server): the overview's counts as the dashboard reads them, and
   with ``--before`` the queries the dashboard ran before migration 0013, timed (and with
   ``--explain`` their plans printed) inside a transaction that drops 0013's indexes and is rolled
   back, so the kept world is left as it was. Then the experiments' rollups (migration 0014): filled
   by a first read of each experiment (timed; the stopped ones are frozen), every experiment's read,
   and with ``--verify`` the running one's rollup against the reference query over the log.
2. **Reloading tabs** (on ``recsys serve``, granian, one worker, over the world, signed in with a read
   key): recommendations driven by bench/loadgen.py from another process (``--requests``
   at ``--concurrency``), alone, then while ``--tabs`` threads of this process each load the
   overview (or ``--tab-path``) every ``--reload-seconds`` (0: back to back); alone and with tabs
   alternate ``--rounds`` times, and the ratio is of the medians. Run once per ``--cache-seconds`` value
   (RECSYS_DASHBOARD_CACHE_SECONDS: 0 reads the counts on every load).
3. **Pages**, on the same server after the load: each dashboard page and ``GET /v1/experiments``
   loaded once cold, then five times (median) unless the first took over 5 s; a page that takes over
   ``--page-timeout`` is given up on (and may still be computing in the server: hence last).

Loopback only. On a shared machine the p99 figures move with the neighbours' load: the load average
is printed with them.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import statistics
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_api import free_port, gets, start_server, stop_server  # noqa: E402  (bench/)
from loadgen import drive_in_another_process, spread  # noqa: E402  (bench/)
from volume_world import open_world  # noqa: E402  (bench/)

# The dashboard's queries before migration 0013 (recsys/db/dashboard.py at 0008), for --before.
BEFORE = {
    "lists per hour": """
        SELECT h.hour, r.suppressed_reason, r.trigger, count(r.id) AS n
        FROM generate_series(date_trunc('hour', now()) - make_interval(hours => 23), date_trunc('hour', now()),
                             interval '1 hour') AS h(hour)
        LEFT JOIN recommendations r ON r.created_at >= h.hour AND r.created_at < h.hour + interval '1 hour'
        GROUP BY h.hour, r.suppressed_reason, r.trigger ORDER BY h.hour""",
    "funnel": """
        SELECT count(*) AS served,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.recommendation_id = i.recommendation_id
                                              AND f.slot_key = i.slot_key AND f.action = 'impression')) AS impressions,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.recommendation_id = i.recommendation_id
                                              AND f.slot_key = i.slot_key AND f.action = 'click')) AS clicks,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM play_sessions s WHERE s.recommendation_id =
                                              i.recommendation_id AND s.slot_key = i.slot_key)) AS plays,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.recommendation_id = i.recommendation_id
                                              AND f.slot_key = i.slot_key AND f.action = 'dismiss')) AS dismissals
        FROM recommendation_items i WHERE i.created_at >= now() - make_interval(hours => 24)""",
}
# Migration 0013's third index, on recommendation_items (created_at), left with that table in 0015:
# the old funnel now reads the items' view, through recommendations (created_at).
NEW_INDEXES = ("ix_feedback_received_at", "ix_play_sessions_recommendation_id_slot_key")


# --- 1. the queries -------------------------------------------------------------------------------------


def time_queries(url: str, *, before: bool, explain: bool, timeout_s: int) -> None:
    import psycopg

    from recsys.db import dashboard as store
    from recsys.db.engine import create_engine
    from recsys.settings import Settings

    engine = create_engine(Settings.from_env(database_url=url), url)
    try:
        for attempt in ("cold", "warm"):
            started = time.perf_counter()
            hours, funnel = store.overview_counts(engine, 24)
            print(f"overview counts ({attempt}): {1000 * (time.perf_counter() - started):.0f} ms; "
                  f"{sum(h.served for h in hours):,} lists served in 24 h, funnel {funnel}", flush=True)
    finally:
        engine.dispose()
    if explain:
        with psycopg.connect(url) as conn:
            for name, sql in (("lists per hour", store.HOURLY_LISTS), ("funnel", store.FUNNEL)):
                plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql.replace(":h", "24")).fetchall()
                print(f"\nEXPLAIN {name} (now):\n" + "\n".join(row[0] for row in plan), flush=True)
    if not before:
        return
    with psycopg.connect(url) as conn:  # one transaction, rolled back: the indexes come back
        conn.execute(f"SET LOCAL statement_timeout = '{timeout_s}s'")
        for index in NEW_INDEXES:
            conn.execute(f"DROP INDEX {index}")
        for name, sql in BEFORE.items():
            started = time.perf_counter()
            try:
                if explain:
                    plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql).fetchall()
                    print(f"\nEXPLAIN {name} (before migration 0013):\n" + "\n".join(row[0] for row in plan))
                else:
                    answer = conn.execute(sql).fetchall()
                    print(f"{name} before migration 0013: {answer[-1] if name == 'funnel' else len(answer)} rows")
                print(f"{name} before migration 0013: {time.perf_counter() - started:.2f} s", flush=True)
            except psycopg.errors.QueryCanceled:
                print(f"{name} before migration 0013: cancelled after {timeout_s} s", flush=True)
                break
        conn.rollback()


def fill_rollups(url: str, *, explain: bool, verify: bool) -> None:
    """The experiments' rollups (migration 0014): each experiment's first read fills its rollup from
    the log (the old cost, once after the upgrade) and freezes those stopped over a day ago; then
    every experiment's read as the API makes it, and the running one's refresh after a served list.
    ``explain``: the plans of the refresh's changed players and of the read; ``verify``: the running
    experiment's rollup against the reference query over the log, player by player."""
    import numpy as np
    import psycopg
    import sqlalchemy as sa

    from recsys.db import experiment_rollups
    from recsys.db import experiments as store
    from recsys.db.engine import create_engine
    from recsys.experiments import SUM_NAMES
    from recsys.settings import Settings

    settings = Settings.from_env(database_url=url)
    threshold = settings.realtime.threshold_seconds
    engine = create_engine(settings, url)
    try:
        experiments = store.list_all(engine, 50)
        started = time.perf_counter()
        for experiment in experiments:
            one = time.perf_counter()
            found = store.outcomes(engine, experiment, threshold)
            print(f"rollup of {experiment.name} ({experiment.status}): {time.perf_counter() - one:.2f} s, "
                  f"{sum(o.players for o in found):,} players, {sum(o.lists for o in found):,} lists", flush=True)
        print(f"rollups filled: {time.perf_counter() - started:.1f} s for {len(experiments)} experiments", flush=True)
        with engine.connect() as conn:
            frozen = conn.execute(sa.text("SELECT count(*) FROM experiment_rollups WHERE frozen IS NOT NULL")).scalar()
        for attempt in range(3):
            started = time.perf_counter()
            for experiment in experiments:
                store.outcomes(engine, experiment, threshold)
            print(f"every experiment's outcomes from the rollups ({frozen} frozen), read {attempt + 1}: "
                  f"{1000 * (time.perf_counter() - started):.0f} ms", flush=True)
        running = store.running(engine)
        if running is None:
            return
        with engine.begin() as conn:  # one more list for the running experiment, as serving logs it
            conn.execute(sa.text(
                "INSERT INTO recommendations (id, player_key, trigger, experiment_id, arm, suppressed_reason) "
                "SELECT gen_random_uuid(), min(id), 'api', :e, :arm, 'self_excluded' FROM players"),
                {"e": running.id, "arm": running.control.name})
        started = time.perf_counter()
        store.outcomes(engine, running, threshold)
        print(f"the running experiment's refresh after one new list, and its read: "
              f"{1000 * (time.perf_counter() - started):.0f} ms", flush=True)
        if explain:
            with psycopg.connect(url) as conn:
                since = conn.execute("SELECT watermark - interval '1 minute' FROM experiment_rollups "
                                     "WHERE experiment_id = %s", (running.id,)).fetchone()[0]
                for name, sql, params in (
                        ("the refresh's changed lists (from a watermark a minute back)",
                         experiment_rollups._CHANGED_LISTS, {"e": running.id, "since": since}),
                        ("the read of the running experiment's rollup", experiment_rollups._READ,
                         {"e": running.id, "threshold": threshold})):
                    plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql.replace(":e", "%(e)s").replace(
                        ":since", "%(since)s").replace(":threshold", "%(threshold)s"), params).fetchall()
                    print(f"\nEXPLAIN {name}:\n" + "\n".join(row[0] for row in plan), flush=True)
        if verify:
            started = time.perf_counter()
            logged = store.outcomes_from_log(engine, running, threshold)
            took = time.perf_counter() - started
            rolled = store.outcomes(engine, running, threshold)
            pairs = list(zip(rolled, logged, strict=True))
            same = all(np.array_equal(getattr(r.sums, n), getattr(g.sums, n)) for r, g in pairs
                       for n in SUM_NAMES) and [r.median_click_minutes for r in rolled] == \
                [g.median_click_minutes for g in logged]
            print(f"verify {running.name}: the reference query over the log took {took:.2f} s; the rollup is "
                  f"{'the same, player by player' if same else 'DIFFERENT'}", flush=True)
    finally:
        engine.dispose()


# --- 2. the pages -------------------------------------------------------------------------------------------


class Browser:
    """One signed-in dashboard tab: a keep-alive connection and the session cookie."""

    def __init__(self, port: int, key: str, timeout: float = 120.0) -> None:
        self.port, self.timeout = port, timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        origin = f"http://127.0.0.1:{port}"
        self.conn.request("POST", "/dashboard/login", urllib.parse.urlencode({"key": key}),
                          {"Content-Type": "application/x-www-form-urlencoded", "Origin": origin,
                           "Sec-Fetch-Site": "same-origin"})
        response = self.conn.getresponse()
        response.read()
        cookie = response.getheader("set-cookie")
        if response.status != 303 or not cookie:
            raise SystemExit(f"signing in to the dashboard answered {response.status}")
        self.cookie = cookie.split(";", 1)[0]

    def load(self, path: str, headers: dict[str, str] | None = None) -> tuple[int | None, float]:
        """``(status, seconds)`` of one GET; status None when no answer came within the timeout."""
        started = time.perf_counter()
        try:
            self.conn.request("GET", path, headers={"Cookie": self.cookie, **(headers or {})})
            response = self.conn.getresponse()
            response.read()
        except TimeoutError:
            self.conn.close()  # reconnects at the next request
            return None, time.perf_counter() - started
        return response.status, time.perf_counter() - started


def pages(world: dict, url: str) -> list[tuple[str, str]]:
    import psycopg

    with psycopg.connect(url) as conn:
        player = conn.execute("SELECT p.player_id FROM recommendations r JOIN players p ON p.id = r.player_key "
                              "ORDER BY r.created_at DESC LIMIT 1").fetchone()[0]
        experiment = conn.execute("SELECT name FROM experiments ORDER BY id DESC LIMIT 1").fetchone()[0]
    return [("overview", "/dashboard"), ("versions (models)", "/dashboard/versions"), ("runs", "/dashboard/runs"),
            ("experiments", "/dashboard/experiments"), ("player lookup", f"/dashboard/players?player_id={player}"),
            ("GET /v1/experiments", "/v1/experiments"), ("one experiment", f"/v1/experiments/{experiment}")]


def time_pages(port: int, key: str, shown: list[tuple[str, str]], timeout: float) -> None:
    """Each page once (cold), then five times (warm, median) unless the first took over 5 s."""
    browser = Browser(port, key, timeout)
    print(f"\n{'page':<22} {'path':<48} {'status':>6} {'cold ms':>9} {'warm ms':>9}")
    for name, path in shown:
        headers = {"Authorization": f"Bearer {key}"} if path.startswith("/v1/") else None
        status, cold = browser.load(path, headers)
        if status is None:
            print(f"{name:<22} {path[:48]:<48} {'-':>6} {f'> {timeout:.0f} s':>9} {'-':>9}", flush=True)
            continue
        warm = statistics.median(browser.load(path, headers)[1] for _ in range(5)) if cold < 5 else None
        print(f"{name:<22} {path[:48]:<48} {status:>6} {1000 * cold:>9.0f} "
              f"{'-' if warm is None else f'{1000 * warm:.0f}':>9}", flush=True)


# --- 3. reloading tabs ----------------------------------------------------------------------------------------


def tabs_reloading(port: int, key: str, tabs: int, every: float, stop: threading.Event, loads: list,
                   path: str = "/dashboard") -> list:
    headers = {"Authorization": f"Bearer {key}"} if path.startswith("/v1/") else None

    def tab(n: int) -> None:
        browser = Browser(port, key)
        time.sleep(every * n / max(tabs, 1))  # staggered, as tabs opened at different times
        while not stop.is_set():
            started = time.perf_counter()
            loads.append(browser.load(path, headers))
            stop.wait(max(0.0, every - (time.perf_counter() - started)))

    threads = [threading.Thread(target=tab, args=(n,), daemon=True) for n in range(tabs)]
    for thread in threads:
        thread.start()
    return threads


def p99_with_tabs(port: int, key: str, world: dict, args) -> dict:
    rng = random.Random(0)
    players = world["player_ids"]

    def job(n: int):
        paths = [f"/v1/players/{rng.choice(players)}/recommendations?k=10" for _ in range(n)]
        return spread(gets(paths), args.concurrency)

    drive_in_another_process(port, job(300), key)  # warm-up
    alone, loaded, loads = [], [], []
    for _ in range(args.rounds):
        alone.append(drive_in_another_process(port, job(args.requests), key))
        stop = threading.Event()
        threads = tabs_reloading(port, key, args.tabs, args.reload_seconds, stop, loads, args.tab_path)
        time.sleep(0.5)
        loaded.append(drive_in_another_process(port, job(args.requests), key))
        stop.set()
        for thread in threads:
            thread.join()
    errors = sum(r["errors"] for r in alone + loaded)
    statuses = sorted({status for status, _ in loads})
    return {"alone": [r["p99"] for r in alone], "tabs": [r["p99"] for r in loaded], "errors": errors,
            "loads": len(loads), "load_ms": statistics.median(1000 * s for _, s in loads) if loads else None,
            "load_max_ms": max(1000 * s for _, s in loads) if loads else None,
            "statuses": statuses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="the world's logged list items")
    parser.add_argument("--rebuild", action="store_true", help="build the world again")
    parser.add_argument("--before", action="store_true", help="also time the queries of before migration 0013")
    parser.add_argument("--explain", action="store_true", help="print the overview's plans (and --before's)")
    parser.add_argument("--before-timeout", type=int, default=300, help="seconds a --before query may take")
    parser.add_argument("--page-timeout", type=float, default=60.0, help="seconds a page load may take")
    parser.add_argument("--tabs", type=int, default=4)
    parser.add_argument("--reload-seconds", type=float, default=1.0, help="each tab loads its page this often")
    parser.add_argument("--tab-path", default="/dashboard",
                        help="the page the tabs reload (e.g. /dashboard/experiments, /v1/experiments)")
    parser.add_argument("--cache-seconds", default="0,5", help="RECSYS_DASHBOARD_CACHE_SECONDS values to compare")
    parser.add_argument("--requests", type=int, default=2000, help="recommendations per measurement")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="alone / with tabs pairs")
    parser.add_argument("--skip-load", action="store_true", help="queries and pages only")
    parser.add_argument("--verify", action="store_true",
                        help="check the running experiment's rollup against the reference query over the log")
    args = parser.parse_args()

    from recsys.db import apikeys
    from recsys.db.engine import create_engine
    from recsys.settings import Settings

    url, world = open_world(args.items, rebuild=args.rebuild)
    print(f"world: {args.items:,} items, built {world['built_at']:%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    time_queries(url, before=args.before, explain=args.explain, timeout_s=args.before_timeout)
    fill_rollups(url, explain=args.explain, verify=args.verify)
    engine = create_engine(Settings.from_env(database_url=url), url)
    key, _ = apikeys.create_key(engine, ["read"], "bench_dashboard")
    engine.dispose()
    shown = pages(world, url)
    results = {}
    for seconds in args.cache_seconds.split(","):
        port = free_port()
        process = start_server("granian", url, port, {"RECSYS_SERVE_WORKERS": "1",
                                                      "RECSYS_DASHBOARD_CACHE_SECONDS": seconds})
        try:
            print(f"\nRECSYS_DASHBOARD_CACHE_SECONDS={seconds}", flush=True)
            if not args.skip_load:  # first: a page given up on below may still be computing in the server
                results[seconds] = p99_with_tabs(port, key, world, args)
            time_pages(port, key, shown, args.page_timeout)
        finally:
            stop_server(process)
    if results:
        print(f"\nrecommendations p99 (ms), {args.requests:,} requests at concurrency {args.concurrency} per "
              f"measurement, alone and while {args.tabs} tabs load their page every {args.reload_seconds:g} s; "
              f"load average {os.getloadavg()[0]:.1f} at the end; the tabs load {args.tab_path}\n")
        print(f"{'cache s':>7}  {'alone p99 per round':<26} {'with tabs p99 per round':<26} {'median ratio':>12}"
              f"  {'page loads':>10} {'median ms':>9} {'max ms':>7}")
        for seconds, r in results.items():
            ratio = statistics.median(r["tabs"]) / statistics.median(r["alone"])
            print(f"{seconds:>7}  {' '.join(f'{x:.1f}' for x in r['alone']):<26} "
                  f"{' '.join(f'{x:.1f}' for x in r['tabs']):<26} {ratio:>12.2f}  {r['loads']:>10} "
                  f"{r['load_ms']:>9.0f} {r['load_max_ms']:>7.0f}"
                  + (f"  ({r['errors']} non-200 recommendations)" if r["errors"] else "")
                  + (f"  page statuses {r['statuses']}" if r["statuses"] != [200] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
