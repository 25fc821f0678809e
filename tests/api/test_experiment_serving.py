"""Serving during an experiment: each allowed player is ranked by the version of the arm the hash
gives, every list (request and long-session trigger) logs experiment and arm next to its version,
and protection, market and exclusions are those of every other list.

The casino is tests/api/conftest.py's: under the active version the neighbours of ``s10`` are
``s9``/``s11``. The candidate version puts slot ``s{j+1}`` at position ``3j mod 20`` of the circle,
so there the neighbours of ``s10`` (position 7) are ``s3`` (6) and ``s17`` (8).
"""

import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from recsys.db import experiments as store
from recsys.experiments import assign
from tests.api.conftest import circle, write_version
from tests.api.test_events import heartbeats, post

NEIGHBOURS = {"control": {"s9", "s11"}, "candidate": {"s3", "s17"}}


@pytest.fixture
def experiment(client, keys, world, db):
    permuted = circle()[(np.arange(20) * 3) % 20]
    candidate = write_version(db, world.players, world.slots, seed=5, similarity=permuted, activate=False)
    body = {"name": "circle", "arms": [{"name": "control", "version": world.version, "weight": 50},
                                       {"name": "candidate", "version": candidate, "weight": 50}]}
    assert client.post("/v1/experiments", json=body, headers=keys["admin"]).status_code == 201
    running = store.running(db)
    arms = {pid: assign(running, pid) for pid in world.players}
    assert {a.name for a in arms.values()} == {"control", "candidate"}  # both arms have players
    return running, arms, candidate


def logged(db, recommendation_id):
    with db.connect() as conn:
        return conn.execute(sa.text("SELECT version_id, experiment_id, arm, suppressed_reason, filters "
                                    "FROM recommendations WHERE id = :id"), {"id": uuid.UUID(recommendation_id)}).one()


def test_each_player_is_ranked_by_the_version_of_their_arm(client, keys, db, experiment):
    running, arms, _ = experiment
    filters = {}
    for player_id, arm in arms.items():
        served = client.get(f"/v1/players/{player_id}/recommendations?k=2&context_slot=s10", headers=keys["read"])
        assert served.status_code == 200, served.text
        body = served.json()
        assert body["model_version"] == arm.version_id
        assert {item["slot_id"] for item in body["items"]} == NEIGHBOURS[arm.name], player_id
        row = logged(db, body["recommendation_id"])
        assert (row.version_id, row.experiment_id, row.arm) == (arm.version_id, running.id, arm.name)
        filters[arm.name] = {k: v for k, v in row.filters.items() if k not in ("personalised", "explored")}
    assert filters["control"] == filters["candidate"]  # the same rules in every arm


def test_a_player_the_gate_stops_is_not_split(client, keys, db, experiment):
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE players SET self_excluded_until = now() + interval '1 day' "
                             "WHERE player_id = 'p1'"))
    body = client.get("/v1/players/p1/recommendations", headers=keys["read"]).json()
    assert body["items"] == [] and body["suppressed"] == {"reason": "self_excluded"}
    row = logged(db, body["recommendation_id"])
    assert (row.experiment_id, row.arm, row.suppressed_reason) == (None, None, "self_excluded")


def test_a_triggered_list_carries_the_players_arm(client, keys, db, experiment):
    running, arms, _ = experiment
    answer = post(client, keys, heartbeats("long", range(0, 62), player="p2"))
    assert answer.status_code == 200, answer.text
    (triggered,) = answer.json()["recommendations"]
    row = logged(db, triggered["recommendation_id"])
    assert (row.version_id, row.experiment_id, row.arm) == (arms["p2"].version_id, running.id, arms["p2"].name)
    assert triggered["model_version"] == arms["p2"].version_id


def test_a_popularity_arm_and_stopping_the_experiment(client, keys, db, world, experiment):
    client.post("/v1/experiments/circle/stop", headers=keys["admin"])
    body = client.get("/v1/players/p2/recommendations?k=2&context_slot=s10", headers=keys["read"]).json()
    assert body["model_version"] == world.version and logged(db, body["recommendation_id"]).arm is None
    assert client.post("/v1/experiments", headers=keys["admin"], json={"name": "pop", "arms": [
        {"name": "model", "version": world.version, "weight": 1},
        {"name": "popular", "version": "popularity", "weight": 1_000_000}]}).status_code == 201
    body = client.get("/v1/players/p2/recommendations?k=2", headers=keys["read"]).json()
    row = logged(db, body["recommendation_id"])
    assert (body["model_version"], row.version_id, row.arm) == (None, None, "popular")
    assert {item["reason"] for item in body["items"]} == {"popular"}
