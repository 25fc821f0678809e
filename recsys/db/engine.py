"""Connections: one SQLAlchemy engine per process, on the configured server or the embedded one."""

from __future__ import annotations

from urllib.parse import urlsplit

import sqlalchemy as sa

from recsys.db.embedded import embedded_url
from recsys.errors import RecsysError
from recsys.settings import Settings


def libpq_url(settings: Settings) -> str:
    """The libpq URL (``postgresql://...``) of the configured database, starting the embedded one if needed."""
    if settings.database_url:
        return settings.database_url
    return embedded_url(settings.data_dir)


def sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` -> ``postgresql+psycopg://...`` (SQLAlchemy's name for psycopg 3)."""
    scheme = urlsplit(url).scheme
    return "postgresql+psycopg" + url[len(scheme) :]


class DatabaseUnavailable(RecsysError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"cannot reach the database {_redact(url)}: {reason}")


def create_engine(settings: Settings, url: str | None = None, *, check: bool = True) -> sa.Engine:
    """An engine with a small pool; ``url`` (libpq form) skips resolving it again.

    With ``check`` one connection is opened at once, so a wrong URL or a server that is down fails
    at start with a clear message instead of at the first query.
    """
    url = url or libpq_url(settings)
    engine = sa.create_engine(
        sqlalchemy_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
    )
    if check:
        try:
            with engine.connect():
                pass
        except sa.exc.OperationalError as exc:
            engine.dispose()
            raise DatabaseUnavailable(url, str(exc.orig).strip().splitlines()[0]) from exc
    return engine


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return url


def with_database(url: str, database: str) -> str:
    """The same libpq URL pointing at another database on the same server."""
    parts = urlsplit(url)
    return parts._replace(path="/" + database).geturl()
