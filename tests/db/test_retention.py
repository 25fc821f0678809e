"""Recommendation logs are partitioned by month; retention drops whole old months with their
feedback, keeps recent ones, and makes the coming months' partitions (issue 10)."""

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from recsys.db.retention import apply_retention
from tests.factories import add_player, add_slot


def log_list(conn, player: int, slot: int, created_at: datetime) -> uuid.UUID:
    rec = uuid.uuid4()
    values = {"id": rec, "p": player, "s": slot, "t": created_at}
    conn.execute(sa.text("INSERT INTO recommendations (id, player_key, trigger, created_at, slot_keys, scores, "
                         "reasons, explored) VALUES (:id, :p, 'api', :t, ARRAY[:s], '{0.5}', '{popular}', '{f}')"),
                 values)
    conn.execute(sa.text("INSERT INTO feedback (recommendation_id, slot_key, action, ts) "
                         "VALUES (:id, :s, 'click', :t)"), values)
    return rec


def partitions(conn, table: str) -> set[str]:
    return set(conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:t AS regclass)"
    ), {"t": table}).scalars())


def test_the_logs_are_partitioned_by_month(db):
    now = datetime.now(UTC)
    with db.begin() as conn:
        strategy = conn.execute(sa.text(
            "SELECT string_agg(c.relname || ':' || p.partstrat::text, ',' ORDER BY c.relname) "
            "FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "WHERE c.relname LIKE 'recommendation%'")).scalar_one()
        assert strategy == "recommendations:r"
        rec = log_list(conn, add_player(conn, "p1"), add_slot(conn, "s1"), now)
        where = conn.execute(sa.text("SELECT tableoid::regclass::text FROM recommendations WHERE id = :id"),
                             {"id": rec}).scalar_one()
    assert where == f"recommendations_{now:%Y_%m}"


def test_retention_drops_old_months_with_their_feedback_and_keeps_recent_ones(db):
    now = datetime.now(UTC)
    old = (now - timedelta(days=500)).replace(day=15)
    with db.begin() as conn:
        player, slot = add_player(conn, "p1"), add_slot(conn, "s1")
        month = f"{old:%Y_%m}"
        start = old.replace(day=1, hour=0, minute=0, second=0, microsecond=0)  # an old month with its own partition
        end = (start + timedelta(days=32)).replace(day=1)
        conn.execute(sa.text(f"CREATE TABLE recommendations_{month} PARTITION OF recommendations "
                             f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"))
        log_list(conn, player, slot, old)
        very_old = log_list(conn, player, slot, now - timedelta(days=5000))  # no partition: the default one
        recent = log_list(conn, player, slot, now - timedelta(days=1))

    result = apply_retention(db, keep_days=400)
    assert result.dropped_months == [month]
    assert result.deleted_default_rows == 1  # the very old list, with its items (migration 0015)
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM recommendations")).scalars().all() == [recent]
        assert conn.execute(sa.text("SELECT recommendation_id FROM feedback")).scalars().all() == [recent]
        assert f"recommendations_{month}" not in partitions(conn, "recommendations")
        ahead = {f"recommendations_{(now.replace(day=1) + timedelta(days=32 * i)):%Y_%m}" for i in range(3)}
        assert ahead <= partitions(conn, "recommendations")
        assert conn.execute(sa.text("SELECT count(*) FROM recommendations WHERE id = :id"),
                            {"id": very_old}).scalar_one() == 0


def test_zero_keeps_everything(db):
    with db.begin() as conn:
        log_list(conn, add_player(conn, "p1"), add_slot(conn, "s1"), datetime.now(UTC) - timedelta(days=5000))
    assert apply_retention(db, keep_days=0).dropped_months == []
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM recommendations")).scalar_one() == 1
