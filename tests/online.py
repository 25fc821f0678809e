"""Running the online path's coroutines (``recsys.db`` functions over a psycopg ``AsyncConnection``)
from a test: one connection of its own, in one transaction, as the API's handlers run them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import sqlalchemy as sa

T = TypeVar("T")


def url_of(engine: sa.Engine) -> str:
    """The libpq URL of a test engine (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def in_transaction(engine: sa.Engine, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """``await work(conn)`` in a transaction on a new connection to ``engine``'s database, committed
    when it returns, rolled back when it raises."""

    async def scenario() -> T:
        async with await psycopg.AsyncConnection.connect(url_of(engine), autocommit=True) as conn, conn.transaction():
            return await work(conn)

    return asyncio.run(scenario())
