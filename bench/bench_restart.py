"""A crash never blocks a restart (issue 22): ``recsys serve``'s main process SIGKILLed, then the
seconds until its port is free, a new ``serve`` answers ``/healthz``, and it serves the model again
(``/readyz`` 200: the active version loaded).

    python bench/bench_restart.py [--rounds 3] [--slots 5000] [--players 20000]

It runs as a user would, on the embedded default: a data folder of its own (``RECSYS_DATA_DIR`` in a
temporary folder, no ``RECSYS_DATABASE_URL``), migrated, seeded with bench_api.py's casino and its
active version, and ``recsys serve`` (granian, one worker) started from it. Each round kills the
server's main process with SIGKILL (its worker must die with it, and the embedded PostgreSQL, which
the worker held, must stay up), starts a new ``serve`` as soon as the port passes ``serve``'s own
check, and times each step from the kill. Never part of the test suite (tests do not time things:
tests/api/test_operations.py checks the same steps without a clock).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_api import casino_arguments, free_port, seed_casino  # noqa: E402  (bench/ is the script's folder)

TARGET_SECONDS = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    casino_arguments(parser)
    args = parser.parse_args()

    import psutil

    from recsys.cli.serve import _check_port_free
    from recsys.db.engine import create_engine
    from recsys.errors import RecsysError
    from recsys.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    home.chmod(0o755)  # the embedded server's user reads it
    # Removed at exit after the embedded server stops (this process holds it, and the last holder to
    # exit stops it: atexit runs the later registration first).
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k != "RECSYS_DATABASE_URL"}
    env["RECSYS_DATA_DIR"] = str(home)
    server = None
    try:
        subprocess.run([sys.executable, "-m", "recsys", "db", "upgrade"], env=env, check=True, capture_output=True)
        os.environ.pop("RECSYS_DATABASE_URL", None)
        os.environ["RECSYS_DATA_DIR"] = str(home)
        settings = Settings.from_env()
        engine = create_engine(settings)
        started = time.perf_counter()
        seed_casino(engine, slots=args.slots, players=args.players, sessions_per_player=2)
        engine.dispose()
        print(f"seeded {args.slots:,} slots, {args.players:,} players and an active version in "
              f"{time.perf_counter() - started:.0f} s (embedded PostgreSQL in {home})", flush=True)
        port = free_port()
        server = _serve(env, port)
        _wait(port, "/readyz", time.monotonic() + 120)
        rows = []
        for round_ in range(1, args.rounds + 1):
            workers = psutil.Process(server.pid).children(recursive=True)
            os.kill(server.pid, signal.SIGKILL)
            killed = time.monotonic()
            server.wait(10)
            orphans = psutil.wait_procs(workers, timeout=5)[1]
            while True:
                try:
                    _check_port_free("127.0.0.1", port)
                    break
                except RecsysError:
                    time.sleep(0.02)
            port_free = time.monotonic() - killed
            server = _serve(env, port)
            healthz = _wait(port, "/healthz", killed + 120) - killed
            ready = _wait(port, "/readyz", killed + 120) - killed
            rows.append((port_free, healthz, ready))
            print(f"round {round_}: port free {port_free:.2f} s, /healthz {healthz:.2f} s, model served "
                  f"(/readyz) {ready:.2f} s after the kill; workers left alive: {len(orphans)}; load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
        median = np.median(np.array(rows), axis=0)
        print(f"\nmedian of {len(rows)}: port free {median[0]:.2f} s, answers {median[1]:.2f} s, serves the model "
              f"{median[2]:.2f} s after the kill; target: answers within {TARGET_SECONDS:g} s: "
              f"{'met' if median[1] < TARGET_SECONDS else 'NOT met'}")
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    return 0


def _serve(env: dict, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "recsys", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _wait(port: int, path: str, deadline: float) -> float:
    """The monotonic time at which ``path`` first answered 200 (polled every 20 ms)."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
                if response.status == 200:
                    return time.monotonic()
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{path} did not answer 200 in time")


if __name__ == "__main__":
    sys.exit(main())
