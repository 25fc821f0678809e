"""Concurrent writers: PUT batches with the same new ids in different orders, activations racing,
and `recsys train` against a running pipeline. None of them may fail (issue 10 saw deadlocks,
unique-index violations and exit 1)."""

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from recsys.db import pipeline_runs, versions
from recsys.db.records import put_records
from tests.api.conftest import count, write_version
from tests.factories import add_player, add_slot

N_IDS = 300
N_WRITERS = 24


def test_put_batches_with_the_same_new_ids_in_different_orders_all_succeed(db):
    ids = [f"player-{i:04d}" for i in range(N_IDS)]

    def put(seed: int):
        order = random.Random(seed).sample(ids, len(ids))
        records = [{"player_id": pid, "market": "GB" if seed % 2 else "SE"} for pid in order]
        return put_records(db, "players", records, f"writer {seed}")

    with ThreadPoolExecutor(N_WRITERS) as pool:
        results = list(pool.map(put, range(N_WRITERS)))
    assert len(results) == N_WRITERS
    assert sum(r.inserted for r in results) == N_IDS  # each id inserted once, by whichever came first
    assert count(db, "players") == N_IDS


@pytest.fixture
def small_casino(db):
    with db.begin() as conn:
        players = {f"p{i}": add_player(conn, f"p{i}") for i in range(3)}
        slots = {f"s{i}": add_slot(conn, f"s{i}") for i in range(1, 21)}
    return players, slots


def test_concurrent_activations_leave_exactly_one_active_version(db, small_casino):
    players, slots = small_casino
    ids = [write_version(db, players, slots, seed=i, activate=False) for i in range(12)]

    with ThreadPoolExecutor(12) as pool:
        activated = list(pool.map(lambda v: versions.activate(db, v), ids))
    assert sorted(v.id for v in activated) == ids
    with db.connect() as conn:
        active = conn.execute(sa.text("SELECT id FROM model_versions WHERE status = 'active'")).scalars().all()
        retired = conn.execute(sa.text("SELECT count(*) FROM model_versions WHERE status = 'retired'")).scalar_one()
    assert len(active) == 1 and retired == 11


def test_a_version_the_gate_refused_needs_force(db, small_casino, caplog):
    players, slots = small_casino
    good = write_version(db, players, slots, seed=1)
    refused = write_version(db, players, slots, seed=2, activate=False)
    versions.set_metrics(db, refused, {"gate": {"passed": False, "reason": "HR@10 0.100 is below the floor 0.3"}})
    with pytest.raises(versions.VersionError, match="quality gate refused"):
        versions.activate(db, refused)
    assert versions.active_version(db).id == good
    with caplog.at_level("WARNING", logger="recsys.db.versions"):
        forced = versions.activate(db, refused, force=True)
    assert forced.status == "active" and versions.active_version(db).id == refused
    assert forced.metrics["forced_activation"]["gate_reason"] == "HR@10 0.100 is below the floor 0.3"
    assert forced.metrics["forced_activation"]["at"]
    assert f"model version {refused} activated by force" in caplog.text


def test_train_exits_4_while_a_pipeline_holds_the_lock(db, settings, monkeypatch, capsys):
    from recsys.cli import main

    monkeypatch.setenv("RECSYS_DATABASE_URL", settings.database.url)
    with pipeline_runs.pipeline_lock(db):
        assert main(["train"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another pipeline is running" in err[0], err


def test_the_pipeline_lock_is_released_quietly_when_its_connection_was_killed(db, settings):
    from recsys.db.engine import create_engine

    engine = create_engine(settings)  # the CLI's engine: connection errors raise DatabaseUnavailable
    try:
        with pipeline_runs.pipeline_lock(engine), db.connect() as conn:
            holder = conn.execute(sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = :key AND objsubid = 1"
            ), {"key": pipeline_runs.PIPELINE_LOCK}).scalar_one()
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
        with pipeline_runs.pipeline_lock(engine):  # the server released it with the session
            pass
    finally:
        engine.dispose()
