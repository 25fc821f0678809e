from recsys.db import versions
from tests.api.conftest import assert_problem, wait_until, write_version


def _served_version(client, keys):
    return client.get("/v1/slots/s1/similar", headers=keys["read"]).json()["model_version"]


def test_models_are_listed_newest_first(client, keys, world, db):
    second = write_version(db, world.players, world.slots, seed=2, activate=False)
    body = client.get("/v1/models", headers=keys["read"]).json()
    assert [(m["id"], m["status"], m["serving"]) for m in body] == [(second, "ready", False),
                                                                   (world.version, "active", True)]
    assert body[1]["metrics"] == {"hr@10": 0.5} and body[1]["n_slots"] == 20


def test_activating_a_version_swaps_the_index_without_a_restart(client, keys, world, db):
    second = write_version(db, world.players, world.slots, seed=2, activate=False)
    response = client.post(f"/v1/models/{second}/activate", headers=keys["admin"])
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["serving"]) == ("active", True)
    assert _served_version(client, keys) == second
    # rollback
    assert client.post(f"/v1/models/{world.version}/activate", headers=keys["admin"]).json()["serving"] is True
    assert _served_version(client, keys) == world.version


def test_a_version_activated_elsewhere_is_served_within_seconds(client, keys, world, db):
    second = write_version(db, world.players, world.slots, seed=3, activate=False)
    versions.activate(db, second)  # the training worker's path: NOTIFY recsys_versions
    assert wait_until(lambda: _served_version(client, keys) == second, timeout=5)
    assert f"recsys_index_version {second}" in client.get("/metrics").text


def test_activation_errors_are_problems(client, keys, world, db):
    assert_problem(client.post("/v1/models/999/activate", headers=keys["admin"]), 404)
    training = versions.create_version(db, "neumf", {})
    body = assert_problem(client.post(f"/v1/models/{training}/activate", headers=keys["admin"]), 409)
    assert "is training" in body["detail"]
    assert versions.active_version(db).id == world.version
