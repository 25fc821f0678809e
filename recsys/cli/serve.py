"""``recsys serve``: the HTTP API (``api.app:create_app``) on granian or uvicorn.

The database is resolved here once (starting the embedded PostgreSQL if no URL is configured) and
handed to the server's workers as ``RECSYS_DATABASE_URL``; each worker builds its own settings,
engine and index from the environment, as ``create_app()`` does without arguments.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket

from recsys.errors import RecsysError
from recsys.settings import Settings

APP = "api.app:create_app"
SHUTDOWN_SECONDS = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the HTTP API")
    parser.add_argument("--host", help="address to listen on (default: RECSYS_SERVE_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default: RECSYS_SERVE_PORT)")
    parser.add_argument("--server", choices=("granian", "uvicorn"), help="ASGI server (default: RECSYS_SERVE_SERVER)")
    parser.add_argument("--workers", type=int, help="worker processes (default: RECSYS_SERVE_WORKERS)")
    parser.set_defaults(func=run)


# A request runs on one core. Multi-threaded BLAS and OpenMP pools (numpy's OpenBLAS, FAISS) spin
# while waiting for work and take the CPU from the other requests and from PostgreSQL: a list took
# 8.5 ms at p50 from a worker thread with them, 2.0 ms without (bench/bench_api.py machine). The
# pools size themselves from these variables when numpy and FAISS are first imported, so they go
# into the environment before the server starts (its worker processes inherit them, and this
# process has not imported numpy yet). They are defaults: a value already in the environment wins.
# FAISS's own OpenMP count is set to 1 again when the serving state starts (``set_threads``).
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run(args: argparse.Namespace, settings: Settings) -> int:
    for variable, value in SINGLE_THREADED.items():
        os.environ.setdefault(variable, value)
    from recsys.db.engine import libpq_url

    host = args.host or settings.serving.host
    port = settings.serving.port if args.port is None else args.port
    server = args.server or settings.serving.server
    workers = args.workers or settings.serving.workers
    if args.port is not None and not 0 < args.port < 65536:
        raise RecsysError(f"--port {args.port}: a TCP port is 1..65535")
    _check_port_free(host, port)
    url = libpq_url(settings)
    _check_schema(url)
    os.environ["RECSYS_DATABASE_URL"] = url
    print(f"recsys API on http://{host}:{port} ({server}, {workers} worker{'s' if workers > 1 else ''})", flush=True)
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        # Open SSE streams never end by themselves: give workers 3 s after SIGTERM, then stop them.
        Granian(APP, factory=True, address=host, port=port, interface=Interfaces.ASGI, workers=workers,
                log_access=False, workers_kill_timeout=SHUTDOWN_SECONDS).serve()
    else:
        import uvicorn

        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, access_log=False, log_level="info",
                    timeout_graceful_shutdown=SHUTDOWN_SECONDS)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on: the servers bind with SO_REUSEPORT, so a second
    ``recsys serve`` would otherwise start silently and share the port (issue 10)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            raise RecsysError(f"{host}:{port} {reason}; choose another with --port or RECSYS_SERVE_PORT") from exc


def _check_schema(url: str) -> None:
    from alembic.script import ScriptDirectory

    from recsys.db import migrations

    current = migrations.current(url)
    head = ScriptDirectory.from_config(migrations.alembic_config(url)).get_current_head()
    if current != head:
        raise RecsysError(f"the database is at revision {current or 'none'}, not {head}: run `recsys db upgrade`")
