import pytest

from recsys.db import apikeys
from tests.api.conftest import assert_problem


def test_health_readiness_metrics_and_schema_need_no_key(client, world):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == world.version
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'recsys_http_request_duration_seconds_count{route="/healthz",method="GET",status="2xx"} 1' in metrics.text
    assert f"recsys_index_version {world.version}" in metrics.text
    schema = client.get("/schema/openapi.json").json()
    assert "/v1/players/{player_id}/recommendations" in schema["paths"]
    assert "/v1/slots/{slot_id}/similar" in schema["paths"]


def test_not_ready_without_an_active_version(db, make_client):
    client = make_client(ready=False)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["ready"] is False
    assert client.get("/healthz").status_code == 200


ENDPOINTS = [
    ("GET", "/v1/slots/s1/similar", None, "read"),
    ("GET", "/v1/players/p1/recommendations", None, "read"),
    ("GET", "/v1/models", None, "read"),
    ("PUT", "/v1/slots/s1", {"active": True}, "ingest"),
    ("PUT", "/v1/slots", [{"slot_id": "s1", "active": True}], "ingest"),
    ("PUT", "/v1/players/p1", {"risk_flag": False}, "ingest"),
    ("PUT", "/v1/players", [{"player_id": "p1", "risk_flag": False}], "ingest"),
    ("POST", "/v1/models/1/activate", None, "admin"),
]


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_scopes_are_enforced(client, keys, method, path, body, scope):
    def call(headers):
        return client.request(method, path, json=body, headers=headers)

    assert_problem(call({}), 401)
    assert call({}).headers["www-authenticate"].startswith("Bearer")
    assert_problem(call({"Authorization": "Bearer rsk_00000000_not-a-key"}), 401)
    assert_problem(call({"Authorization": "Basic dXNlcjpwYXNz"}), 401)
    for name, headers in keys.items():
        allowed = name == "admin" or scope in name.split("+")
        status = call(headers).status_code
        assert (status < 400) == allowed, (name, status)
        if not allowed:
            assert_problem(call(headers), 403)


def test_a_revoked_key_stops_working_once_the_cache_expires(world, db, make_client):
    client = make_client(api_key_cache_seconds=0.0)
    key, row = apikeys.create_key(db, ["read"], "to revoke")
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/models", headers=headers).status_code == 200
    assert apikeys.revoke_key(db, row.prefix)
    assert_problem(client.get("/v1/models", headers=headers), 401)


def test_unknown_routes_and_methods_are_problems(client, keys):
    assert_problem(client.get("/v2/nothing", headers=keys["read"]), 404)
    assert_problem(client.delete("/v1/slots/s1", headers=keys["admin"]), 405)
