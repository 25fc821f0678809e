import numpy as np
import psycopg
import pytest

from recsys.db import versions
from recsys.db.channels import NotifyKey, Verifier
from tests.factories import add_player, add_slot


@pytest.fixture
def keys(db):
    with db.begin() as conn:
        players = np.array([add_player(conn, f"p{i}") for i in range(5)])
        slots = np.array([add_slot(conn, f"s{i}") for i in range(4)])
    return players, slots


def _write(db, players, slots, seed=0) -> tuple[int, dict]:
    rng = np.random.default_rng(seed)
    data = {
        "p_gmf": rng.normal(size=(len(players), 8)).astype(np.float32),
        "p_mlp": rng.normal(size=(len(players), 4)).astype(np.float32),
        "s_gmf": rng.normal(size=(len(slots), 8)).astype(np.float32),
        "s_mlp": rng.normal(size=(len(slots), 4)).astype(np.float32),
    }
    data["sim"] = data["s_gmf"] / np.linalg.norm(data["s_gmf"], axis=1, keepdims=True)
    version = versions.create_version(db, "neumf", {"factors": 8})
    versions.write_embeddings(
        db, version, players, {"gmf": data["p_gmf"], "mlp": data["p_mlp"]},
        slots[::-1], {"gmf": data["s_gmf"], "mlp": data["s_mlp"]}, data["sim"],
        slot_provisional=np.array([False, False, False, True]),
    )
    state = {"config": {"model": "neumf"}, "history": [], "weights": {
        "predict.weight": np.ones((1, 12), np.float32), "user_gmf.weight": data["p_gmf"]}}
    versions.finish_version(db, version, state=state, metrics={"hr@10": 0.5}, similarity_vector="gmf",
                            curve_path=None)
    return version, data


def test_embeddings_round_trip_through_pgvector(db, keys):
    players, slots = keys
    version, data = _write(db, players, slots)
    loaded = versions.load_slot_vectors(db, version)
    np.testing.assert_array_equal(loaded.slot_keys, slots[::-1])
    np.testing.assert_array_equal(loaded.towers["gmf"], data["s_gmf"])
    np.testing.assert_array_equal(loaded.towers["mlp"], data["s_mlp"])
    np.testing.assert_array_equal(loaded.similarity, data["sim"])
    assert loaded.provisional.tolist() == [False, False, False, True]

    found, towers = versions.load_player_vectors(db, version, players[[3, 1]])
    assert found.tolist() == players[[1, 3]].tolist()
    np.testing.assert_array_equal(towers["gmf"], data["p_gmf"][[1, 3]])

    state = versions.load_weights(db, version)
    assert set(state["weights"]) == {"predict.weight"}  # embedding tables live in pgvector only
    v = versions.get_version(db, version)
    assert (v.status, v.n_players, v.n_slots, v.metrics) == ("ready", 5, 4, {"hr@10": 0.5})


def test_activation_retires_the_previous_version_and_notifies(db, keys, database_url):
    first, _ = _write(db, *keys)
    second, _ = _write(db, *keys, seed=1)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {versions.CHANNEL}")
        versions.activate(db, first)
        versions.activate(db, second)
        heard = list(listener.notifies(timeout=2, stop_after=2))
        verifier = Verifier()  # the payloads are signed (issue 22): open them as the API does
        verifier.key = NotifyKey.read(listener)
    assert [verifier.open(n).payload for n in heard] == [str(first), str(second)]
    assert versions.active_version(db).id == second
    assert versions.get_version(db, first).status == "retired"
    # rollback to the first
    versions.activate(db, first)
    assert [v.status for v in versions.list_versions(db)] == ["retired", "active"]


def test_a_training_or_failed_version_cannot_be_activated(db, keys):
    version = versions.create_version(db, "neumf", {})
    with pytest.raises(versions.VersionError, match="is training"):
        versions.activate(db, version)
    versions.fail_version(db, version, "boom")
    with pytest.raises(versions.VersionError, match="is failed"):
        versions.activate(db, version)
    assert versions.active_version(db) is None


def test_abandoned_training_versions_are_failed_under_the_lock(db, keys):
    version = versions.create_version(db, "neumf", {})
    with versions.training_lock(db):
        with pytest.raises(versions.VersionError, match="another training run"), versions.training_lock(db):
            pass
        assert versions.fail_abandoned(db) == [version]
    assert versions.get_version(db, version).status == "failed"


def test_offline_recommendations_keep_order_and_short_lists(db, keys):
    players, slots = keys
    version, _ = _write(db, players, slots)
    idx = np.array([[2, 0, 1], [3, -1, -1], [-1, -1, -1], [1, 2, 3], [0, 1, 2]])
    scores = np.array([[3.0, 2, 1], [5, -np.inf, -np.inf], [-np.inf] * 3, [1, 0.5, 0.25], [9, 8, 7]])
    assert versions.write_offline(db, version, players, slots, idx, scores) == 4
    with db.connect() as conn:
        from sqlalchemy import text

        rows = dict(
            (r[0], (r[1], r[2]))
            for r in conn.execute(text("SELECT player_key, slot_keys, scores FROM offline_recommendations"))
        )
    assert rows[players[0]] == ([slots[2], slots[0], slots[1]], [3.0, 2.0, 1.0])
    assert rows[players[1]] == ([slots[3]], [5.0])
    assert players[2] not in rows


def test_retire_old_keeps_the_newest_and_the_active(db, keys):
    ids = [_write(db, *keys, seed=s)[0] for s in range(4)]
    versions.activate(db, ids[0])
    assert versions.retire_old(db, keep=2) == [ids[1]]
    with db.connect() as conn:
        from sqlalchemy import text

        left = conn.execute(text("SELECT DISTINCT version_id FROM slot_embeddings ORDER BY 1")).scalars().all()
    assert left == [ids[0], ids[2], ids[3]]
