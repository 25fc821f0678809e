import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from recsys.db import versions
from tests.api.conftest import assert_problem, count, wait_until, write_version
from tests.factories import add_session


def _recommend(client, keys, player="p1", **params):
    return client.get(f"/v1/players/{player}/recommendations", params=params, headers=keys["read"])


def _logged(engine, recommendation_id):
    with engine.connect() as conn:
        head = conn.execute(
            sa.text("SELECT player_key, version_id, trigger, context_slot_key, market, suppressed_reason, filters "
                    "FROM recommendations WHERE id = :id"),
            {"id": uuid.UUID(recommendation_id)},
        ).one()
        items = conn.execute(
            sa.text("SELECT i.rank, s.slot_id, i.score, i.reason, i.explored FROM recommendation_items i "
                    "JOIN slots s ON s.id = i.slot_key WHERE recommendation_id = :id ORDER BY rank"),
            {"id": uuid.UUID(recommendation_id)},
        ).all()
    return head, items


def test_a_list_around_the_context_slot_is_served_and_logged(client, keys, world, db):
    response = _recommend(client, keys, k=5, context_slot="s10")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"recommendation_id", "player_id", "model_version", "items", "suppressed"}
    assert (body["player_id"], body["model_version"], body["suppressed"]) == ("p1", world.version, None)
    assert len(body["items"]) == 5
    assert all(set(i) == {"slot_id", "score", "reason"} and i["reason"] == "similar" for i in body["items"])
    served = [i["slot_id"] for i in body["items"]]
    assert "s10" not in served
    assert set(served) <= {f"s{i}" for i in range(4, 17)}  # from the context's neighbourhood
    assert [i["score"] for i in body["items"]] == sorted((i["score"] for i in body["items"]), reverse=True)

    head, items = _logged(db, body["recommendation_id"])
    assert head.player_key == world.players["p1"] and head.version_id == world.version
    assert (head.trigger, head.context_slot_key, head.market, head.suppressed_reason) == (
        "api", world.slots["s10"], "GB", None)
    assert head.filters["gate"] == "allowed" and head.filters["candidate_source"] == "context"
    assert head.filters["search"] == "faiss" and head.filters["exclude_played"] == "ever"
    assert head.filters["personalised"] is True
    assert [(r.rank, r.slot_id, r.reason) for r in items] == [(n + 1, s, "similar") for n, s in enumerate(served)]
    assert [r.score for r in items] == pytest.approx([i["score"] for i in body["items"]], abs=1e-6)


def test_played_slots_are_excluded(client, keys, world, db):
    with db.begin() as conn:
        for slot in ("s9", "s11"):
            add_session(conn, f"session-{slot}", world.players["p1"], world.slots[slot],
                        datetime.now(UTC) - timedelta(days=40), 600)
    served = {i["slot_id"] for i in _recommend(client, keys, k=10, context_slot="s10").json()["items"]}
    assert not served & {"s9", "s11"}
    other_player = {i["slot_id"] for i in _recommend(client, keys, "p2", k=10, context_slot="s10").json()["items"]}
    assert {"s9", "s11"} <= other_player


def test_the_exclusion_window_can_be_days(world, keys, db, make_client):
    client = make_client(exclude_played="30")
    with db.begin() as conn:
        add_session(conn, "old", world.players["p1"], world.slots["s9"], datetime.now(UTC) - timedelta(days=40), 60)
        add_session(conn, "new", world.players["p1"], world.slots["s11"], datetime.now(UTC) - timedelta(days=2), 60)
    served = {i["slot_id"] for i in _recommend(client, keys, k=10, context_slot="s10").json()["items"]}
    assert "s9" in served and "s11" not in served


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"self_excluded_until": "2999-01-01T00:00:00Z"}, "self_excluded"),
        ({"cooling_off_until": "2999-01-01T00:00:00Z"}, "cooling_off"),
        ({"marketing_consent": False}, "no_consent"),
        ({"risk_flag": True}, "risk_flag"),
    ],
)
def test_protected_players_get_nothing_and_the_decision_is_logged(client, keys, db, fields, reason):
    assert _recommend(client, keys).json()["items"]  # allowed before the change
    assert client.put("/v1/players/p1", json=fields, headers=keys["ingest"]).json()["updated"] == 1
    response = _recommend(client, keys, context_slot="s3")
    assert response.status_code == 200
    body = response.json()
    assert body["items"] == [] and body["suppressed"] == {"reason": reason}
    head, items = _logged(db, body["recommendation_id"])
    assert head.suppressed_reason == reason and head.filters["gate"] == reason and items == []
    assert f'recsys_suppressions_total{{reason="{reason}"}} 1' in client.get("/metrics").text


