"""POST /v1/feedback over HTTP: idempotent, validated whole, and attributing play to recommendations.

The hand-built example: p1 is served a list around ``s10``; a click on one of its slots at ``T1``
and a session on that slot starting ten minutes later make one attributed play; sessions on it
starting before the click or after the window (30 minutes) make none; and feedback that arrives
after its session attributes that session too.
"""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from recsys.db.catalogue import load_counts
from recsys.serving.catalogue import SlotStats
from tests.api.conftest import assert_problem, count
from tests.api.test_events import heartbeats, post

T1 = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)


@pytest.fixture
def served(client, keys, world):
    """A logged list for p1 around s10: ``(recommendation_id, [slot_id, ...])``."""
    body = client.get("/v1/players/p1/recommendations", params={"k": 5, "context_slot": "s10"},
                      headers=keys["read"]).json()
    return body["recommendation_id"], [i["slot_id"] for i in body["items"]]


def feedback(client, keys, body, scope: str = "ingest"):
    return client.post("/v1/feedback", json=body, headers=keys[scope])


def attribution(engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT session_id, recommendation_id FROM play_sessions")).all()
    return {r.session_id: None if r.recommendation_id is None else str(r.recommendation_id) for r in rows}


def test_a_session_started_after_a_click_is_attributed_from_either_side(client, keys, served, db):
    rec, slots = served
    clicked, shown = slots[0], slots[1]
    answer = feedback(client, keys, {"feedback": [
        {"recommendation_id": rec, "slot_id": clicked, "action": "impression", "ts": T1.isoformat()},
        {"recommendation_id": rec, "slot_id": shown, "action": "impression", "ts": T1.isoformat()},
        {"recommendation_id": rec, "slot_id": clicked, "action": "click", "ts": T1.isoformat()},
    ]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 3, "duplicates": 0, "attributed_sessions": 0}

    after = T1 + timedelta(minutes=10)
    post(client, keys, heartbeats("followed", range(0, 5), slot=clicked, start=after))
    post(client, keys, heartbeats("too-late", range(0, 5), slot=clicked, start=T1 + timedelta(minutes=31),
                                  prefix="late"))
    post(client, keys, heartbeats("before", range(0, 5), slot=clicked, start=T1 - timedelta(minutes=1),
                                  prefix="early"))
    assert attribution(db) == {"followed": rec, "too-late": None, "before": None}

    # The other order: the session is known first, the feedback on its slot arrives later.
    post(client, keys, heartbeats("impressed", range(0, 5), slot=slots[2], start=after))
    assert attribution(db)["impressed"] is None
    late = feedback(client, keys, {"recommendation_id": rec, "slot_id": slots[2], "action": "play",
                                   "ts": (after - timedelta(minutes=1)).isoformat()})
    assert late.json() == {"accepted": 1, "duplicates": 0, "attributed_sessions": 1}
    assert attribution(db)["impressed"] == rec


def test_feedback_is_idempotent_and_feeds_the_exploration_counts(client, keys, served, db, world):
    rec, slots = served
    one = {"recommendation_id": rec, "slot_id": slots[2], "action": "click"}  # a single object is a batch of one
    assert feedback(client, keys, one).json() == {"accepted": 1, "duplicates": 0, "attributed_sessions": 0}
    assert feedback(client, keys, one).json() == {"accepted": 0, "duplicates": 1, "attributed_sessions": 0}
    feedback(client, keys, {"feedback": [{**one, "action": "impression"}, {**one, "action": "play"},
                                         {**one, "slot_id": slots[3], "action": "impression"}]})
    assert count(db, "feedback") == 4
    stats = SlotStats.from_counts(load_counts(db, 30))  # what the serving API's Thompson sampling reads
    key, other = world.slots[slots[2]], world.slots[slots[3]]
    assert (stats.impressions[key], stats.successes[key]) == (1, 1)  # click + play of one list: one success
    assert (stats.impressions[other], stats.successes[other]) == (1, 0)


@pytest.mark.parametrize(("change", "row", "field"), [
    ({"recommendation_id": str(uuid.UUID(int=7))}, 1, "recommendation_id"),  # unknown
    ({"recommendation_id": "not-a-uuid"}, 1, "recommendation_id"),
    ({"slot_id": "s10"}, 1, "slot_id"),  # the context, never in its own list
    ({"action": "like"}, 1, "action"),
    ({"ts": "2026-03-01T18:00:00"}, 1, "ts"),  # no time zone
    ({"ts": 5}, 1, "ts"),
    ({"ts": "2026-03-01T18:00:00+16:00"}, 1, "ts"),  # an offset PostgreSQL cannot store (issue 22: 500)
    ({"ts": "0001-01-01T00:00:00Z"}, 1, "ts"),  # outside the accepted times (issue 22: stored)
    ({"ts": "9999-12-31T23:59:59Z"}, 1, "ts"),
    ({"stars": 5}, 1, "stars"),
])
def test_one_bad_item_rejects_the_batch_naming_it(client, keys, served, db, change, row, field):
    rec, slots = served
    items = [{"recommendation_id": rec, "slot_id": slot, "action": "impression"} for slot in slots[:3]]
    items[row] = {**items[row], **change}
    problem = assert_problem(feedback(client, keys, {"feedback": items}), 422)
    assert (problem["index"], problem["field"]) == (row, field), problem
    assert count(db, "feedback") == 0


def test_a_single_bad_object_is_row_zero_and_feedback_needs_the_ingest_scope(client, keys, served, db):
    rec, slots = served
    problem = assert_problem(feedback(client, keys, {"recommendation_id": rec, "action": "click"}), 422)
    assert (problem["index"], problem["field"]) == (0, "slot_id")
    good = {"recommendation_id": rec, "slot_id": slots[0], "action": "click"}
    assert_problem(feedback(client, keys, good, scope="read"), 403)
    assert_problem(client.post("/v1/feedback", json=good), 401)
    assert_problem(client.post("/v1/feedback", content=b"[", headers=keys["ingest"]), 400)
    assert count(db, "feedback") == 0
