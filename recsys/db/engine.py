"""Connections: one SQLAlchemy engine per process, on the configured server or the embedded one."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
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


@contextmanager
def driver(conn: sa.Connection) -> Iterator[psycopg.Connection]:
    """The psycopg connection under ``conn``, for statements on the hot paths: run in ``conn``'s
    transaction (or autocommit), prepared once per connection (``prepare=True``), without
    SQLAlchemy's per-statement work. Its errors are raised as SQLAlchemy's would be: an
    ``OperationalError`` (a lost server, a lock or statement timeout) as :class:`DatabaseUnavailable`,
    and a broken connection is invalidated, never returned to the pool."""
    raw = conn.connection.driver_connection
    try:
        yield raw
    except psycopg.OperationalError as exc:
        if raw.broken or raw.closed:
            conn.invalidate()
        raise unavailable(conn.engine.url.render_as_string(hide_password=True), exc) from exc


# --- statements that a flow yields -------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class Statement:
    """One statement that a flow needs run (``recsys.serving.lists``, ``recsys.tracker``): the flow
    is a generator that yields statements (or a :class:`Pipeline` of them) and is sent each one's
    result, so the same code runs on a blocking connection (:func:`run`) or on the event loop
    (``recsys.db.pool.AsyncPool``).

    The result: the first row (None: no row); with ``rows``, every row (a list); with
    ``fetch=False``, the number of rows the statement affected. ``prepare``: prepared once per
    connection (the default; a ``SET`` is not).
    """

    sql: str
    params: Mapping[str, Any]
    fetch: bool = True
    rows: bool = False
    prepare: bool = True


@dataclass(frozen=True)
class Pipeline:
    """Statements sent in one round trip (psycopg's pipeline mode); the flow is sent their results,
    a tuple in the same order. An error in one of them is raised at the end of the pipeline."""

    statements: tuple[Statement, ...]


QUERY_CACHE_BYTES = 4096
"""psycopg converts a query's ``%(name)s`` placeholders once and caches the result for queries of at
most this many bytes (``psycopg._queries.MAX_CACHED_STATEMENT_LENGTH``); a longer one is parsed again
on every execution (about 0.2 ms of CPU for 4 KB, cProfile). The hot statements stay under it
(tests/db/test_events.py)."""


def compact(sql: str) -> str:
    """``sql`` with each run of whitespace made one space, to keep a long statement under
    :data:`QUERY_CACHE_BYTES`. It must hold no ``--`` comment (it would swallow the rest of the
    statement) and no string literal whose whitespace matters."""
    if "--" in sql:
        raise ValueError("compact() needs a statement without -- comments")
    return " ".join(sql.split())


Step = Statement | Pipeline
Flow = Generator[Step, Any, T]


def run(conn: sa.Connection, steps: Flow[T]) -> T:
    """Drive ``steps`` on ``conn`` (in its transaction, or autocommit) and return what it returns."""
    with driver(conn) as raw:
        try:
            step = next(steps)
            while True:
                step = steps.send(execute(raw, step))
        except StopIteration as done:
            return done.value


def execute(raw: psycopg.Connection, step: Step) -> Any:
    """One step on a blocking connection: a statement's result, or a pipeline's tuple of them."""
    if isinstance(step, Pipeline):
        with raw.pipeline():
            cursors = [raw.execute(s.sql, s.params, prepare=s.prepare) for s in step.statements]
        return tuple(result(cursor, s) for cursor, s in zip(cursors, step.statements, strict=True))
    return result(raw.execute(step.sql, step.params, prepare=step.prepare), step)


def result(cursor: psycopg.Cursor, statement: Statement) -> Any:
    """What a flow is sent for ``statement`` (see :class:`Statement`), from its executed cursor."""
    if not statement.fetch:
        return cursor.rowcount
    return cursor.fetchall() if statement.rows else cursor.fetchone()


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return url


def with_database(url: str, database: str) -> str:
    """The same libpq URL pointing at another database on the same server."""
    parts = urlsplit(url)
    return parts._replace(path="/" + database).geturl()


def connection(engine: sa.Engine):
    """One pooled connection for one request, in autocommit: each statement is its own transaction,
    so reads cost no BEGIN/ROLLBACK round trips (a list makes two statements in all)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def ping(engine: sa.Engine) -> bool:
    """Whether the database answers."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (sa.exc.DBAPIError, DatabaseUnavailable):
        return False
    return True
