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


def test_a_slot_with_more_markets_than_the_bound_is_422_not_503(client, keys, db):
    # Issue 22: 100,000 markets overflowed the index row of ix_slots_hidden ("index row requires 9208
    # bytes"), answered 503 "retry later".
    from recsys.importing import MAX_MARKETS

    before = _slot(db, "s1")
    for n in (100_000, MAX_MARKETS + 1):
        markets = [f"M{i:05d}" for i in range(n)]
        problem = assert_problem(client.put("/v1/slots/s1", json={"markets": markets}, headers=keys["ingest"]), 422)
        assert problem["field"] == "markets" and f"at most {MAX_MARKETS}" in problem["detail"], problem
        batch = [{"slot_id": "s2"}, {"slot_id": "s1", "markets": markets}]
        problem = assert_problem(client.put("/v1/slots", json=batch, headers=keys["ingest"]), 422)
        assert (problem["index"], problem["field"]) == (1, "markets"), problem
    assert _slot(db, "s1") == before


def test_the_most_markets_allowed_fit_even_at_the_longest_codes(client, keys, db):
    from recsys.constants import MARKET_LENGTH
    from recsys.importing import MAX_MARKETS

    # Distinct codes of the full length: nothing for the index to compress.
    markets = [f"{i:0{MARKET_LENGTH}x}" for i in range(7 ** 9, 7 ** 9 + MAX_MARKETS)]
    answer = client.put("/v1/slots/s1", json={"markets": markets}, headers=keys["ingest"])
    assert answer.status_code == 200, answer.text
    assert _slot(db, "s1").markets == markets


def test_an_empty_list_of_markets_means_every_market(client, keys, db):
    # docs/import-format.md: empty = every market. Issue 22: [] was stored as '{}' and served nowhere.
    def similar(market):
        return {i["slot_id"] for i in client.get("/v1/slots/s10/similar", params={"k": 2, "market": market},
                                                 headers=keys["read"]).json()["items"]}

    assert client.put("/v1/slots/s11", json={"markets": ["SE"]}, headers=keys["ingest"]).status_code == 200
    assert "s11" not in similar("GB")
    assert client.put("/v1/slots/s11", json={"markets": []}, headers=keys["ingest"]).status_code == 200
    assert _slot(db, "s11").markets is None
    assert "s11" in similar("GB") and "s11" in similar("SE")
    batch = [{"slot_id": "s9", "markets": []}, {"slot_id": "s12", "markets": ["SE"]}]
    assert client.put("/v1/slots", json=batch, headers=keys["ingest"]).status_code == 200
    assert (_slot(db, "s9").markets, _slot(db, "s12").markets) == (None, ["SE"])
