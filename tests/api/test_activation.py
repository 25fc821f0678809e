"""POST /v1/models/{v}/activate of a version the quality gate refused: 409, unless forced."""

from recsys.db import versions
from tests.api.conftest import assert_problem, wait_until, write_version


def test_a_refused_version_is_409_unless_forced(world, client, keys, db):
    refused = write_version(db, world.players, world.slots, seed=3, activate=False)
    versions.set_metrics(db, refused, {"gate": {"passed": False, "reason": "HR@10 0.100 is below the floor 0.3"}})

    problem = assert_problem(client.post(f"/v1/models/{refused}/activate", headers=keys["admin"]), 409)
    assert problem["version"] == refused and "quality gate refused" in problem["detail"]
    assert versions.active_version(db).id == world.version

    response = client.post(f"/v1/models/{refused}/activate?force=true", headers=keys["admin"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "active" and body["serving"] is True
    assert body["metrics"]["forced_activation"]["gate_reason"] == "HR@10 0.100 is below the floor 0.3"
    assert versions.active_version(db).id == refused
    # A rollback to a version that passed needs no force.
    assert client.post(f"/v1/models/{world.version}/activate", headers=keys["admin"]).status_code == 200
    assert wait_until(lambda: client.get("/readyz").json()["model_version"] == world.version)
