"""The online path's connections (recsys.db.pool.OnlinePool) on the real server: reuse, a
connection the server closed while idle, an outage (503 at once, healed without a restart), a
connection lost mid-request, the API's session limits, the wait for a free connection."""

from __future__ import annotations

import asyncio

import pytest

from recsys.db.engine import DatabaseUnavailable
from recsys.db.pool import OnlinePool
from tests.proxy import Proxy


async def backend_pid(pool: OnlinePool) -> int:
    async with pool.connection() as conn:
        return (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]


def run(scenario):
    """``scenario(pool)`` on a pool of 2 (4 open at most) over ``url``, closed after."""

    def go(url: str, **options):
        async def main():
            pool = OnlinePool(url, size=options.pop("size", 2), **options)
            try:
                return await scenario(pool)
            finally:
                await pool.close()

        return asyncio.run(main())

    return go


def test_connections_are_reused_and_in_autocommit(database_url):
    @run
    async def scenario(pool):
        await backend_pid(pool)  # the first request finds the server up (on a connection of its own)
        for _ in range(100):  # the pool opens its two connections in the background
            if pool.idle() == 2:
                break
            await asyncio.sleep(0.05)
        pids = [await backend_pid(pool) for _ in range(8)]
        async with pool.connection() as conn:
            autocommit = conn.autocommit
        return pids, autocommit, pool.down

    pids, autocommit, down = scenario(database_url)
    assert len(set(pids)) <= 2 < len(pids)  # at most the pool's two connections, taken in turn and given back
    assert autocommit is True
    assert down is False


def test_a_connection_the_server_closed_while_idle_is_replaced(database_url, engine):
    import sqlalchemy as sa

    @run
    async def scenario(pool):
        before = await backend_pid(pool)
        with engine.connect() as conn:  # the server drops the idle connection (as on a restart)
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": before})  # gone on return
        await asyncio.sleep(0.2)  # the goodbye reaches its socket
        after = await backend_pid(pool)  # no error: the request is served on a new connection
        again = await backend_pid(pool)
        return before, after, again

    before, after, again = scenario(database_url)
    assert after != before
    assert again != before


def test_connections_past_descriptor_1024_are_checked_and_replaced_too(database_url, engine):
    # A server holding a thousand streams and idle sockets opens its database connections on
    # descriptors past 1,024, where select() raises (it was a 500 for the stream that got one).
    import os
    import resource
    import socket

    import sqlalchemy as sa

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.fail(f"the test needs 2,048 open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    fillers = [socket.socket() for _ in range(1100)]
    try:
        @run
        async def scenario(pool):
            async with pool.connection() as conn:
                fd = conn.pgconn.socket
            before = await backend_pid(pool)
            with engine.connect() as sync_conn:
                sync_conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": before})  # gone on return
            await asyncio.sleep(0.2)
            return fd, before, await backend_pid(pool)

        fd, before, after = scenario(database_url)
    finally:
        for filler in fillers:
            filler.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert fd > 1024 and os.name == "posix"
    assert after != before


def test_an_outage_is_a_503_at_once_and_the_pool_heals_without_a_restart(database_url):
    proxy = Proxy(database_url)
    try:

        @run
        async def scenario(pool):
            await backend_pid(pool)
            proxy.cut()
            await asyncio.sleep(0.2)
            failures = []
            for _ in range(3):  # the idle connection the cut closed, then no server at all
                with pytest.raises(DatabaseUnavailable) as down:
                    await asyncio.wait_for(backend_pid(pool), 5)
                failures.append(str(down.value))
            proxy.restore()
            back = await asyncio.wait_for(backend_pid(pool), 5)
            later = await asyncio.wait_for(backend_pid(pool), 5)
            return failures, back, later, pool.down

        failures, back, later, down = scenario(proxy.url, acquire_seconds=60.0)  # an outage must not wait for it
        assert all(message.startswith("cannot reach the database") for message in failures)
        assert back > 0 and later > 0 and down is False
    finally:
        proxy.cut()


def test_the_api_starts_its_pool_while_the_server_is_down(database_url):
    proxy = Proxy(database_url)
    proxy.cut()
    try:

        @run
        async def scenario(pool):
            with pytest.raises(DatabaseUnavailable):
                await asyncio.wait_for(backend_pid(pool), 5)
            proxy.restore()
            return await asyncio.wait_for(backend_pid(pool), 5)

        assert scenario(proxy.url) > 0
    finally:
        proxy.cut()


def test_a_connection_lost_mid_request_is_a_503_and_not_reused(database_url):
    @run
    async def scenario(pool):
        with pytest.raises(DatabaseUnavailable):
            async with pool.connection() as conn:
                pid = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]
                await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                await conn.execute("SELECT 1")
        return pid, await backend_pid(pool)

    killed, after = scenario(database_url)
    assert after != killed


