"""A database that cannot be reached: 503 with Retry-After everywhere, /similar from memory for
keys verified before the outage, the API starting while it is down, recovery once it is back.

The outage is a TCP proxy (tests/proxy.py) in front of the test server, cut and restored.
"""

import socket

import pytest

from tests.api.conftest import assert_problem, wait_until
from tests.proxy import Proxy

SHAPED_KEY = {"Authorization": "Bearer rsk_0123abcd_" + "k" * 43}


def assert_unavailable(response) -> dict:
    problem = assert_problem(response, 503)
    assert int(response.headers["retry-after"]) > 0
    return problem


@pytest.fixture
def proxy(database_url):
    proxy = Proxy(database_url)
    yield proxy
    proxy.cut()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_api_starts_while_the_database_is_down(make_client):
    client = make_client(ready=False, database_url=f"postgresql://postgres:@127.0.0.1:{closed_port()}/recsys")
    assert client.get("/healthz").json() == {"status": "ok"}
    readiness = client.get("/readyz")
    assert readiness.status_code == 503 and readiness.json()["ready"] is False
    problem = assert_unavailable(client.get("/v1/models", headers=SHAPED_KEY))
    assert problem["type"].endswith("/database-unavailable")
    assert_unavailable(client.get("/v1/slots/s1/similar", headers=SHAPED_KEY))  # a key never verified
    assert_problem(client.get("/v1/models"), 401)  # no key: no database needed to say so


def test_an_outage_is_a_503_and_similar_keeps_serving_verified_keys(world, keys, make_client, proxy):
    client = make_client(database_url=proxy.url, api_key_cache_seconds=0.0)
    similar = client.get("/v1/slots/s10/similar?k=2", headers=keys["read"])
    assert similar.json()["items"][0]["slot_id"] in ("s9", "s11")
    assert client.get("/v1/players/p1/recommendations", headers=keys["read"]).status_code == 200

    proxy.cut()
    during = client.get("/v1/slots/s10/similar?k=2", headers=keys["read"])
    assert during.status_code == 200 and during.json() == similar.json()
    assert during.headers["x-recsys-search"] == "faiss"
    assert_unavailable(client.get("/v1/slots/s10/similar?k=2", headers=keys["read+ingest"]))  # never verified
    assert_unavailable(client.get("/v1/players/p1/recommendations", headers=keys["read"]))
    assert_unavailable(client.get("/v1/models", headers=keys["read"]))
    assert_unavailable(client.put("/v1/players/p9", json={"market": "GB"}, headers=keys["ingest"]))
    assert_unavailable(client.post("/v1/events", json={"events": []}, headers=keys["ingest"]))
    assert client.get("/readyz").status_code == 503

    proxy.restore()
    assert wait_until(lambda: client.get("/readyz").status_code == 200, timeout=15)
    assert client.get("/v1/players/p1/recommendations", headers=keys["read"]).status_code == 200
    assert client.get("/v1/slots/s10/similar?k=2", headers=keys["read+ingest"]).status_code == 200


def test_handlers_map_a_lost_database_to_503_too(world, keys, make_client, proxy):
    client = make_client(database_url=proxy.url, api_key_cache_seconds=600.0)  # the guard answers from cache
    for scope in ("read", "ingest"):
        assert client.get("/v1/models", headers=keys[scope]).status_code in (200, 403)
    proxy.cut()
    assert_unavailable(client.get("/v1/players/p1/recommendations", headers=keys["read"]))
    assert_unavailable(client.get("/v1/models", headers=keys["read"]))
    assert_unavailable(client.put("/v1/players/p9", json={"market": "GB"}, headers=keys["ingest"]))
    event = {"event_id": "e1", "type": "start", "session_id": "x", "player_id": "p1", "slot_id": "s1",
             "ts": "2026-03-01T12:00:00Z"}
    assert_unavailable(client.post("/v1/events", json={"events": [event]}, headers=keys["ingest"]))
    assert_unavailable(client.post("/v1/feedback", json={"feedback": []}, headers=keys["ingest"]))


def test_api_connections_carry_lock_and_statement_timeouts(world, keys, make_client, db):
    import sqlalchemy as sa

    client = make_client(api_lock_timeout_ms=300, api_statement_timeout_ms=4000)
    with client.app.state.serving.engine.connect() as conn:
        assert conn.execute(sa.text("SHOW lock_timeout")).scalar_one() == "300ms"
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "4s"
    with db.connect() as holder:  # an exclusive lock held elsewhere: the request gives up, 503
        holder.execute(sa.text("LOCK TABLE players IN ACCESS EXCLUSIVE MODE"))
        assert_unavailable(client.get("/v1/players/p1/recommendations", headers=keys["read"]))
        holder.rollback()
    assert client.get("/v1/players/p1/recommendations", headers=keys["read"]).status_code == 200
