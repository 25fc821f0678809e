"""The online path's connections: psycopg's asyncio connections from ``psycopg_pool``.

Every request of the online path (``GET .../recommendations``, ``GET .../similar``'s pgvector
fallback, ``POST /v1/events``, ``POST /v1/feedback``, the stream's reads) is plain ``async`` code on
one :class:`psycopg.AsyncConnection` of the process's :class:`OnlinePool`::

    async with pool.connection() as conn:
        row = await (await conn.execute(SQL, params)).fetchone()

Offline jobs and the CLI use SQLAlchemy Core on a blocking engine (``recsys.db.engine``): two
styles, each in its place (README, "Layout"; tests/db/test_pool.py checks the rule).

Connections are ``psycopg_pool.AsyncConnectionPool``'s: in autocommit (a read costs no
``BEGIN``/``ROLLBACK``; a caller that writes several statements opens ``conn.transaction()``, or
:func:`begun` when its first statements go in a pipeline),
with the API's ``lock_timeout`` and ``statement_timeout``, every statement prepared on the server
the first time a connection runs it (``prepare_threshold=0``: the online statements repeat on
every request). ``RECSYS_DB_POOL_SIZE`` connections are kept, twice as many may be open at once;
a request that cannot get one within :data:`ACQUIRE_SECONDS` is a 503.

What the library does not do, and this module adds (the API answers 503 *at once* in an outage and
heals without a restart, as measured before the library came in):

- while the server is down, ``AsyncConnectionPool.getconn`` waits its whole timeout (its reconnection
  attempts back off in the background, and a waiting client is not told they failed). So after any
  sign that the server went away (a connection it closed, a connection lost mid-request, the pool's
  reconnection giving up after :data:`RECONNECT_SECONDS`, or no connection at all yet) the pool is
  *down*: each request then opens a connection of its own at once (refused at once while the
  server is down: a 503; the first that succeeds ends the outage, and later requests are back on
  the pool). A request already waiting for the pool looks every :data:`RECHECK_SECONDS`;
- no round trip on checkout: a connection the server closed while it sat idle (a restart, a
  terminated backend) has something to read on its socket, which costs a ``poll`` to see; it is
  thrown away, and the request goes on through a connection of its own, as in an outage;
- when the server is back, the pool is replaced by a fresh one: the old one's idle connections are
  closed by the server, and its reconnection attempts, still backing off, would keep a request
  waiting for its whole timeout.

Every connection error and ``OperationalError`` (a lost server, a lock or statement timeout) is
raised as :class:`~recsys.db.engine.DatabaseUnavailable`.
"""

from __future__ import annotations

import functools
import logging
import select
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from recsys.db.engine import DatabaseUnavailable, session_limit_options, unavailable
from recsys.settings import Settings

log = logging.getLogger(__name__)

ACQUIRE_SECONDS = 10.0
"""How long a request waits for one of the ``2 * size`` connections before it is a 503."""
CONNECT_SECONDS = 5
"""``connect_timeout`` of a connection opened while the pool is down (a server that does not answer)."""
RECONNECT_SECONDS = 0.5
"""How long the library's background reconnection keeps trying before it gives up and the pool is
down (the next request that needs a connection tries again): short, so that it never lags behind
the server."""
RECHECK_SECONDS = 0.25
"""A request waiting for a connection looks this often whether the pool went down meanwhile."""


