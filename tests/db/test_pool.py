"""The event loop's connections (recsys.db.pool.AsyncPool) on the real server: flows of statements,
reuse, a stale connection after an outage, 503s, and the API's session limits."""

from __future__ import annotations

import asyncio

import pytest

from recsys.db.engine import DatabaseUnavailable, Pipeline, Statement
from recsys.db.pool import AsyncPool
from tests.proxy import Proxy


def backend_pid_then(value):
    """A flow: its backend's pid, then ``SELECT value``; returns both."""
    pid = (yield Statement("SELECT pg_backend_pid()", {}))[0]
    (got,) = yield Statement("SELECT CAST(%(v)s AS integer)", {"v": value})
    return pid, got


def test_a_flow_gets_each_statements_row_and_connections_are_reused(database_url):
    async def scenario():
        pool = AsyncPool(database_url, size=2)
        first = await pool.run(lambda: backend_pid_then(7))
        second = await pool.run(lambda: backend_pid_then(8))
        idle = len(pool)
        await pool.close()
        return first, second, idle

    (pid1, seven), (pid2, eight), idle = asyncio.run(scenario())
    assert (seven, eight) == (7, 8)
    assert pid1 == pid2  # the same connection, back from the pool
    assert idle == 1


def test_at_most_size_connections_stay_idle(database_url):
    async def scenario():
        pool = AsyncPool(database_url, size=2)

        def slow():
            yield Statement("SELECT pg_sleep(0.2)", {}, fetch=False)
            return (yield Statement("SELECT pg_backend_pid()", {}))[0]

        pids = await asyncio.gather(*(pool.run(slow) for _ in range(4)))  # 2 * size may be open at once
        idle = len(pool)
        await pool.close()
        return pids, idle

    pids, idle = asyncio.run(scenario())
    assert len(set(pids)) == 4
    assert idle == 2


def test_a_connection_left_in_a_transaction_is_closed_not_reused(database_url):
    async def scenario():
        pool = AsyncPool(database_url, size=2)

        def opens_a_transaction():
            yield Statement("BEGIN", {}, fetch=False)
            return (yield Statement("SELECT pg_backend_pid()", {}))[0]

        inside = await pool.run(opens_a_transaction)
        idle = len(pool)
        after, _ = await pool.run(lambda: backend_pid_then(1))
        await pool.close()
        return inside, idle, after

    inside, idle, after = asyncio.run(scenario())
    assert idle == 0
    assert after != inside


def test_a_stale_connection_is_replaced_and_the_flow_runs_again(database_url, engine):
    import sqlalchemy as sa

    async def scenario():
        pool = AsyncPool(database_url, size=2)
        before, _ = await pool.run(lambda: backend_pid_then(1))
        with engine.connect() as conn:  # the server drops the pooled connection (as on a restart)
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        started = []

        def counted():
            started.append(1)
            return (yield from backend_pid_then(2))

        after, two = await pool.run(counted)
        await pool.close()
        return before, after, two, len(started)

    before, after, two, runs = asyncio.run(scenario())
    assert two == 2 and after != before
    assert runs == 2  # the flow ran again from its start on a new connection


def test_a_failure_after_the_first_statement_is_not_retried(database_url):
    async def scenario():
        pool = AsyncPool(database_url, size=2)
        await pool.run(lambda: backend_pid_then(1))  # one idle connection
        started = []

        def killed_midway():
            started.append(1)
            pid = (yield Statement("SELECT pg_backend_pid()", {}))[0]
            yield Statement("SELECT pg_terminate_backend(%(pid)s)", {"pid": pid})
            yield Statement("SELECT 1", {})

        with pytest.raises(DatabaseUnavailable):
            await pool.run(killed_midway)
        idle = len(pool)
        await pool.close()
        return len(started), idle

    runs, idle = asyncio.run(scenario())
    assert runs == 1
    assert idle == 0  # the broken connection was closed, not given back


def test_an_outage_is_database_unavailable_and_the_pool_recovers(database_url):
    proxy = Proxy(database_url)
    try:

        async def scenario():
            pool = AsyncPool(proxy.url, size=2)
            assert (await pool.run(lambda: backend_pid_then(1)))[1] == 1
            proxy.cut()
            with pytest.raises(DatabaseUnavailable) as down:
                await pool.run(lambda: backend_pid_then(2))
            proxy.restore()
            back = await pool.run(lambda: backend_pid_then(3))
            await pool.close()
            return str(down.value), back

        message, back = asyncio.run(scenario())
        assert message.startswith("cannot reach the database")
        assert back[1] == 3
    finally:
        proxy.cut()


def test_the_api_pool_carries_the_lock_and_statement_timeouts(database_url, settings):
    from dataclasses import replace

    limited = replace(settings, serving=replace(settings.serving, lock_timeout_ms=300, statement_timeout_ms=4000))

    def shown():
        lock = (yield Statement("SHOW lock_timeout", {}))[0]
        statement = (yield Statement("SHOW statement_timeout", {}))[0]
        return lock, statement

    async def scenario():
        pool = AsyncPool.for_api(limited, database_url)
        try:
            return await pool.run(shown)
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == ("300ms", "4s")


