import pytest
import sqlalchemy as sa

from tests.api.conftest import assert_problem, count


def _player(engine, player_id):
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT market, marketing_consent, risk_flag, self_excluded_until FROM players "
                    "WHERE player_id = :p"), {"p": player_id}
        ).one_or_none()


def _slot(engine, slot_id):
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT name, provider, rtp, active, markets FROM slots WHERE slot_id = :s"), {"s": slot_id}
        ).one_or_none()


def test_put_creates_a_player_and_later_puts_change_only_what_they_carry(client, keys, db):
    response = client.put("/v1/players/newbie", json={"market": "SE", "marketing_consent": True},
                          headers=keys["ingest"])
    assert response.status_code == 200 and response.json() == {"inserted": 1, "updated": 0, "unchanged": 0}
    assert client.put("/v1/players/newbie", json={"risk_flag": True}, headers=keys["ingest"]).json()["updated"] == 1
    stored = _player(db, "newbie")
    assert (stored.market, stored.marketing_consent, stored.risk_flag) == ("SE", True, True)
    again = client.put("/v1/players/newbie", json={"risk_flag": True}, headers=keys["ingest"]).json()
    assert again == {"inserted": 0, "updated": 0, "unchanged": 1}


def test_a_batch_of_partial_records_keeps_what_each_leaves_out(client, keys, db):
    batch = [{"player_id": "p1", "market": "NL"}, {"player_id": "p2", "risk_flag": True},
             {"player_id": "fresh", "marketing_consent": True}]
    result = client.put("/v1/players", json=batch, headers=keys["ingest"]).json()
    assert result == {"inserted": 1, "updated": 2, "unchanged": 0}
    assert _player(db, "p1")[:3] == ("NL", True, False)
    assert _player(db, "p2")[:3] == ("GB", True, True)  # market kept, though p1's record had one
    assert _player(db, "fresh")[:3] == (None, True, False)


def test_a_new_slot_needs_its_required_fields_and_a_partial_put_updates(client, keys, db):
    assert_problem(client.put("/v1/slots/half", json={"name": "Half"}, headers=keys["ingest"]), 422)
    assert _slot(db, "half") is None
    assert client.put("/v1/slots/s1", json={"rtp": 94.5}, headers=keys["ingest"]).json()["updated"] == 1
    stored = _slot(db, "s1")
    assert (stored.name, stored.provider, float(stored.rtp), stored.active) == ("S1", "p0", 94.5, True)


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/slots/s1", b"{not json", 400, None),
        ("/v1/slots/s1", b"[1, 2]", 422, None),  # decodes, but is no record: 422 (docs/api.md)
        ("/v1/slots/s1", b'{"rtp": "high"}', 422, "rtp"),
        ("/v1/slots/s1", b'{"rtp": 150}', 422, "rtp"),
        ("/v1/slots/s1", b'{"volatility": "extreme"}', 422, "volatility"),
        ("/v1/slots/s1", b'{"min_bet": 500}', 422, "max_bet"),
        ("/v1/slots/s1", b'{"colour": "red"}', 422, "colour"),
        ("/v1/slots/s1", b'{"slot_id": "s2"}', 422, "slot_id"),  # the id is the path's
        ("/v1/slots/s1", b'{"markets": ["GB", "no spaces"]}', 422, "markets"),
        ("/v1/players/p1", b'{"self_excluded_until": "2030-01-01T00:00:00"}', 422, "self_excluded_until"),
        ("/v1/players/p1", b'{"marketing_consent": "maybe"}', 422, "marketing_consent"),
        ("/v1/players/p1", b'{"market": "G B"}', 422, "market"),
        ("/v1/players", b'[{"player_id": "a"}, {"player_id": "b", "market": "??"}]', 422, "market"),
        ("/v1/players", b'[{"player_id": "a"}, {"player_id": "a"}]', 422, "player_id"),
        ("/v1/players", b"[]", 422, None),
        ("/v1/players", b'[{"market": "GB"}]', 422, "player_id"),
    ],
)
def test_bad_input_is_a_problem_and_writes_nothing(client, keys, db, path, body, status, field):
    players, slots = count(db, "players"), count(db, "slots")
    before = (_player(db, "p1"), _slot(db, "s1"))
    response = client.put(path, content=body, headers={**keys["ingest"], "content-type": "application/json"})
    problem = assert_problem(response, status)
    if field is not None:
        assert problem["field"] == field
    assert (count(db, "players"), count(db, "slots")) == (players, slots)
    assert (_player(db, "p1"), _slot(db, "s1")) == before