def test_a_failed_transaction_writes_nothing_and_its_connection_is_reused(database_url, engine):
    import sqlalchemy as sa

    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE pool_rows (x integer)"))
    try:

        @run
        async def scenario(pool):
            await backend_pid(pool)
            await asyncio.sleep(0.2)  # the pool's own two connections are open
            pids = []
            with pytest.raises(ValueError, match="the request failed"):
                async with pool.connection() as conn, conn.transaction():
                    await conn.execute("INSERT INTO pool_rows VALUES (1)")
                    pids.append((await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0])
                    raise ValueError("the request failed")
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("INSERT INTO pool_rows VALUES (2)")
            later = [await backend_pid(pool) for _ in range(4)]
            return pids[0], later

        failed, later = scenario(database_url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT x FROM pool_rows")).scalars().all()
        assert rows == [2]
        assert failed in later  # rolled back, then given back to the pool
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE pool_rows"))


def test_the_api_pool_carries_the_lock_and_statement_timeouts(database_url, settings):
    from dataclasses import replace

    limited = replace(settings, serving=replace(settings.serving, lock_timeout_ms=300, statement_timeout_ms=4000))

    async def scenario():
        pool = OnlinePool.for_api(limited, database_url)
        try:
            async with pool.connection() as conn:
                lock = (await (await conn.execute("SHOW lock_timeout")).fetchone())[0]
                statement = (await (await conn.execute("SHOW statement_timeout")).fetchone())[0]
                return lock, statement
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == ("300ms", "4s")


def test_a_request_waits_for_a_free_connection_then_gives_up_with_a_503(database_url):
    async def sleeps(pool, seconds):
        async with pool.connection() as conn:
            await conn.execute("SELECT pg_sleep(%s)", (seconds,))
        return "done"

    async def scenario(acquire_seconds, seconds):
        pool = OnlinePool(database_url, size=1, acquire_seconds=acquire_seconds)  # two connections at most
        try:
            await backend_pid(pool)
            return await asyncio.gather(*(sleeps(pool, seconds) for _ in range(3)), return_exceptions=True)
        finally:
            await pool.close()

    waited = asyncio.run(scenario(10.0, 0.2))  # the third waits its turn
    gave_up = asyncio.run(scenario(0.1, 0.5))
    assert waited == ["done"] * 3
    assert gave_up[:2] == ["done", "done"]
    assert isinstance(gave_up[2], DatabaseUnavailable) and "no connection free within 0.1 s" in str(gave_up[2])


def test_the_online_path_is_one_async_style():
    # Issue 21: every online handler awaits its database work on the event loop; no blocking twin,
    # no thread to fall back to (the import contract in pyproject.toml keeps SQLAlchemy out of it).
    import inspect

    from api import catalogue, events, feedback, recommendations, stream

    handlers = [recommendations.get_recommendations, catalogue.get_similar, events.post_events,
                feedback.post_feedback, stream.player_stream]
    assert [inspect.iscoroutinefunction(h.fn) and not h.sync_to_thread for h in handlers] == [True] * len(handlers)
    sources = [inspect.getsource(m) for m in (recommendations, events, feedback, stream)]
    sources.append(inspect.getsource(catalogue.get_similar.fn))  # PUT /v1/slots is ingest, not the online path
    assert ["to_thread" in source for source in sources] == [False] * len(sources)
