"""POST /v1/events over HTTP: the long-session trigger fires once, gated, vetted, logged and announced.

The casino is tests/api/conftest.py's: twenty slots on a circle (the neighbours of ``s10`` are
``s9``/``s11``, then ``s8``/``s12`` ...), players ``p1``..``p5`` in market GB.
"""

import dataclasses
import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from recsys.db import push
from tests.api.conftest import assert_problem, count
from tests.factories import add_session

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # noon UTC: outside the night hours the tests set


def heartbeats(session_id: str, minutes, *, player: str = "p1", slot: str = "s10", prefix: str = "e",
               start: datetime = T0) -> list[dict]:
    """One event a minute (the first a ``start``): ``minutes`` = range of minutes after ``start``."""
    return [
        {"event_id": f"{prefix}-{session_id}-{m}", "type": "start" if m == 0 else "heartbeat",
         "session_id": session_id, "player_id": player, "slot_id": slot,
         "ts": (start + timedelta(minutes=m)).isoformat()}
        for m in minutes
    ]


def post(client, keys, events, scope: str = "ingest"):
    return client.post("/v1/events", json={"events": events}, headers=keys[scope])


class Announcements:
    """LISTEN on the push channel from the test, as another replica would."""

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.conn.execute(f"LISTEN {push.CHANNEL}")

    def heard(self, seconds: float = 0.3) -> list[str]:
        return [n.payload for n in self.conn.notifies(timeout=seconds)]

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def announcements(database_url):
    listener = Announcements(database_url)
    yield listener
    listener.close()


def logged(engine, recommendation_id):
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT r.trigger, r.suppressed_reason, r.action, cs.slot_id AS context, ps.session_id, "
                    "r.filters FROM recommendations r JOIN slots cs ON cs.id = r.context_slot_key "
                    "JOIN play_sessions ps ON ps.id = r.session_key WHERE r.id = :id"),
            {"id": uuid.UUID(recommendation_id)},
        ).one()


def test_crossing_one_hour_under_concurrent_duplicate_heartbeats_triggers_once(
        client, keys, world, db, announcements):
    with db.begin() as conn:  # p1 played s9 and s12 before: never recommended again
        for slot in ("s9", "s12"):
            add_session(conn, f"old-{slot}", world.players["p1"], world.slots[slot], T0 - timedelta(days=3), 600)
    first = post(client, keys, heartbeats("live", range(0, 59)))
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 59, "duplicates": 0, "recommendations": []}

    crossing = heartbeats("live", range(59, 64))  # minute 60 crosses the hour, in event time
    answers, barrier = [], threading.Barrier(6)

    def send(i: int) -> None:
        extra = heartbeats("live", range(64, 66), prefix=f"t{i}") if i % 2 else []
        barrier.wait()
        answers.append(post(client, keys, crossing + extra))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers if a.status_code != 200]
    bodies = [a.json() for a in answers]
    assert sum(b["accepted"] for b in bodies) == 5 + 3 * 2
    triggered = [r for b in bodies for r in b["recommendations"]]
    assert len(triggered) == 1
    rec = triggered[0]
    assert (rec["player_id"], rec["session_id"], rec["context_slot"], rec["trigger"], rec["action"],
            rec["suppressed"], rec["model_version"]) == ("p1", "live", "s10", "session_threshold", None, None,
                                                         world.version)
    served = [i["slot_id"] for i in rec["items"]]
    assert len(served) == 10
    assert not {"s10", "s9", "s12"} & set(served)  # the slot being played and the played ones
    assert {"s11", "s8"} <= set(served)  # the nearest unplayed neighbours on the circle
    assert count(db, "recommendations") == 1
    head = logged(db, rec["recommendation_id"])
    assert (head.trigger, head.suppressed_reason, head.action, head.context, head.session_id) == (
        "session_threshold", None, None, "s10", "live")
    assert head.filters["gate"] == "allowed" and head.filters["continuous_seconds"] >= 3600
    heard = announcements.heard()
    assert len(heard) == 1 and rec["recommendation_id"] in heard[0]