def test_an_expired_exclusion_lets_the_player_back(client, keys):
    client.put("/v1/players/p1", json={"self_excluded_until": "2001-01-01T00:00:00Z"}, headers=keys["ingest"])
    assert _recommend(client, keys).json()["suppressed"] is None


def test_a_disabled_slot_never_appears(client, keys):
    before = {i["slot_id"] for i in _recommend(client, keys, k=6, context_slot="s10").json()["items"]}
    gone = sorted(before)[0]
    assert client.put(f"/v1/slots/{gone}", json={"active": False}, headers=keys["ingest"]).status_code == 200
    for player in ("p1", "p2", "p3"):
        for params in ({"context_slot": "s10"}, {}):
            served = {i["slot_id"] for i in _recommend(client, keys, player, k=19, **params).json()["items"]}
            assert gone not in served


def test_market_restricted_slots_follow_the_players_market(client, keys):
    client.put("/v1/slots/s11", json={"markets": ["SE"]}, headers=keys["ingest"])
    assert "s11" not in {i["slot_id"] for i in _recommend(client, keys, k=19, context_slot="s10").json()["items"]}
    client.put("/v1/players/p1", json={"market": "SE"}, headers=keys["ingest"])
    assert "s11" in {i["slot_id"] for i in _recommend(client, keys, k=19, context_slot="s10").json()["items"]}
    # A player without a market sees only slots offered everywhere (fail-closed)
    client.put("/v1/players/p1", json={"market": None}, headers=keys["ingest"])
    assert "s11" not in {i["slot_id"] for i in _recommend(client, keys, k=19, context_slot="s10").json()["items"]}


def test_a_player_new_since_training_gets_a_cold_start_list(client, keys, db):
    body = _recommend(client, keys, "p3", k=4).json()  # p3 has no vector in the version
    assert [i["reason"] for i in body["items"]] == ["cold_start"] * 4
    head, _ = _logged(db, body["recommendation_id"])
    assert head.filters["personalised"] is False and head.filters["candidate_source"] == "popular"


def test_a_new_player_who_played_gets_a_personal_list_from_the_played_items(world, keys, db, make_client):
    """With a version that builds players from their slots (user_history), p3 needs no stored vector."""
    version = write_version(db, world.players, world.slots, skip_players=("p3",), user_history=True)
    client = make_client()
    assert wait_until(lambda: client.get("/readyz").json().get("model_version") == version)
    body = _recommend(client, keys, "p3", k=4).json()
    assert [i["reason"] for i in body["items"]] == ["cold_start"] * 4  # no plays yet: nothing to build from
    with db.begin() as conn:
        add_session(conn, "first", world.players["p3"], world.slots["s5"], datetime.now(UTC), 60)
    body = _recommend(client, keys, "p3", k=4).json()
    assert "cold_start" not in {i["reason"] for i in body["items"]}
    assert _logged(db, body["recommendation_id"])[0].filters["personalised"] is True


def test_without_context_the_recent_slots_seed_the_list(client, keys, world, db):
    with db.begin() as conn:
        add_session(conn, "recent", world.players["p1"], world.slots["s15"], datetime.now(UTC), 60)
    body = _recommend(client, keys, k=4).json()
    assert {i["slot_id"] for i in body["items"]} <= {"s12", "s13", "s14", "s16", "s17", "s18"}
    assert _logged(db, body["recommendation_id"])[0].filters["candidate_source"] == "recent"


