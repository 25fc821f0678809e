"""An import never takes an exclusive lock on play_sessions while the API may be serving: indexes
are deferred only into an empty table or with --offline (issue 10: 5.3 s of stalled lists)."""

import pytest
import sqlalchemy as sa

from recsys.db import imports
from recsys.importing import validate_records
from tests.factories import add_player, add_slot


def sessions(prefix: str, n: int):
    return validate_records(
        [{"session_id": f"{prefix}{i}", "player_id": "p1", "slot_id": "g1",
          "started_at": f"2024-05-01T{10 + i % 10:02d}:00:00Z", "spins": i} for i in range(n)], "sessions")


def exclusive_locks(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE relation = 'play_sessions'::regclass AND mode = 'AccessExclusiveLock'"
        )).scalar_one()


@pytest.fixture
def casino(db, monkeypatch):
    monkeypatch.setattr(imports, "DEFERRED_INDEX_ROWS", 1)  # every load is "large"
    with db.begin() as conn:
        add_player(conn, "p1")
        add_slot(conn, "g1")
    return db


def load_and_count_locks(engine, frame, **options) -> int:
    with engine.begin() as conn:
        imports.upsert_frame(conn, "sessions", frame, source="test", **options)
        return exclusive_locks(engine)  # seen from another connection before the commit


def test_a_load_into_a_table_in_use_takes_no_exclusive_lock(casino):
    assert load_and_count_locks(casino, sessions("a", 5)) == 1  # empty table: deferred indexes
    assert load_and_count_locks(casino, sessions("b", 50)) == 0  # 50 >= 5 stored: deferred before the fix
    assert load_and_count_locks(casino, sessions("c", 50), offline=True) == 1
    with casino.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM play_sessions")).scalar_one() == 105
