"""Validation before SQL: control characters, numbers beyond the columns, one strict decoder, and
the 400/422 rule (docs/api.md). Issue 10 found 19 inputs that answered 500; each is here."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.api.conftest import assert_problem, count

NOW = datetime.now(UTC) - timedelta(minutes=30)


def event(i: int = 0, **change) -> dict:
    return {"event_id": f"e{i}", "type": "spin", "session_id": "sess", "player_id": "p1", "slot_id": "s1",
            "ts": (NOW + timedelta(seconds=i)).isoformat(), "bet": 1.0, "win": 0.0, **change}


@pytest.mark.parametrize(("method", "path", "field"), [
    ("GET", "/v1/players/p%001/recommendations", "player_id"),
    ("GET", "/v1/players/p1%0Aforged/recommendations", "player_id"),
    ("GET", "/v1/slots/s%001/similar", "slot_id"),
    ("GET", "/v1/players/p1/recommendations?market=G%00B", "market"),
    ("GET", "/v1/players/p1/recommendations?context_slot=s%001", "context_slot"),
    ("GET", "/v1/slots/s1/similar?market=G%00B", "market"),
    ("PUT", "/v1/players/p%001", "player_id"),
    ("PUT", "/v1/slots/s%001", "slot_id"),
])
def test_control_characters_in_paths_and_queries_are_422(client, keys, method, path, field):
    headers = keys["admin"]
    response = client.request(method, path, headers=headers, content=b"{}" if method == "PUT" else None)
    problem = assert_problem(response, 422)
    assert problem["field"] == field, problem


@pytest.mark.parametrize(("change", "field"), [
    ({"event_id": "e\x00"}, "event_id"),
    ({"session_id": "s\x00"}, "session_id"),
    ({"player_id": "p1\x00"}, "player_id"),
    ({"slot_id": "s1\n"}, "slot_id"),
    ({"session_id": "   "}, "session_id"),  # blank, as the import and the OpenAPI document refuse it
    ({"bet": 1e10}, "bet"),
    ({"win": 9_999_999_999.999}, "win"),  # rounds to 10^10 cents-wise
])
def test_bad_event_values_are_422_before_sql(client, keys, world, db, change, field):
    events = [event(0), event(1, **change)]
    problem = assert_problem(client.post("/v1/events", json={"events": events}, headers=keys["ingest"]), 422)
    assert (problem["index"], problem["field"]) == (1, field), problem
    assert count(db, "play_events") == 0


def test_a_session_whose_summed_bets_overflow_is_422(client, keys, world, db):
    events = [event(i, bet=9e9) for i in range(120)]  # 1.08e12 in one session
    problem = assert_problem(client.post("/v1/events", json={"events": events}, headers=keys["ingest"]), 422)
    assert (problem["index"], problem["field"]) == (111, "bet"), problem
    assert count(db, "play_events") == 0


@pytest.mark.parametrize(("path", "body", "index", "field"), [
    ("/v1/players/p1", b'{"self_excluded_until": 0}', None, "self_excluded_until"),  # was 1970
    ("/v1/players/p1", b'{"marketing_consent": 1}', None, "marketing_consent"),  # was true
    ("/v1/players", b'[{"player_id": "a"}, {"player_id": "b", "risk_flag": "yes"}]', 1, "risk_flag"),
    ("/v1/players", b'[{"player_id": "a"}, {"player_id": "b\\u0000"}]', 1, "player_id"),
    ("/v1/players", b'[{"player_id": "a", "market": "G\\u0000B"}]', 0, "market"),
    ("/v1/slots", b'[{"slot_id": "x", "name": "N\\u0000", "provider": "p", "theme": "t", "volatility": "low",'
                  b' "rtp": 96, "min_bet": 0.1, "max_bet": 1}]', 0, "name"),
    ("/v1/slots/s1", b'{"max_bet": 1e10}', None, "max_bet"),
    ("/v1/slots/s1", b'{"rtp": "96"}', None, "rtp"),
])
def test_put_decodes_strictly_and_names_the_index(client, keys, world, db, path, body, index, field):
    problem = assert_problem(client.put(path, content=body, headers=keys["ingest"]), 422)
    assert problem["field"] == field, problem
    assert problem.get("index") == index and "row" not in problem, problem


@pytest.mark.parametrize("path", ["/v1/players/p1", "/v1/players", "/v1/slots", "/v1/events", "/v1/feedback"])
def test_a_body_that_is_not_json_is_400(client, keys, path):
    method = "POST" if path in ("/v1/events", "/v1/feedback") else "PUT"
    assert_problem(client.request(method, path, content=b"{not json", headers=keys["ingest"]), 400)
    assert_problem(client.request(method, path, content=b"\xff\xfe", headers=keys["ingest"]), 400)


def test_a_player_is_only_shown_slots_of_their_own_market(client, keys, world, db):
    for slot in ("s9", "s11"):
        assert client.put(f"/v1/slots/{slot}", json={"markets": ["SE"]}, headers=keys["ingest"]).status_code == 200
    response = client.get("/v1/players/p1/recommendations?context_slot=s10&k=5&market=SE", headers=keys["read"])
    assert response.status_code == 200
    shown = [item["slot_id"] for item in response.json()["items"]]
    assert len(shown) == 5 and not {"s9", "s11"} & set(shown), shown  # p1 plays in GB


def test_one_event_id_for_two_events_is_422_and_leaves_no_phantom_session(client, keys, world, db):
    events = [event(0, session_id="a"), event(0, session_id="b")]  # issue 10: 200, and an empty session "b"
    problem = assert_problem(client.post("/v1/events", json={"events": events}, headers=keys["ingest"]), 422)
    assert (problem["index"], problem["field"]) == (1, "event_id")
    assert count(db, "play_sessions") == count(db, "play_events") == 0
    retried = [event(0), event(0)]  # the same event twice (a retry inside a batch) is fine
    assert client.post("/v1/events", json={"events": retried}, headers=keys["ingest"]).json()["accepted"] == 1


DEEP = 5_000
"""Levels of nesting in the bodies below: past Python's recursion limit (issue 22: ``RecursionError``, 500)."""


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/events", b'{"events": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
    ("POST", "/v1/events", b"[" * DEEP + b"]" * DEEP),
    ("PUT", "/v1/players", b"[" * DEEP + b"]" * DEEP),
    ("PUT", "/v1/players/p1", b'{"market": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
    ("POST", "/v1/experiments", b'{"name": "x", "arms": ' + b'[{"a": ' * DEEP + b"1" + b"}]" * DEEP + b"}"),
    ("POST", "/v1/feedback", b"[" * DEEP + b"]" * DEEP),
    ("POST", "/v1/feedback", b'{"feedback": [' + b'{"x": ' * DEEP + b"1" + b"}" * DEEP + b"]}"),
])
def test_a_body_nested_deeper_than_the_limit_is_400(client, keys, world, db, method, path, body):
    problem = assert_problem(client.request(method, path, content=body, headers=keys["admin"]), 400)
    assert "nested deeper than 32" in problem["detail"], problem
    assert count(db, "play_events") == 0


