"""The experiments endpoints: start, read, stop with promotion; errors are problem details."""

import uuid

import sqlalchemy as sa

from recsys.db import experiments as store
from recsys.db import versions
from recsys.experiments import assign
from tests.api.conftest import assert_problem, write_version
from tests.api.test_dashboard import sign_in


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


def test_arm_names_differing_only_in_case_and_refused_versions_need_care(client, keys, world, db):
    refused = write_version(db, world.players, world.slots, seed=6, activate=False)
    versions.set_metrics(db, refused, {"gate": {"passed": False, "reason": "HR@10 0.478 is below popularity's 0.489"}})

    def post(body, query=""):
        return client.post(f"/v1/experiments{query}", json=body, headers=keys["admin"])

    arm = {"name": "control", "version": world.version, "weight": 50}
    same = assert_problem(post({"name": "x", "arms": [arm, {**arm, "name": "Control"}]}), 422)
    assert same["field"] == "arms" and "case does not count" in same["detail"]
    body = {"name": "x", "arms": [arm, {"name": "candidate", "version": refused, "weight": 50}], "min_effect": 0.2}
    gate = assert_problem(post(body), 409)
    assert f"quality gate refused model version {refused}" in gate["detail"] and "force" in gate["detail"]
    assert assert_problem(post({**body, "min_effect": 0}), 422)["field"] == "min_effect"
    started = post(body, "?force=true")
    assert started.status_code == 201, started.text
    out = started.json()
    assert out["min_effect"] == 0.2
    candidate = out["arms"][1]
    assert candidate["sample"] == {"min_effect": 0.2, "players": 0, "players_needed": None, "reached": False}
    assert candidate["guardrail_flags"] == [] and set(candidate["results"]) == {
        "click_rate", "play_rate", "dismiss_rate", "minutes_per_click", "suppressed_share",
        "reality_checks_per_player", "long_play_share"}
    assert out["arms"][0]["sample"] is None


def test_promotion_refuses_an_arm_flagged_on_a_guardrail_unless_forced(client, keys, world, db):
    other = write_version(db, world.players, world.slots, seed=7, activate=False)
    body = {"name": "harm", "arms": [{"name": "control", "version": world.version, "weight": 50},
                                     {"name": "candidate", "version": other, "weight": 50}]}
    assert client.post("/v1/experiments", json=body, headers=keys["admin"]).status_code == 201
    experiment = store.get(db, "harm")
    with db.begin() as conn:  # every candidate player's list was suppressed; no control player's was
        for player_id, key in world.players.items():
            arm = assign(experiment, player_id).name
            conn.execute(sa.text(
                "INSERT INTO recommendations (id, player_key, trigger, experiment_id, arm, suppressed_reason) "
                "VALUES (:id, :p, 'api', :e, :arm, :s)"),
                {"id": uuid.uuid4(), "p": key, "e": experiment.id, "arm": arm,
                 "s": "cooling_off" if arm == "candidate" else None})
    candidate = client.get("/v1/experiments/harm", headers=keys["read"]).json()["arms"][1]
    assert candidate["results"]["suppressed_share"]["verdict"] == "worse"
    assert candidate["guardrail_flags"][0].startswith("candidate is worse than the control on a protection guardrail")
    csrf = sign_in(client, keys["admin"])
    page = client.get("/dashboard/experiments").text
    red = '<p class="error guardrail" role="alert" style="color: #b00020"><strong>Guardrail:</strong>'
    assert f"{red} candidate is worse" in page
    assert "guardrail: lists suppressed by protection / list" in page
    dashboard = client.post("/dashboard/experiments/harm/stop", data={"csrf": csrf, "promote": "candidate"})
    assert dashboard.status_code == 409 and "not promoting arm" in dashboard.text
    refused = assert_problem(client.post("/v1/experiments/harm/stop?promote=candidate", headers=keys["admin"]), 409)
    assert "not promoting arm 'candidate'" in refused["detail"]
    assert versions.active_version(db).id == world.version
    forced = client.post("/v1/experiments/harm/stop?promote=candidate&force=true", headers=keys["admin"])
    assert forced.status_code == 200 and versions.active_version(db).id == other
