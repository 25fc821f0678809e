"""The experiments endpoints: start, read, stop with promotion; errors are problem details."""

from recsys.db import versions
from tests.api.conftest import assert_problem, write_version


def test_start_read_and_stop_with_promotion(client, keys, world, db):
    other = write_version(db, world.players, world.slots, seed=5, activate=False)
    body = {"name": "ab", "arms": [{"name": "control", "version": world.version, "weight": 50},
                                   {"name": "candidate", "version": other, "weight": 50}]}
    started = client.post("/v1/experiments", json=body, headers=keys["admin"])
    assert started.status_code == 201, started.text
    out = started.json()
    assert (out["status"], out["control"], [a["version"] for a in out["arms"]]) == ("running", "control",
                                                                                    [world.version, other])
    assert out["arms"][1]["results"]["click_rate"] == {"value": None, "low": None, "high": None, "diff": None,
                                                      "diff_low": None, "diff_high": None, "p_value": None,
                                                      "verdict": "no data"}
    again = assert_problem(client.post("/v1/experiments", json={**body, "name": "cd"}, headers=keys["admin"]), 409)
    assert "'ab' is running" in again["detail"]
    assert client.get("/v1/experiments/ab", headers=keys["read"]).json()["name"] == "ab"
    assert [e["name"] for e in client.get("/v1/experiments", headers=keys["read"]).json()] == ["ab"]
    assert_problem(client.post("/v1/experiments/ab/stop?promote=nope", headers=keys["admin"]), 422)
    stopped = client.post("/v1/experiments/ab/stop?promote=candidate", headers=keys["admin"])
    assert stopped.status_code == 200 and stopped.json()["promoted_arm"] == "candidate"
    assert versions.active_version(db).id == other
    assert client.get("/v1/models", headers=keys["read"]).json()[0]["serving"] is True


def test_bad_experiments_are_refused_with_the_field_named(client, keys, world):
    def post(body):
        return client.post("/v1/experiments", json=body, headers=keys["admin"])

    arm = {"name": "control", "version": world.version, "weight": 1}
    assert assert_problem(post({"name": "x", "arms": [arm]}), 422)["field"] == "arms"
    assert assert_problem(post({"name": "bad name", "arms": [arm, {**arm, "name": "b"}]}), 422)["field"] == "name"
    assert assert_problem(post({"name": "x", "arms": [arm, {**arm, "name": "b", "weight": 0}]}), 422)["field"] == \
        "weight"
    assert assert_problem(post({"name": "x", "arms": [arm, {**arm, "name": "b", "version": "v9"}]}), 422)["field"] \
        == "version"
    assert "does not exist" in assert_problem(post({"name": "x", "arms": [arm, {**arm, "name": "b", "version": 99}]}),
                                              409)["detail"]
    assert_problem(post({"name": "x"}), 422)
    assert_problem(client.post("/v1/experiments", json={"name": "x", "arms": [arm, {**arm, "name": "b"}]},
                               headers=keys["read"]), 403)
    assert_problem(client.get("/v1/experiments/nope", headers=keys["read"]), 404)
    assert_problem(client.post("/v1/experiments/nope/stop", headers=keys["admin"]), 404)
