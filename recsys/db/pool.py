"""The event loop's connections: psycopg's asyncio connections for the flows that the API runs on
its event loop (``GET .../recommendations``: ``recsys.serving.lists.recommend_async``; ``POST
/v1/events``: ``recsys.tracker.track_async``, in one transaction).

A blocking connection needs a worker thread per request, and handing each list to a thread and
back, with the threads then taking turns on the GIL, costs about as much CPU as the list itself
(bench/bench_api.py, before and after: docs/benchmarks.md). psycopg_pool is not used because it
waits up to its timeout for a connection while the server is down, where the API answers 503 at
once.

The same rules as the engine's pool (``recsys.db.engine.create_engine``):

- connections are opened on demand, in autocommit, with the API's lock and statement timeouts; at
  most ``size`` idle ones are kept (the latest returned is reused first), and at most ``2 * size``
  are open at once (the engine's ``pool_size + max_overflow``). A flow that cannot get one within
  :data:`ACQUIRE_SECONDS` is :class:`~recsys.db.engine.DatabaseUnavailable` (a 503);
- a connection that broke, or that a flow left inside a transaction, is closed, never reused;
- no ping on checkout (a round trip per request): when the first statement on a reused connection
  finds it broken (the server restarted, the network cut it), the idle connections are dropped as
  stale too and the flow runs again from its start on a new connection. A flow's first statement
  must therefore only read, unless the flow runs in a transaction (nothing is committed before
  its end);
- every connection error and ``OperationalError`` (a lost server, a lock or statement timeout) is
  raised as ``DatabaseUnavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from recsys.db.engine import (
    DatabaseUnavailable,
    Flow,
    Pipeline,
    Statement,
    Step,
    session_limit_options,
    unavailable,
)
from recsys.settings import Settings

T = TypeVar("T")

ACQUIRE_SECONDS = 10.0
"""How long a flow waits for one of the ``2 * size`` connections before it is a 503."""


class _Stale(Exception):
    """The first statement found a reused connection broken."""


class AsyncPool:
    """Connections for one event loop (one API worker process)."""

    def __init__(self, url: str, *, size: int, options: str = "") -> None:
        self.url = url
        self.size = size
        self._options = options
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots = asyncio.Semaphore(2 * size)
        self._closed = False

    @classmethod
    def for_api(cls, settings: Settings, url: str) -> AsyncPool:
        """The API's pool: ``RECSYS_DB_POOL_SIZE`` and the API's lock and statement timeouts."""
        return cls(url, size=settings.database.pool_size, options=session_limit_options(settings))

    def __len__(self) -> int:
        """Idle connections."""
        return len(self._idle)

    async def run(self, flow: Callable[[], Flow[T]], *, transaction: bool = False) -> T:
        """Run the generator that ``flow()`` makes (see ``recsys.db.engine.Statement``) on a pooled
        connection and return what it returns; ``flow`` is called again for the one retry.

        ``transaction``: the flow's statements run in one transaction, ``BEGIN`` sent with its first
        step (no round trip of its own) and ``COMMIT`` after the flow returns; when the flow or a
        statement raises, it is rolled back. Such a flow may write in its first step: nothing is
        committed before its end, so running it again on a new connection is safe. A ``COMMIT``
        whose answer is lost raises ``DatabaseUnavailable``: the outcome is unknown, as on a
        blocking connection.
        """
        if self._slots.locked():  # only then wait, with a deadline (wait_for costs a task per call)
            try:
                await asyncio.wait_for(self._slots.acquire(), ACQUIRE_SECONDS)
            except TimeoutError:
                raise DatabaseUnavailable(self.url, f"no connection free within {ACQUIRE_SECONDS:g} s") from None
        else:
            await self._slots.acquire()
        try:
            conn, reused = (self._idle.pop(), True) if self._idle else (await self._open(), False)
            try:
                return await self._drive(conn, flow(), retry_if_stale=reused, transaction=transaction)
            except _Stale:
                await self._close_idle()  # the server restarted or the path was cut: they are stale too
            finally:
                await self._give_back(conn)
            conn = await self._open()
            try:
                return await self._drive(conn, flow(), retry_if_stale=False, transaction=transaction)
            finally:
                await self._give_back(conn)
        finally:
            self._slots.release()

    async def close(self) -> None:
        self._closed = True
        await self._close_idle()

    async def _drive(self, conn: psycopg.AsyncConnection, steps: Flow[T], *, retry_if_stale: bool,
                     transaction: bool) -> T:
        begin = transaction
        try:
            try:
                step = next(steps)
                while True:
                    try:
                        sent = await _execute(conn, step, begin=begin)
                    except psycopg.OperationalError as exc:
                        if retry_if_stale and conn.broken:
                            raise _Stale from exc
                        raise unavailable(self.url, exc) from exc
                    retry_if_stale = begin = False
                    step = steps.send(sent)
            except StopIteration as done:
                if transaction and not begin:  # a flow that ran no statement began nothing
                    try:
                        await conn.execute("COMMIT")
                    except psycopg.OperationalError as exc:
                        raise unavailable(self.url, exc) from exc
                return done.value
        except BaseException:
            if transaction:
                await _rollback(conn)
            raise
        finally:
            steps.close()

    async def _open(self) -> psycopg.AsyncConnection:
        try:
            return await psycopg.AsyncConnection.connect(self.url, autocommit=True, options=self._options)
        except psycopg.OperationalError as exc:
            raise unavailable(self.url, exc) from exc

    async def _give_back(self, conn: psycopg.AsyncConnection) -> None:
        reusable = (
            not self._closed
            and not conn.closed
            and not conn.broken
            and conn.info.transaction_status == TransactionStatus.IDLE
            and len(self._idle) < self.size
        )
        if reusable:
            self._idle.append(conn)
        else:
            await conn.close()

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


_BEGIN = Statement("BEGIN", {}, fetch=False, prepare=False)


async def _execute(conn: psycopg.AsyncConnection, step: Step, *, begin: bool) -> Any:
    """``recsys.db.engine.execute`` on the event loop; ``begin``: ``BEGIN`` first, in the same round trip."""
    if isinstance(step, Statement) and not begin:
        return await _result(await conn.execute(step.sql, step.params, prepare=step.prepare), step)
    statements = (*((_BEGIN,) if begin else ()), *(step.statements if isinstance(step, Pipeline) else (step,)))
    async with conn.pipeline():
        cursors = [await conn.execute(s.sql, s.params, prepare=s.prepare) for s in statements]
    results = tuple([await _result(cursor, s) for cursor, s in zip(cursors, statements, strict=True)])[begin:]
    return results if isinstance(step, Pipeline) else results[0]


async def _result(cursor: psycopg.AsyncCursor, statement: Statement) -> Any:
    if not statement.fetch:
        return cursor.rowcount
    return await cursor.fetchall() if statement.rows else await cursor.fetchone()


async def _rollback(conn: psycopg.AsyncConnection) -> None:
    """Roll back what a failed transactional flow began; a connection that cannot is not reused."""
    if conn.broken or conn.closed or conn.info.transaction_status == TransactionStatus.IDLE:
        return
    try:
        await conn.execute("ROLLBACK")
    except psycopg.Error:
        await conn.close()