def test_without_the_version_in_memory_a_worker_thread_makes_the_same_list(client, keys, world, db, announcements):
    # Before the first load (or while a version loads) the trigger's list comes from pgvector, on a
    # blocking connection from a worker thread (recsys.tracker.track): same answer, same log, pushed.
    expected = post(client, keys, heartbeats("memory", range(0, 61))).json()["recommendations"][0]
    serving = client.app.state.serving
    serving.snapshot = dataclasses.replace(serving.snapshot, model=None)
    [rec] = post(client, keys, heartbeats("thread", range(0, 61))).json()["recommendations"]
    assert (rec["player_id"], rec["session_id"], rec["context_slot"], rec["model_version"]) == (
        "p1", "thread", "s10", world.version)
    served = [i["slot_id"] for i in rec["items"]]
    assert "s10" not in served and {"s11", "s9"} <= set(served)  # the nearest neighbours on the circle
    assert len(served) == len(expected["items"]) == 10
    head = logged(db, rec["recommendation_id"])
    assert (head.trigger, head.session_id, head.filters["search"]) == ("session_threshold", "thread", "pgvector")
    assert logged(db, expected["recommendation_id"]).filters["search"] == "faiss"
    heard = announcements.heard()
    assert len(heard) == 2 and rec["recommendation_id"] in heard[1]


def test_a_retried_batch_changes_nothing_and_fires_nothing(client, keys, world, db):
    events = heartbeats("s", range(0, 61))
    assert len(post(client, keys, events).json()["recommendations"]) == 1
    again = post(client, keys, events).json()
    assert again == {"accepted": 0, "duplicates": 61, "recommendations": []}
    assert count(db, "recommendations") == 1


@pytest.mark.parametrize(("fields", "reason"), [
    ({"self_excluded_until": datetime(2999, 1, 1, tzinfo=UTC)}, "self_excluded"),
    ({"marketing_consent": False}, "no_consent"),
])
def test_the_gate_stops_the_triggered_list_and_nothing_is_announced(
        client, keys, world, db, announcements, fields, reason):
    with db.begin() as conn:
        sets = ", ".join(f"{k} = :{k}" for k in fields)
        conn.execute(sa.text(f"UPDATE players SET {sets} WHERE player_id = 'p2'"), fields)
    body = post(client, keys, heartbeats("s", range(0, 61), player="p2")).json()
    [rec] = body["recommendations"]
    assert (rec["items"], rec["suppressed"], rec["action"]) == ([], {"reason": reason}, None)
    head = logged(db, rec["recommendation_id"])
    assert (head.suppressed_reason, head.action, head.filters["gate"]) == (reason, None, reason)
    assert announcements.heard() == []


def test_past_the_maximum_session_length_a_reality_check_replaces_games(
        world, keys, db, make_client, announcements):
    client = make_client(session_max_seconds=5400.0)
    # Events may arrive late and in bulk: the trigger fires with whatever continuous play the batch makes.
    body = post(client, keys, heartbeats("s", range(0, 81))).json()
    assert body["recommendations"][0]["suppressed"] is None  # 80 minutes, under the 90-minute maximum: games
    late = post(client, keys, heartbeats("late", range(0, 91))).json()  # 90 minutes: the maximum
    [rec] = late["recommendations"]
    assert (rec["items"], rec["action"], rec["suppressed"]) == ([], "reality_check", {"reason": "session_limit"})
    head = logged(db, rec["recommendation_id"])
    assert (head.trigger, head.suppressed_reason, head.action) == ("session_threshold", "session_limit",
                                                                   "reality_check")
    heard = announcements.heard()
    assert len(heard) == 2 and rec["recommendation_id"] in heard[1]  # a reality check is shown: pushed


