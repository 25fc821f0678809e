"""Serving during an experiment: each allowed player is ranked by the version of the arm the hash
gives, every list (request and long-session trigger) logs experiment and arm next to its version,
and protection, market and exclusions are those of every other list.

The casino is tests/api/conftest.py's: under the active version the neighbours of ``s10`` are
``s9``/``s11``. The candidate version puts slot ``s{j+1}`` at position ``3j mod 20`` of the circle,
so there the neighbours of ``s10`` (position 7) are ``s3`` (6) and ``s17`` (8).
"""

import re
import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from recsys.db import experiments as store
from recsys.experiments import assign
from tests.api.conftest import circle, wait_until, write_version
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


def test_a_player_the_gate_stops_gets_nothing_and_the_list_names_their_arm(client, keys, db, experiment):
    running, arms, _ = experiment
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE players SET self_excluded_until = now() + interval '1 day' "
                             "WHERE player_id = 'p1'"))
    body = client.get("/v1/players/p1/recommendations", headers=keys["read"]).json()
    assert body["items"] == [] and body["suppressed"] == {"reason": "self_excluded"}
    row = logged(db, body["recommendation_id"])  # the arm's share of gated lists is a guardrail
    assert (row.experiment_id, row.arm, row.suppressed_reason) == (running.id, arms["p1"].name, "self_excluded")


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


# --- arms that never flip (issue 20, part 2) --------------------------------------------------------


def served_versions(client, keys, players, rounds: int = 2) -> dict[str, set]:
    """Each player's model versions over ``rounds`` requests around ``s10``."""
    seen: dict[str, set] = {}
    for _ in range(rounds):
        for player_id in players:
            body = client.get(f"/v1/players/{player_id}/recommendations?k=2&context_slot=s10",
                              headers=keys["read"]).json()
            seen.setdefault(player_id, set()).add(body["model_version"])
    return seen


@pytest.fixture
def slow_candidate(monkeypatch):
    """Processes started from now on cannot load the candidate version (as while it still loads)."""
    from recsys.serving import state

    real = state.ServingState._load
    blocked: set[int] = set()

    def load(self, version_id, catalogue):
        if version_id in blocked:
            raise state.versions.VersionError(version_id, "still loading (test)")
        return real(self, version_id, catalogue)

    monkeypatch.setattr(state.ServingState, "_load", load)
    return blocked


def test_a_player_keeps_their_arm_across_requests_processes_and_a_restart(
        client, keys, db, experiment, make_client, slow_candidate):
    running, arms, candidate = experiment
    expected = {pid: {arm.version_id} for pid, arm in arms.items()}
    assert served_versions(client, keys, arms) == expected

    slow_candidate.add(candidate)  # a second process, and a restart, whose candidate index is not in memory
    second = make_client(ready=False)
    assert wait_until(lambda: second.app.state.serving.snapshot.model is not None)  # the active one loads
    ready = second.get("/readyz")
    assert ready.status_code == 503
    assert f"version(s) {candidate}" in ready.json()["detail"] and "pgvector" in ready.json()["detail"]
    assert served_versions(second, keys, arms) == expected  # the arm's version, through pgvector
    for pid, arm in arms.items():  # and the arm's list: the candidate's neighbours of s10
        body = second.get(f"/v1/players/{pid}/recommendations?k=2&context_slot=s10", headers=keys["read"]).json()
        assert {item["slot_id"] for item in body["items"]} == NEIGHBOURS[arm.name], pid

    client.__exit__(None, None, None)  # the first process stops; a new one starts during the experiment
    restarted = make_client(ready=False)
    assert served_versions(restarted, keys, arms) == expected
    slow_candidate.clear()
    restarted.app.state.serving.load_experiment()  # the candidate's index arrives
    assert restarted.get("/readyz").status_code == 200
    assert served_versions(restarted, keys, arms) == expected

    with db.connect() as conn:  # every list since the start names the experiment
        outside = conn.execute(sa.text("SELECT count(*) FROM recommendations WHERE created_at >= :at "
                                       "AND experiment_id IS DISTINCT FROM :id"),
                               {"at": running.started_at, "id": running.id}).scalar_one()
    assert outside == 0


def test_readyz_waits_for_the_experiments_versions(client, keys, db, world, experiment, make_client,
                                                  slow_candidate):
    running, arms, candidate = experiment
    assert client.get("/readyz").json()["detail"] == (
        f"serving model version {world.version}, experiment 'circle'")
    slow_candidate.add(candidate)
    client.post("/v1/experiments/circle/stop", headers=keys["admin"])
    body = {"name": "again", "arms": [{"name": "control", "version": world.version, "weight": 50},
                                      {"name": "candidate", "version": candidate, "weight": 50}]}
    assert client.post("/v1/experiments", json=body, headers=keys["admin"]).status_code == 201
    assert client.get("/readyz").status_code == 503  # the candidate left memory with the first experiment
    slow_candidate.clear()
    client.app.state.serving.load_experiment()
    assert client.get("/readyz").status_code == 200