def test_the_precomputed_top_n_is_personal(client, keys, world, db):
    import numpy as np

    top = np.array([[world.slots["s20"] - 1, world.slots["s1"] - 1, world.slots["s7"] - 1]])
    slot_keys = np.array(list(world.slots.values()))
    versions.write_offline(db, world.version, np.array([world.players["p2"]]), slot_keys, top,
                           np.array([[3.0, 2.0, 1.0]], dtype=np.float32))
    body = _recommend(client, keys, "p2", k=3).json()
    assert {i["slot_id"] for i in body["items"]} == {"s20", "s1", "s7"}
    assert {i["reason"] for i in body["items"]} == {"personal"}


def test_exploration_takes_its_share(world, keys, db, make_client):
    client = make_client(exploration_share=0.2)
    body = _recommend(client, keys, k=10, context_slot="s10").json()
    reasons = [i["reason"] for i in body["items"]]
    assert len(reasons) == 10 and reasons.count("explore") == 2
    _, items = _logged(db, body["recommendation_id"])
    assert [r.explored for r in items] == [r == "explore" for r in reasons]


def test_with_no_active_version_lists_fall_back_to_popularity(db, keys, make_client):
    from tests.factories import add_player, add_slot

    with db.begin() as conn:
        player = add_player(conn, "solo", market="GB")
        slots = [add_slot(conn, f"x{i}") for i in range(4)]
        for n, slot in enumerate(slots[:3]):
            for p in range(3 - n):
                other = add_player(conn, f"fan-{n}-{p}")
                add_session(conn, f"fan-{n}-{p}", other, slot, datetime.now(UTC), 60)
    client = make_client(ready=False)
    assert client.get("/readyz").status_code == 503
    body = _recommend(client, keys, "solo", k=3).json()
    assert body["model_version"] is None
    assert [(i["slot_id"], i["reason"]) for i in body["items"]] == [("x0", "popular"), ("x1", "popular"),
                                                                    ("x2", "popular")]
    assert _logged(db, body["recommendation_id"])[0].player_key == player


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/players/nobody/recommendations", 404),
        ("/v1/players/p1/recommendations?context_slot=nothing", 404),
        ("/v1/players/p1/recommendations?k=0", 400),
        ("/v1/players/p1/recommendations?k=101", 400),
        ("/v1/players/p1/recommendations?k=1.5", 400),
        ("/v1/players/p1/recommendations?market=" + "X" * 40, 400),
    ],
)
def test_bad_requests_are_problem_details_and_write_nothing(client, keys, db, path, status):
    body = assert_problem(client.get(path, headers=keys["read"]), status)
    assert body["detail"]
    assert count(db, "recommendations") == 0


def test_popular_items_score_their_popularity_and_readyz_says_why_it_is_503(db, keys, make_client):
    """An imported history older than the popularity window still ranks and scores by popularity
    (it gave 0.0, by key, before); with no active version /readyz explains its 503."""
    from tests.factories import add_player, add_slot

    long_ago = datetime.now(UTC) - timedelta(days=90)
    with db.begin() as conn:
        add_player(conn, "solo", market="GB")
        slots = [add_slot(conn, f"x{i}") for i in range(4)]
        for n, slot in enumerate(slots[1:]):  # x1: 1 player, x2: 2, x3: 3
            for p in range(n + 1):
                other = add_player(conn, f"fan-{n}-{p}")
                add_session(conn, f"fan-{n}-{p}", other, slot, long_ago + timedelta(days=p), 60)
    client = make_client(ready=False)
    assert wait_until(lambda: client.app.state.serving.snapshot.stats.players.any())  # counted off the request path
    body = _recommend(client, keys, "solo", k=3).json()
    assert [(i["slot_id"], i["reason"], i["score"]) for i in body["items"]] == [
        ("x3", "popular", 1.0), ("x2", "popular", pytest.approx(2 / 3, abs=1e-6)),
        ("x1", "popular", pytest.approx(1 / 3, abs=1e-6))]
    why = "no active version: serving popularity lists (activate a version to serve the model's)"
    assert wait_until(lambda: client.get("/readyz").json()["detail"] == why)  # once the database said so
    assert client.get("/readyz").status_code == 503