def test_in_the_night_hours_the_silent_policy_logs_and_announces_nothing(
        world, keys, db, make_client, announcements):
    client = make_client(night_hours="23-02", late_session_action="silent")
    night = T0.replace(hour=23, minute=30)  # the hour is crossed at 00:30 UTC, inside 23-02
    [rec] = post(client, keys, heartbeats("s", range(0, 61), start=night)).json()["recommendations"]
    assert (rec["items"], rec["action"], rec["suppressed"]) == ([], None, {"reason": "night_hours"})
    assert logged(db, rec["recommendation_id"]).suppressed_reason == "night_hours"
    assert announcements.heard() == []
    [day] = post(client, keys, heartbeats("day", range(0, 61))).json()["recommendations"]  # noon: games
    assert day["suppressed"] is None and len(day["items"]) == 10


@pytest.mark.parametrize(("change", "row", "field"), [
    ({"bet": "ten"}, 2, "bet"),
    ({"bet": -1.0}, 2, "bet"),
    ({"ts": "2026-03-01T12:00:00"}, 2, "ts"),  # no time zone
    ({"ts": "yesterday"}, 2, "ts"),
    ({"type": "jump"}, 2, "type"),
    ({"player_id": "nobody"}, 2, "player_id"),
    ({"slot_id": "nothing"}, 2, "slot_id"),
    ({"colour": "red"}, 2, "colour"),
    ({"event_id": None}, 2, "event_id"),
])
def test_one_bad_event_rejects_the_batch_naming_it(client, keys, world, db, change, row, field):
    events = heartbeats("s", range(0, 5))
    events[row] = {**events[row], **change}
    problem = assert_problem(post(client, keys, events), 422)
    assert (problem["index"], problem["field"]) == (row, field), problem
    assert count(db, "play_events") == count(db, "play_sessions") == 0


@pytest.mark.parametrize("ts", [
    datetime(1, 1, 1, tzinfo=UTC),  # issue 10: accepted, then stopped the pipeline
    datetime(9999, 12, 31, tzinfo=UTC),
    datetime(2099, 1, 1, tzinfo=UTC),
    "now+10min",  # beyond the 5 minutes of clock skew allowed
])
def test_an_event_time_outside_the_bounds_is_a_422_naming_index_and_field(client, keys, world, db, ts):
    if ts == "now+10min":
        ts = datetime.now(UTC) + timedelta(minutes=10)
    events = heartbeats("s", range(0, 3))
    events[1]["ts"] = ts.isoformat()
    problem = assert_problem(post(client, keys, events), 422)
    assert (problem["index"], problem["field"]) == (1, "ts"), problem
    assert "outside the accepted event times" in problem["detail"]
    assert count(db, "play_events") == count(db, "play_sessions") == 0


def test_the_lookback_is_a_setting(world, keys, db, make_client):
    client = make_client(event_max_age_seconds=7 * 86400.0)
    recent = datetime.now(UTC) - timedelta(days=6)
    assert post(client, keys, heartbeats("new", range(0, 2), start=recent)).status_code == 200
    problem = assert_problem(post(client, keys, heartbeats("old", range(0, 2))), 422)  # T0: months ago
    assert (problem["index"], problem["field"]) == (0, "ts")


def test_a_missing_field_and_an_oversized_batch_are_rejected(client, keys, world, db):
    events = heartbeats("s", range(0, 3))
    del events[1]["session_id"]
    problem = assert_problem(post(client, keys, events), 422)
    assert (problem["index"], problem["field"]) == (1, "session_id")
    problem = assert_problem(post(client, keys, heartbeats("s", range(0, 1001))), 422)
    assert "at most 1,000" in problem["detail"]
    assert_problem(client.post("/v1/events", content=b"{not json", headers=keys["ingest"]), 400)
    assert count(db, "play_events") == 0


def test_events_need_the_ingest_scope(client, keys, world, db):
    assert_problem(post(client, keys, heartbeats("s", range(0, 2)), scope="read"), 403)
    assert_problem(client.post("/v1/events", json={"events": heartbeats("s", range(0, 2))}), 401)
    assert post(client, keys, heartbeats("s", range(0, 2)), scope="admin").status_code == 200
