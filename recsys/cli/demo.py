"""``recsys demo``: the whole loop on the embedded default, for a first look.

A synthetic casino, the daily pipeline (consolidate, train, gate, activate), the API on port 8000
(another free port when 8000 is taken), and a minute of simulated live play through it (the one-hour
trigger, the push, feedback); then a summary and the curl commands to try while the API keeps running
(Ctrl-C stops it). The demo's API key is kept in the data folder and reused by the next run.

On the embedded default the demo keeps its world in a folder of its own, ``<RECSYS_DATA_DIR>/demo``
(``.recsys/demo``): its synthetic players and slots would otherwise collide with the ids of the
README's example files, which a first user imports next into ``.recsys`` (issue 23).
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from recsys.settings import Settings

# Event time runs this much faster than the wall clock: 45 s of demo are 90 minutes of play, so
# long sessions cross the one-hour trigger while you watch.
SPEED = 120.0
# The demo's admin key, kept beside the embedded database so every run prints the same one.
KEY_FILE = "demo-api-key"
# The demo's own folder under RECSYS_DATA_DIR (the embedded default only).
DEMO_FOLDER = "demo"
DEMO_SCOPES = ("read", "ingest", "admin")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole loop on a synthetic casino and show it",
        description="The whole loop on a synthetic casino: pipeline, API, a minute of live play, a summary. "
                    "With no RECSYS_DATABASE_URL it keeps its own embedded PostgreSQL in <RECSYS_DATA_DIR>/demo "
                    "(.recsys/demo), apart from your own data in .recsys.")
    parser.add_argument("--players", type=int, default=20_000, help="players of the synthetic casino")
    parser.add_argument("--slots", type=int, default=800, help="slots of the synthetic casino")
    parser.add_argument("--days", type=int, default=60, help="days of play history, ending yesterday")
    parser.add_argument("--simulate-seconds", type=float, default=45.0,
                        help="wall seconds of simulated live play through the API; 0: stop after the pipeline "
                             "(no API, no live play)")
    parser.add_argument("--port", type=int, default=None,
                        help="API port (default: RECSYS_SERVE_PORT, 8000; a free one when it is taken)")
    parser.add_argument("--exit", action="store_true", help="stop the API after the summary")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    from recsys.cli.simulate import run_simulation
    from recsys.db import migrations
    from recsys.db.engine import create_engine, libpq_url
    from recsys.db.simulation import loop_figures
    from recsys.db.synth_store import CasinoNotEmptyError, write_casino
    from recsys.pipeline import run_pipeline
    from recsys.synth import SynthConfig

    settings = demo_settings(settings)
    url = libpq_url(settings)
    data_dir = settings.database.data_dir
    where = settings.database.url and "RECSYS_DATABASE_URL" or f"the embedded PostgreSQL in {data_dir}/pg"
    _step(f"1/5 database: {where}; migrating to head")
    migrations.upgrade(url)
    engine = create_engine(settings, url)

    start = date.today() - timedelta(days=args.days)
    _step(f"2/5 synthetic casino: {args.players:,} players, {args.slots:,} slots, {args.days} days from {start}")
    try:
        summary = write_casino(
            engine, SynthConfig(players=args.players, slots=args.slots, days=args.days, seed=1, start=start),
            progress=True,
        )
        print(f"    wrote {summary.players:,} players, {summary.slots:,} slots, {summary.sessions:,} sessions")
    except CasinoNotEmptyError as exc:
        print(f"    the database already holds a casino ({exc.players:,} players): using it")

    _step("3/5 daily pipeline: consolidate -> train NeuMF -> evaluate -> gate -> activate")
    outcome = run_pipeline(engine, settings)
    print(f"    pipeline run {outcome.run_id} {outcome.status}: {outcome.message} ({outcome.seconds:.0f} s)")
    _print_verdict(engine, outcome.version_id)

    key, reused = demo_key(engine, Path(data_dir) / KEY_FILE)
    print(f"    API key of the demo: {'reused from' if reused else 'new, kept in'} {data_dir}/{KEY_FILE}")
    engine.dispose()
    if args.simulate_seconds <= 0:
        print("\n--simulate-seconds 0: no API and no live play; `recsys demo` again (the casino and the model "
              "stay) or `recsys serve` with RECSYS_DATA_DIR=" + str(data_dir) + " serves them")
        return 0
    port, taken = choose_port("127.0.0.1", settings.serving.port if args.port is None else args.port)
    if taken is not None:
        print(f"    port {taken} is taken (another `recsys serve` or demo still running?): using port {port} instead")
    base = f"http://127.0.0.1:{port}"
    _step(f"4/5 API: recsys serve on {base}")
    server = subprocess.Popen(
        [sys.executable, "-m", "recsys", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**_environ(), "RECSYS_DATABASE_URL": url, "RECSYS_DATA_DIR": str(data_dir)},
    )
    try:
        _wait_ready(httpx, base, server)
        _step(f"5/5 live play: {args.simulate_seconds:g} s of simulated players (event time x{SPEED:g})")
        sim_args = argparse.Namespace(url=base, api_key=key, rate=150.0, duration=args.simulate_seconds,
                                      speed=SPEED, players=5000, trending_slot=None, seed=0)
        since = datetime.now(UTC)
        sim = run_simulation(settings, sim_args)
        print()
        print("What the players did (as the simulator saw it)")
        for line in sim.lines():
            print(f"    {line}")
        engine = create_engine(settings, url)
        recorded = loop_figures(engine, since)
        engine.dispose()
        print("What the service recorded (PostgreSQL)")
        print(f"    lists served on request: {recorded['api_lists']:,}; by the long-session trigger: "
              f"{recorded['triggered_lists']:,} (sessions that fired: {recorded['fired_sessions']:,}); "
              f"suppressed by player protection or session policy: {recorded['suppressed_lists']:,}")
        print(f"    feedback rows: {recorded['feedback']:,}; play sessions attributed to a recommendation: "
              f"{recorded['attributed_sessions']:,}")
        print()
        for line in try_it(base, key, sim.example_recommendation or "<player_id>"):
            print(line)
        if not args.exit:
            print("\nThe API keeps running; Ctrl-C stops it.")
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
    return 0


def try_it(base: str, key: str, player: str) -> list[str]:
    """The demo's closing lines: its key with its scopes, what to ask the API, and the dashboard."""
    return [
        f"Try it (API key: {key}, scopes {', '.join(DEMO_SCOPES)}: admin, so it can also activate versions "
        f"and start experiments):",
        f'    curl -H "Authorization: Bearer {key}" "{base}/v1/players/{player}/recommendations?k=5"',
        f'    curl -H "Authorization: Bearer {key}" "{base}/v1/models"',
        f'    curl -N -H "Authorization: Bearer {key}" "{base}/v1/players/{player}/stream"',
        f"    open {base}/dashboard and sign in with the key (the operator dashboard)",
        f"    curl {base}/metrics",
        f"    open {base}/schema for the OpenAPI document",
    ]