# --- strategy arms (issue 20, part 4) ---------------------------------------------------------------


def db_player(conn, player_id: str) -> int:
    return conn.execute(sa.text("SELECT id FROM players WHERE player_id = :p"), {"p": player_id}).scalar_one()


def add_interactions(db, world, pairs_by_player: dict[str, list[str]], day) -> None:
    """Consolidated interactions (what training reads) of new players, one day each pair."""
    from recsys.db.consolidation import ensure_partitions
    from tests.factories import add_player

    with db.begin() as conn:
        ensure_partitions(conn, day, day)
        for player_id, slots in pairs_by_player.items():
            key = add_player(conn, player_id)
            for slot in slots:
                conn.execute(sa.text(
                    "INSERT INTO interactions (player_key, slot_key, day, sessions, bonus_sessions, seconds, spins, "
                    "total_bet, total_win, score, normalized_score) VALUES (:p, :s, :d, 1, 0, 60, 10, 1, 1, 1, 1)"),
                    {"p": key, "s": world.slots[slot], "d": day})


def test_popularity_and_itemknn_arms_end_to_end(client, keys, db, world, monkeypatch, database_url, tmp_path,
                                                capsys):
    """Start (the CLI), serve, log, report (CLI and API), dashboard: a popularity control and an
    item-kNN arm whose neighbours of s10 are the slots played with it (s15, then s4), not the
    model's s9/s11."""
    from datetime import UTC, date, datetime

    from recsys.cli import main
    from tests.api.test_dashboard import sign_in
    from tests.factories import add_session

    fans = {f"fan{i}": ["s10", "s15"] for i in range(6)} | {f"mix{i}": ["s10", "s4"] for i in range(3)}
    add_interactions(db, world, fans | {"solo": ["s2"]}, date(2026, 11, 30))
    with db.begin() as conn:  # popularity: s20 most played, then s19 (by players no arm serves)
        for n, slot in enumerate(("s20", "s20", "s19")):
            add_session(conn, f"pop{n}", db_player(conn, f"fan{n}"), world.slots[slot], datetime.now(UTC), 60)
    client.app.state.serving.refresh_stats()

    monkeypatch.setenv("RECSYS_DATABASE_URL", database_url)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    assert main(["experiment", "start", "baselines", "--arm", "control=popularity:50",
                 "--arm", "knn=itemknn:50"]) == 0
    assert "knn=version itemknn" in capsys.readouterr().out
    running = store.running(db)
    assert [(a.name, a.version_id, a.strategy) for a in running.arms] == [
        ("control", None, "popularity"), ("knn", None, "itemknn")]
    serving = client.app.state.serving
    serving.load_experiment()  # this process now (the NOTIFY does it too, a moment later)
    assert client.get("/readyz").status_code == 200

    arms = {pid: assign(running, pid).name for pid in ("p1", "p2", "p3", "p4", "p5")}
    assert set(arms.values()) == {"control", "knn"}
    for player_id, arm in arms.items():
        body = client.get(f"/v1/players/{player_id}/recommendations?k=2&context_slot=s10",
                          headers=keys["read"]).json()
        slots = [item["slot_id"] for item in body["items"]]
        row = logged(db, body["recommendation_id"])
        assert (body["model_version"], row.version_id, row.experiment_id, row.arm) == (None, None, running.id, arm)
        assert row.filters["strategy"] == ("popularity" if arm == "control" else "itemknn")
        if arm == "control":
            assert [(item["slot_id"], item["reason"], item["score"]) for item in body["items"]] == [
                ("s20", "popular", 1.0), ("s19", "popular", 0.5)]
        else:
            assert slots == ["s15", "s4"] and row.filters["search"] == "itemknn", slots
            assert body["items"][0]["score"] > body["items"][1]["score"]
        assert {k: v for k, v in row.filters.items() if k not in ("strategy", "search", "candidate_source",
                                                                   "personalised", "explored")} == {
            "gate": "allowed", "k": 2, "market": "GB", "exclude_played": row.filters["exclude_played"],
            "exploration_share": 0.0, "provider_cap": 100, "blend_weight": 0.0}

    api = client.get("/v1/experiments/baselines", headers=keys["read"]).json()
    assert [(a["name"], a["version"], a["strategy"]) for a in api["arms"]] == [
        ("control", None, "popularity"), ("knn", None, "itemknn")]
    assert main(["experiment", "report", "baselines"]) == 0
    report = capsys.readouterr().out
    assert re.search(r"^control +popularity ", report, re.M) and re.search(r"^knn +itemknn ", report, re.M), report
    sign_in(client, keys["read"])
    page = client.get("/dashboard/experiments").text
    assert "<td>knn</td><td>itemknn</td>" in page and "<td>control</td><td>popularity</td>" in page
