"""Connections: one SQLAlchemy engine per process, on the configured server or the embedded one."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
import sqlalchemy as sa

from recsys.db.embedded import embedded_url
from recsys.errors import RecsysError
from recsys.settings import Settings


def libpq_url(settings: Settings) -> str:
    """The libpq URL (``postgresql://...``) of the configured database, starting the embedded one if needed."""
    if settings.database.url:
        return settings.database.url
    return embedded_url(settings.database.data_dir)


def sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` -> ``postgresql+psycopg://...`` (SQLAlchemy's name for psycopg 3)."""
    scheme = urlsplit(url).scheme
    return "postgresql+psycopg" + url[len(scheme) :]


class DatabaseUnavailable(RecsysError):
    """The database cannot be reached, or refused to serve now (shutting down, lock or statement
    timeout): a transient condition the API answers with 503 and ``Retry-After``."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the database {_redact(url)}: {reason}")


def create_engine(
    settings: Settings, url: str | None = None, *, check: bool = True, session_limits: bool = False
) -> sa.Engine:
    """An engine with a small pool; ``url`` (libpq form) skips resolving it again.

    With ``check`` one connection is opened at once, so a wrong URL or a server that is down fails
    at start with a clear message instead of at the first query. Every connection error, and every
    ``OperationalError`` (a server going away, a lock or statement timeout), is raised as
    :class:`DatabaseUnavailable`. ``session_limits`` (the API's engine) sets ``lock_timeout`` and
    ``statement_timeout`` on each connection, so a request never waits behind a long lock.
    """
    url = url or libpq_url(settings)
    options = {"options": session_limit_options(settings)} if session_limits else {}
    engine = sa.create_engine(
        sqlalchemy_url(url),
        pool_size=settings.database.pool_size,
        max_overflow=settings.database.pool_size,
        pool_pre_ping=True,
        connect_args=options,
    )
    _raise_unavailable(engine, url)
    if check:
        try:
            with engine.connect():
                pass
        except DatabaseUnavailable:
            engine.dispose()
            raise
    return engine


def session_limit_options(settings: Settings) -> str:
    """libpq ``options`` that give every API connection its ``lock_timeout`` and ``statement_timeout``."""
    return (
        f"-c lock_timeout={int(settings.serving.lock_timeout_ms)} "
        f"-c statement_timeout={int(settings.serving.statement_timeout_ms)}"
    )


def _raise_unavailable(engine: sa.Engine, url: str) -> None:
    @sa.event.listens_for(engine, "handle_error")
    def unavailable(context: sa.engine.ExceptionContext) -> None:
        original = context.original_exception
        if context.is_disconnect or isinstance(original, psycopg.OperationalError):
            raise DatabaseUnavailable(url, _reason(original)) from original


def unavailable(url: str, exc: psycopg.OperationalError) -> DatabaseUnavailable:
    return DatabaseUnavailable(url, _reason(exc))


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return url


def with_database(url: str, database: str) -> str:
    """The same libpq URL pointing at another database on the same server."""
    parts = urlsplit(url)
    return parts._replace(path="/" + database).geturl()


def ping(engine: sa.Engine) -> bool:
    """Whether the database answers."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (sa.exc.DBAPIError, DatabaseUnavailable):
        return False
    return True