class OnlinePool:
    """The connections of one event loop (one API worker process)."""

    def __init__(self, url: str, *, size: int, options: str = "", acquire_seconds: float = ACQUIRE_SECONDS) -> None:
        self.url = url
        self.size = size
        self.acquire_seconds = acquire_seconds
        self._kwargs = {"autocommit": True, "prepare_threshold": 0, **({"options": options} if options else {})}
        self._pool = self._new_pool()
        self._opened = False
        self.down = True  # until a connection succeeds: the server may not be up yet
        self._failed = False  # the pool saw the server go away: replaced when it is back

    def _new_pool(self) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self.url, min_size=self.size, max_size=2 * self.size, kwargs=self._kwargs, open=False,
            timeout=self.acquire_seconds, reconnect_timeout=RECONNECT_SECONDS, reconnect_failed=self._reconnect_failed,
            name="recsys-online",
        )

    @classmethod
    def for_api(cls, settings: Settings, url: str) -> OnlinePool:
        """The API's pool: ``RECSYS_DB_POOL_SIZE`` and the API's lock and statement timeouts."""
        return cls(url, size=settings.database.pool_size, options=session_limit_options(settings))

    async def open(self) -> None:
        """Start the pool (its connections open in the background; the server may be down)."""
        await self._pool.open(wait=False)
        self._opened = True

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
            self._opened = False

    def idle(self) -> int:
        """Connections waiting in the pool."""
        return self._pool.get_stats()["pool_available"]

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection for one request, in autocommit; see the module docstring."""
        if not self._opened:
            await self.open()
        pool = self._pool
        conn = None if self.down else await self._getconn(pool)
        if conn is not None and _closed_by_server(conn):
            await pool.putconn(conn)  # broken: the pool closes it
            self._went_away()
            conn = None
        if conn is None:  # down, or the pool found the server gone: a connection of this request's own
            conn = await self._connect()
            release = conn.close
        else:
            release = functools.partial(pool.putconn, conn)
        try:
            yield conn
        except psycopg.OperationalError as exc:
            if conn.broken:
                self._went_away()
            raise unavailable(self.url, exc) from exc
        finally:
            await release()

    async def _getconn(self, pool: AsyncConnectionPool) -> psycopg.AsyncConnection | None:
        """A connection of ``pool``'s, waiting at most ``acquire_seconds`` (then a 503); None when the
        pool finds the server gone meanwhile (its reconnection gave up: the waiting client would not be
        told, so it looks every :data:`RECHECK_SECONDS`)."""
        deadline = time.monotonic() + self.acquire_seconds
        while True:
            try:
                return await pool.getconn(min(RECHECK_SECONDS, max(deadline - time.monotonic(), 0.001)))
            except PoolTimeout:
                if self.down:
                    return None
                if time.monotonic() >= deadline:
                    raise DatabaseUnavailable(
                        self.url, f"no connection free within {self.acquire_seconds:g} s") from None

    async def _connect(self) -> psycopg.AsyncConnection:
        """A connection opened for one request while the pool is down: a 503 at once when the server
        still refuses; the first that opens ends the outage."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=CONNECT_SECONDS, **self._kwargs)
        except psycopg.OperationalError as exc:
            raise unavailable(self.url, exc) from exc
        if self.down:
            self.down = False
            if self._failed:
                await self._replace_pool()
        return conn

    def _went_away(self) -> None:
        self.down = self._failed = True

    async def _replace_pool(self) -> None:
        """The server is back: a fresh pool, without the old one's connections (the server closed
        them) and its reconnection attempts still backing off (a request waiting on those would wait
        its whole timeout)."""
        self._failed = False
        old, self._pool = self._pool, self._new_pool()
        await self._pool.open(wait=False)
        await old.close(timeout=0)

    def _reconnect_failed(self, pool: AsyncConnectionPool) -> None:
        if pool is self._pool:
            log.warning("the online pool cannot reach the database: requests answer 503 until it is back")
            self._went_away()


def _closed_by_server(conn: psycopg.AsyncConnection) -> bool:
    """Whether the server closed this idle connection: an idle connection has nothing to read
    unless the server said goodbye (or sent a notification, which is read and kept). ``poll``, not
    ``select``: a process with a thousand open streams and idle sockets has descriptors past
    ``select``'s 1,024 (it raised there: a 500 for the request)."""
    if conn.closed or conn.broken:
        return True
    try:
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        # A terminated backend leaves its goodbye (an error message) and then the end of the stream:
        # the first read takes the message, the next one meets the end (raised, or a bad status).
        for _ in range(3):
            if not poller.poll(0) or conn.pgconn.status != psycopg.pq.ConnStatus.OK:
                break
            conn.pgconn.consume_input()
    except (OSError, psycopg.OperationalError):
        return True
    return conn.pgconn.status != psycopg.pq.ConnStatus.OK


BEGIN = "BEGIN"


@asynccontextmanager
async def begun(conn: psycopg.AsyncConnection) -> AsyncIterator[psycopg.AsyncConnection]:
    """A transaction that the block begins itself, by sending :data:`BEGIN` first in its first
    pipeline: it then travels with the block's first statements. ``conn.transaction()`` sends
    ``BEGIN`` alone, one round trip more, also inside a pipeline (seen in a protocol trace), and the
    events' batches are two pipelines and a commit. Commits when the block ends; rolls back when
    it raises (unless the connection is lost: nothing is left to roll back then)."""
    try:
        yield conn
    except BaseException:
        if conn.info.transaction_status in (psycopg.pq.TransactionStatus.INTRANS,
                                            psycopg.pq.TransactionStatus.INERROR):
            await conn.rollback()
        raise
    await conn.commit()
