"""The LISTEN loop (``recsys.db.listener.Listener``), as the serving state and the push hub use it,
survives whatever happens to its connection: killed by the server (``pg_terminate_backend``) or
any other error, it reconnects with backoff and goes on."""

import psycopg
import pytest

from recsys.db import push
from recsys.db.listener import Listener
from tests.api.conftest import wait_until


def listener_pids(url: str, channel_query: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()", (channel_query,)
        ).fetchall()
    return [r[0] for r in rows]


def terminate(url: str, pids: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


class FlakyConnect:
    """``psycopg.connect`` that raises a non-database error the first time (a bug, a bad DSN ...)."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = psycopg.connect

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("not a psycopg.OperationalError")
        return self.real(*args, **kwargs)


def run_serving_listener(url: str, connects: list) -> Listener:
    return Listener(url, ("recsys_test_listener",), lambda heard: None, on_connect=lambda first: connects.append(1),
                    on_idle=lambda: None, idle_seconds=60.0).start()


def run_push_listener(url: str, connects: list) -> Listener:
    return Listener(url, (push.CHANNEL,), lambda notices: None, on_connect=connects.append,
                    on_disconnect=lambda: None, debounce_seconds=0.005).start()


@pytest.mark.parametrize(("run", "query"), [
    (run_serving_listener, "LISTEN recsys_test_listener"),
    (run_push_listener, f"LISTEN {push.CHANNEL}"),
])
def test_a_listener_survives_any_error_and_a_terminated_connection(database_url, monkeypatch, run, query):
    # Listeners of earlier tests in this worker (a stream hub still closing) may be connected too: only
    # the backends that appear with this one are its own.
    others = set(listener_pids(database_url, query))
    flaky = FlakyConnect()
    monkeypatch.setattr(psycopg, "connect", flaky)
    connects: list = []
    listener = run(database_url, connects)
    try:
        assert wait_until(lambda: len(connects) == 1, timeout=10), "the first error killed the listener"
        assert flaky.calls == 2
        pids = [pid for pid in listener_pids(database_url, query) if pid not in others]
        assert len(pids) == 1
        terminate(database_url, pids)
        assert wait_until(lambda: len(connects) == 2, timeout=10)
        assert listener.is_alive()
        new = [pid for pid in listener_pids(database_url, query) if pid not in others]
        assert len(new) == 1 and new != pids
    finally:
        listener.stop(timeout=5)