def demo_settings(settings: Settings) -> Settings:
    """``settings`` with the data folder moved to ``<data_dir>/demo`` on the embedded default; a
    configured ``RECSYS_DATABASE_URL`` is used as it is (its runs' reports still go to the demo folder)."""
    return settings.replace(data_dir=Path(settings.database.data_dir) / DEMO_FOLDER)


def _print_verdict(engine, version_id: int | None) -> None:
    """The version this run trained (else the active one) against its baselines, in words."""
    from recsys.db import versions
    from recsys.verdict import verdict

    version = versions.get_version(engine, version_id) if version_id is not None else None
    active = versions.active_version(engine)
    version = version or active
    if version is None:
        print("    no model version yet; the API will serve popularity lists")
        return
    state = "active" if active is not None and active.id == version.id else version.status
    print(f"    version {version.id} ({state}):")
    for line in verdict(version.metrics, version.model).lines():
        print(f"    {line}")
    if active is None:
        print("    no version is active: the API serves popularity lists until one passes the gate")
    elif active.id != version.id:
        print(f"    version {active.id} stays active")


def demo_key(engine, path: Path) -> tuple[str, bool]:
    """The demo's admin key: the one stored at ``path`` while the database still accepts it, else a new
    one written there (readable by its owner only). Returns ``(key, reused)``."""
    from recsys.db.apikeys import create_key, find_key

    if path.is_file():
        key = path.read_text().strip()
        found = find_key(engine, key)
        if found is not None and found.allows("admin"):
            return key, True
    key, _ = create_key(engine, list(DEMO_SCOPES), name="demo")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key, False


def choose_port(host: str, wanted: int) -> tuple[int, int | None]:
    """``wanted`` when it is free on ``host``, else a free port: ``(port, the taken port or None)``."""
    with socket.socket() as s:
        try:
            s.bind((host, wanted))
        except OSError:
            return _free_port(), wanted
    return wanted, None


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _wait_ready(httpx, base: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    from recsys.errors import RecsysError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RecsysError(f"the API exited with code {server.returncode} before it was ready")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RecsysError(f"the API was not ready after {timeout:.0f} s ({base}/readyz)")
