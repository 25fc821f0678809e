"""The event loop's connections: psycopg's asyncio connections for the flows that the API runs on
its event loop (``GET .../recommendations``: ``recsys.serving.lists.recommend_async``).

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
  must therefore only read;
- every connection error and ``OperationalError`` (a lost server, a lock or statement timeout) is
  raised as ``DatabaseUnavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from recsys.db.engine import DatabaseUnavailable, Statement, session_limit_options, unavailable
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

    async def run(self, flow: Callable[[], Generator[Statement, Any, T]]) -> T:
        """Run the generator that ``flow()`` makes (see ``recsys.db.engine.Statement``) on a pooled
        connection and return what it returns; ``flow`` is called again for the one retry."""
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
                return await self._drive(conn, flow(), retry_if_stale=reused)
            except _Stale:
                await self._close_idle()  # the server restarted or the path was cut: they are stale too
            finally:
                await self._give_back(conn)
            conn = await self._open()
            try:
                return await self._drive(conn, flow(), retry_if_stale=False)
            finally:
                await self._give_back(conn)
        finally:
            self._slots.release()

    async def close(self) -> None:
        self._closed = True
        await self._close_idle()

    async def _drive(self, conn: psycopg.AsyncConnection, steps, *, retry_if_stale: bool):
        try:
            statement = next(steps)
            while True:
                try:
                    cursor = await conn.execute(statement.sql, statement.params, prepare=True)
                    row = await cursor.fetchone() if statement.fetch else None
                except psycopg.OperationalError as exc:
                    if retry_if_stale and conn.broken:
                        raise _Stale from exc
                    raise unavailable(self.url, exc) from exc
                retry_if_stale = False
                statement = steps.send(row)
        except StopIteration as done:
            return done.value
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