@pytest.mark.parametrize(("extra", "status"), [(0, 422), (1, 400)])
def test_a_body_nested_to_the_limit_is_read_and_one_level_more_is_not(client, keys, world, extra, status):
    from api.bodies import MAX_DEPTH

    # The batch object, its list and an event (3 levels) whose ``bet`` is a list nested to the limit.
    levels = MAX_DEPTH - 3 + extra
    body = '{"events": [{"bet": ' + "[" * levels + "]" * levels + "}]}"
    problem = assert_problem(client.post("/v1/events", content=body.encode(), headers=keys["ingest"]), status)
    if status == 422:
        assert problem["field"] == "bet", problem
    else:
        assert f"nested deeper than {MAX_DEPTH}" in problem["detail"], problem


@pytest.mark.parametrize("ts", ["2026-03-01T12:00:00+16:00", "2026-03-01T12:00:00-23:59"])
def test_a_time_zone_offset_postgresql_cannot_store_is_422(client, keys, world, db, ts):
    problem = assert_problem(client.post("/v1/events", json={"events": [event(0), event(1, ts=ts)]},
                                         headers=keys["ingest"]), 422)
    assert (problem["index"], problem["field"]) == (1, "ts"), problem
    assert "15:59" in problem["detail"], problem
    assert count(db, "play_events") == 0


def test_the_largest_offsets_postgresql_stores_are_accepted(client, keys, world, db):
    at = NOW.replace(microsecond=0)
    events = [event(0, ts=at.astimezone(timezone(timedelta(hours=15, minutes=59))).isoformat()),
              event(1, ts=(at + timedelta(seconds=1)).astimezone(timezone(-timedelta(hours=15, minutes=59)))
                    .isoformat())]
    answer = client.post("/v1/events", json={"events": events}, headers=keys["ingest"])
    assert answer.status_code == 200, answer.text
    assert count(db, "play_events") == 2
