import dataclasses

import pytest

from tests.api.conftest import assert_problem, circle, wait_until, write_version


def _similar(client, keys, slot_id="s10", **params):
    return client.get(f"/v1/slots/{slot_id}/similar", params=params, headers=keys["read"])


def test_similar_answers_with_the_nearest_slots_from_the_index(client, keys, world):
    response = _similar(client, keys, k=4)
    assert response.status_code == 200
    assert response.headers["x-recsys-search"] == "faiss"
    body = response.json()
    assert set(body) == {"slot_id", "model_version", "items"}
    assert (body["slot_id"], body["model_version"]) == ("s10", world.version)
    assert {i["slot_id"] for i in body["items"][:2]} == {"s9", "s11"}
    assert {i["slot_id"] for i in body["items"][2:]} == {"s8", "s12"}
    assert body["items"][0]["score"] == pytest.approx(float(world.similarity[9] @ world.similarity[8]), abs=1e-5)
    assert all(set(i) == {"slot_id", "score"} for i in body["items"])


def test_faiss_and_pgvector_give_the_same_ranking(client, keys, world, db):
    # A second version with the same slot vectors turned by 5 degrees: pgvector serves it (not in
    # memory); the index serves the active one. Same geometry, so the same ranking.
    other = write_version(db, world.players, world.slots, seed=1, similarity=circle(offset_degrees=5), activate=False)
    for slot_id in ("s1", "s10", "s17"):
        from_index = _similar(client, keys, slot_id, k=8)
        from_pgvector = _similar(client, keys, slot_id, k=8, version=other)
        assert from_index.headers["x-recsys-search"] == "faiss"
        assert from_pgvector.headers["x-recsys-search"] == "pgvector"
        assert from_pgvector.json()["model_version"] == other
        index_items, pg_items = from_index.json()["items"], from_pgvector.json()["items"]
        assert [i["score"] for i in index_items] == pytest.approx([i["score"] for i in pg_items], abs=1e-5)
        # ties (equal cosines either side) may come in either order; compare rank by rank as sets
        for rank in range(0, 8, 2):
            assert {i["slot_id"] for i in index_items[rank:rank + 2]} == {i["slot_id"] for i in pg_items[rank:rank + 2]}


def test_without_an_index_in_memory_pgvector_answers_the_same(client, keys):
    serving = client.app.state.serving
    expected = _similar(client, keys, k=5).json()
    serving.snapshot = dataclasses.replace(serving.snapshot, model=None)  # as before the first load
    response = _similar(client, keys, k=5)
    assert response.headers["x-recsys-search"] == "pgvector"
    body = response.json()
    assert body["model_version"] == expected["model_version"]
    assert [i["score"] for i in body["items"]] == pytest.approx([i["score"] for i in expected["items"]], abs=1e-5)
    assert "recsys_fallbacks_total{kind=\"pgvector\"} 1" in client.get("/metrics").text


def test_a_disabled_slot_leaves_at_once(client, keys):
    assert "s11" in {i["slot_id"] for i in _similar(client, keys, k=2).json()["items"]}
    put = client.put("/v1/slots/s11", json={"active": False}, headers=keys["ingest"])
    assert put.status_code == 200, put.text
    items = {i["slot_id"] for i in _similar(client, keys, k=2).json()["items"]}
    assert items == {"s9", "s8"} or items == {"s9", "s12"}


def test_another_replica_hears_the_catalogue_change(client, keys, make_client, db):
    other = make_client()
    assert "s11" in {i["slot_id"] for i in _similar(other, keys, k=2).json()["items"]}
    with db.begin() as conn:  # an operator's SQL, or a file import: the trigger NOTIFYs
        conn.exec_driver_sql("UPDATE slots SET active = false WHERE slot_id = 's11'")
    assert wait_until(lambda: "s11" not in {i["slot_id"] for i in _similar(other, keys, k=2).json()["items"]})


def test_market_restricts_the_answer(client, keys):
    assert client.put("/v1/slots/s11", json={"markets": ["SE"]}, headers=keys["ingest"]).status_code == 200
    assert "s11" in {i["slot_id"] for i in _similar(client, keys, k=2).json()["items"]}
    assert "s11" in {i["slot_id"] for i in _similar(client, keys, k=2, market="SE").json()["items"]}
    assert "s11" not in {i["slot_id"] for i in _similar(client, keys, k=2, market="GB").json()["items"]}


def test_a_new_slot_gets_a_provisional_vector(client, keys):
    body = {"name": "New", "provider": "p2", "theme": "fruit", "volatility": "medium", "rtp": 96.1,
            "min_bet": 0.2, "max_bet": 50}
    assert client.put("/v1/slots/brand-new", json=body, headers=keys["ingest"]).json()["inserted"] == 1
    response = _similar(client, keys, "brand-new", k=3)
    assert response.status_code == 200 and response.headers["x-recsys-search"] == "faiss"
    # no trained slot shares (p2, fruit, medium) or (fruit, medium): the fruit slots' mean it is
    assert len(response.json()["items"]) == 3


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/slots/nope/similar", 404),
        ("/v1/slots/s1/similar?k=0", 400),
        ("/v1/slots/s1/similar?k=101", 400),
        ("/v1/slots/s1/similar?k=ten", 400),
        ("/v1/slots/s1/similar?version=999", 404),
    ],
)
def test_bad_requests_are_problem_details(client, keys, path, status):
    body = assert_problem(client.get(path, headers=keys["read"]), status)
    assert body["detail"]