def test_a_flow_waits_for_a_free_connection_then_gives_up_with_a_503(database_url, monkeypatch):
    from recsys.db import pool as pool_module

    def sleeps(seconds):
        def flow():
            yield Statement("SELECT pg_sleep(%(s)s)", {"s": seconds}, fetch=False)
            return "done"

        return flow

    async def scenario():
        pool = AsyncPool(database_url, size=1)  # two connections at most
        waited = await asyncio.gather(*(pool.run(sleeps(0.2)) for _ in range(3)))  # the third waits its turn
        monkeypatch.setattr(pool_module, "ACQUIRE_SECONDS", 0.1)
        gave_up = await asyncio.gather(*(pool.run(sleeps(0.5)) for _ in range(3)), return_exceptions=True)
        await pool.close()
        return waited, gave_up

    waited, gave_up = asyncio.run(scenario())
    assert waited == ["done"] * 3
    assert gave_up[:2] == ["done", "done"]
    assert isinstance(gave_up[2], DatabaseUnavailable) and "no connection free within 0.1 s" in str(gave_up[2])


# --- flows in one transaction (POST /v1/events) -------------------------------------------------------


def writes_then(value, *, fail: bool = False):
    """A transactional flow: a row into ``pool_rows`` and the backend's pid in one pipeline (the
    first step writes), then a second statement; raises after both when ``fail``."""
    _, (pid,) = yield Pipeline((
        Statement("INSERT INTO pool_rows VALUES (%(v)s)", {"v": value}, fetch=False),
        Statement("SELECT pg_backend_pid()", {}),
    ))
    rows = yield Statement("SELECT x FROM pool_rows ORDER BY x", {}, rows=True)
    if fail:
        raise ValueError("the flow failed")
    return pid, [x for (x,) in rows]


@pytest.fixture
def pool_rows(engine):
    import sqlalchemy as sa

    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE pool_rows (x integer)"))
    yield lambda: [x for (x,) in _select(engine, "SELECT x FROM pool_rows ORDER BY x")]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE pool_rows"))


def _select(engine, sql: str) -> list[tuple]:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


def test_a_transaction_commits_when_the_flow_returns_and_sees_its_own_writes(database_url, pool_rows):
    async def scenario():
        pool = AsyncPool(database_url, size=2)
        first = await pool.run(lambda: writes_then(1), transaction=True)
        second = await pool.run(lambda: writes_then(2), transaction=True)
        idle = len(pool)
        await pool.close()
        return first, second, idle

    (pid1, seen1), (pid2, seen2), idle = asyncio.run(scenario())
    assert (seen1, seen2) == ([1], [1, 2])
    assert pool_rows() == [1, 2]
    assert pid1 == pid2 and idle == 1  # committed, so the connection went back idle and was reused


def test_a_failed_transaction_writes_nothing_and_its_connection_is_reused(database_url, pool_rows):
    async def scenario():
        pool = AsyncPool(database_url, size=2)
        with pytest.raises(ValueError, match="the flow failed"):
            await pool.run(lambda: writes_then(1, fail=True), transaction=True)
        rolled_back = len(pool)
        with pytest.raises(DatabaseUnavailable):  # a statement's error: a lock timeout here
            await pool.run(_times_out, transaction=True)
        after = await pool.run(lambda: writes_then(3), transaction=True)
        await pool.close()
        return rolled_back, after

    rolled_back, (_, seen) = asyncio.run(scenario())
    assert rolled_back == 1  # rolled back, then given back idle
    assert seen == [3]
    assert pool_rows() == [3]


def _times_out():
    yield Pipeline((
        Statement("INSERT INTO pool_rows VALUES (2)", {}, fetch=False),
        Statement("SET LOCAL statement_timeout = 50", {}, fetch=False, prepare=False),
    ))
    yield Statement("SELECT pg_sleep(1)", {}, fetch=False)


def test_a_stale_connection_reruns_a_writing_transaction_once(database_url, engine, pool_rows):
    import sqlalchemy as sa

    async def scenario():
        pool = AsyncPool(database_url, size=2)
        before, _ = await pool.run(lambda: writes_then(1), transaction=True)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        started = []

        def counted():
            started.append(1)
            return (yield from writes_then(2))

        after, seen = await pool.run(counted, transaction=True)
        await pool.close()
        return before, after, seen, len(started)

    before, after, seen, runs = asyncio.run(scenario())
    assert runs == 2 and after != before  # the first step (BEGIN and the insert) failed: run again
    assert seen == [1, 2]
    assert pool_rows() == [1, 2]  # written once


def test_pipelines_give_each_statement_its_result_in_order_on_both_drivers(database_url, engine):
    from recsys.db.engine import run

    def flow():
        return (yield Pipeline((
            Statement("SELECT generate_series(1, 3)", {}, rows=True),
            Statement("SELECT CAST(%(v)s AS text)", {"v": "x"}),
            Statement("SELECT 1 WHERE false", {}),
            Statement("SELECT generate_series(1, 4)", {}, fetch=False),
        )))

    async def on_the_event_loop():
        pool = AsyncPool(database_url, size=1)
        try:
            return await pool.run(flow)
        finally:
            await pool.close()

    with engine.connect() as conn:
        blocking = run(conn, flow())
    assert asyncio.run(on_the_event_loop()) == blocking == ([(1,), (2,), (3,)], ("x",), None, 4)
