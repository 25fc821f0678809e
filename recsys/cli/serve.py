"""``recsys serve``: the HTTP API (``api.app:create_app``) on granian or uvicorn.

The database is resolved here once (starting the embedded PostgreSQL if no URL is configured); a
configured URL is handed to the server's workers as ``RECSYS_DATABASE_URL``, while with the embedded
server each worker joins it itself (``RECSYS_DATA_DIR``, made absolute), so that it counts as one of
the server's holders: the server outlives every process that uses it (issue 22: a worker that
outlived its parent had the database stopped under it). Each worker builds its own settings,
engine and index from the environment (``api.app:create_served_app``) and dies with this process
(``PR_SET_PDEATHSIG``), so a crash leaves no worker holding the port.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
from pathlib import Path

from recsys.errors import RecsysError
from recsys.settings import Settings

APP = "api.app:create_served_app"
PARENT_PID = "RECSYS_SERVE_PARENT_PID"
"""Set for the workers: the ``recsys serve`` process they must not outlive."""
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
    if settings.database.url:
        os.environ["RECSYS_DATABASE_URL"] = url
    else:
        os.environ["RECSYS_DATA_DIR"] = str(Path(settings.database.data_dir).expanduser().resolve())
    os.environ[PARENT_PID] = str(os.getpid())
    files = raise_file_limit()
    print(f"recsys API on http://{host}:{port} ({server}, {workers} worker{'s' if workers > 1 else ''}, "
          f"{files:,} open files)", flush=True)
    serving = settings.serving
    if server == "granian":
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces, Loops
        from granian.http import HTTP1Settings

        # Open SSE streams never end by themselves: give workers 3 s after SIGTERM, then stop them.
        # backpressure: connections a worker accepts at once (granian counts them at its accept
        # loop, idle ones included: at 3,000, 5,000 idle sockets kept /healthz waiting in the
        # kernel's backlog for 7 s, bench/bench_connections.py), well above RECSYS_STREAMS_MAX so
        # that streams past their cap get the app's 503 and other requests keep room.
        # header_read_timeout closes a keep-alive connection that sends nothing (1,024 idle sockets
        # took the API down),
        # and with HTTP/1 only a new one too: the "auto" mode waits for a first byte to tell HTTP/1
        # from HTTP/2 before any timeout runs (a connection that sent nothing stayed open for good).
        Granian(APP, factory=True, address=host, port=port, interface=Interfaces.ASGI, workers=workers,
                http=HTTPModes.http1, loop=Loops(serving.loop),
                log_access=False, workers_kill_timeout=SHUTDOWN_SECONDS, backlog=serving.backlog,
                backpressure=serving.max_connections,
                http1_settings=HTTP1Settings(header_read_timeout=int(serving.header_timeout_seconds * 1000))).serve()
    else:
        import uvicorn

        # limit_concurrency answers 503 past it, where granian's backpressure makes connections wait.
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, loop=serving.loop, access_log=False,
                    log_level="info",
                    timeout_graceful_shutdown=SHUTDOWN_SECONDS, backlog=serving.backlog,
                    limit_concurrency=serving.max_connections,
                    timeout_keep_alive=max(1, round(serving.header_timeout_seconds)))
    return 0


def raise_file_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit (the workers inherit it) and
    return it. Each connection is a file: at the usual soft limit of 1,024, as many idle sockets
    left no file to accept ``/healthz`` with (issue 22)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # a container may refuse even that: serve with what there is
    return soft


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port another process listens on: the servers bind with SO_REUSEPORT, so a second
    ``recsys serve`` would otherwise start silently and share the port (issue 10). The probe binds
    with SO_REUSEADDR, as the servers do: the connections of a crashed server left in TIME_WAIT
    must not read as "in use" (issue 22: 68 s of refused restarts per kill), while a socket that
    still listens does (Linux refuses that bind even with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
