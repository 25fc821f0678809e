"""Memory of an API server under a flood of distinct junk bearer tokens (issue 10, item 2).

    python bench/bench_auth_memory.py [--tokens 1500] [--size 60000] [--code PATH]

Starts an embedded PostgreSQL in a temporary folder, migrates it, serves ``api.app:create_app`` on
granian (one worker, as ``recsys serve`` does) and sends ``--tokens`` requests to ``GET /v1/models``,
each with a different random token of ``--size`` bytes. Prints the resident memory (VmRSS, summed
over the server and its worker processes) before and after, and the answers' status codes.

``--code`` runs another checkout of the project (say an export of an older commit) with this
script's driver, to compare before and after a change.
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER = """
from granian import Granian
from granian.constants import Interfaces
Granian("api.app:create_app", factory=True, address="127.0.0.1", port={port}, interface=Interfaces.ASGI,
        workers=1, log_access=False).serve()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants, in KiB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def wait_healthy(port: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1500)
    parser.add_argument("--size", type=int, default=60_000)
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose api/ and recsys/ are served")
    args = parser.parse_args()

    from recsys.db.embedded import embedded_url

    with tempfile.TemporaryDirectory() as data:
        url = embedded_url(Path(data))
        env = {**os.environ, "RECSYS_DATABASE_URL": url, "PYTHONPATH": str(args.code.resolve()),
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", f"from recsys.db import migrations; migrations.upgrade({url!r})"],
                       cwd=args.code, env=env, check=True)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER.format(port=port)], cwd=args.code, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_healthy(port)
            time.sleep(2.0)  # the index loader and the listener settle
            before = tree_rss_kib(server.pid)
            statuses: Counter[int] = Counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            started = time.perf_counter()
            for _ in range(args.tokens):
                token = secrets.token_urlsafe(args.size)[: args.size]
                conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {token}"})
                response = conn.getresponse()
                response.read()
                statuses[response.status] += 1
            seconds = time.perf_counter() - started
            time.sleep(1.0)
            after = tree_rss_kib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"code: {args.code.resolve()}")
    print(f"{args.tokens:,} distinct junk tokens of {args.size:,} bytes in {seconds:.1f} s; answers: "
          + ", ".join(f"{status}: {n:,}" for status, n in sorted(statuses.items())))
    print(f"server RSS before: {before / 1024:.1f} MiB, after: {after / 1024:.1f} MiB, "
          f"growth: {(after - before) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
