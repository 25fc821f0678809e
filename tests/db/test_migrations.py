import psycopg
import pytest
import sqlalchemy as sa

from recsys.db import migrations
from recsys.db.engine import sqlalchemy_url, with_database
from recsys.db.schema import metadata
from tests.factories import add_player, add_slot


@pytest.fixture
def empty_url(server_url):
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS recsys_migrations WITH (FORCE)")
        conn.execute("CREATE DATABASE recsys_migrations")
    yield with_database(server_url, "recsys_migrations")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS recsys_migrations WITH (FORCE)")


def _tables(url: str) -> set[str]:
    """The database's tables, partitions left out (migration 0006 creates the recommendation logs' months)."""
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            partitions = set(conn.execute(sa.text("SELECT relname FROM pg_class WHERE relispartition")).scalars())
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"} - partitions
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_round_trip(empty_url):
    migrations.upgrade(empty_url)
    assert _tables(empty_url) == {t.name for t in metadata.sorted_tables}
    assert migrations.current(empty_url) is not None

    migrations.downgrade(empty_url, "base")
    assert _tables(empty_url) == set()
    assert migrations.current(empty_url) is None

    migrations.upgrade(empty_url)
    assert _tables(empty_url) == {t.name for t in metadata.sorted_tables}


def test_models_and_migrations_agree(database_url):
    migrations.check(database_url)


def test_check_detects_a_drift(empty_url):
    migrations.upgrade(empty_url)
    with psycopg.connect(empty_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE api_keys DROP COLUMN name")
    with pytest.raises(migrations.MigrationError, match="disagree"):
        migrations.check(empty_url)


def test_interactions_is_partitioned_by_day(engine):
    with engine.connect() as conn:
        strategy = conn.execute(
            sa.text(
                "SELECT partstrat FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                "WHERE c.relname = 'interactions'"
            )
        ).scalar_one()
    assert strategy == "r"


def test_only_one_version_can_be_active(db):
    insert = sa.text("INSERT INTO model_versions (status, model, params) VALUES ('active', 'neumf', '{}')")
    with db.begin() as conn:
        conn.execute(insert)
    with pytest.raises(sa.exc.IntegrityError, match="uq_model_versions_one_active"), db.begin() as conn:
        conn.execute(insert)


ITEMS = "SELECT recommendation_id, rank, slot_key, score, reason, explored, created_at FROM recommendation_items "


def test_0015_moves_each_list_s_items_into_its_row_and_back(empty_url):
    """The items logged before migration 0015 become their list's arrays, in rank order, read back
    unchanged through the view (and the analytics views on it), and the downgrade restores the table."""
    migrations.upgrade(empty_url, "0014")
    engine = sa.create_engine(sqlalchemy_url(empty_url), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        player, (a, b, c) = add_player(conn, "p"), (add_slot(conn, s) for s in ("a", "b", "c"))
    engine.dispose()
    with psycopg.connect(empty_url) as conn:
        conn.execute("INSERT INTO recommendations (id, player_key, trigger, created_at) VALUES "
                     "('00000000-0000-0000-0000-000000000001', %s, 'api', '2026-11-30 23:00+00'), "
                     "('00000000-0000-0000-0000-000000000002', %s, 'api', '2026-12-01 08:00+00')", (player, player))
        conn.execute("INSERT INTO recommendations (id, player_key, trigger, suppressed_reason, created_at) VALUES "
                     "('00000000-0000-0000-0000-000000000003', %s, 'api', 'cooling_off', '2026-12-01 09:00+00')",
                     (player,))
        conn.execute(  # ranks written out of order: the arrays follow the rank
            "INSERT INTO recommendation_items (recommendation_id, rank, slot_key, score, reason, explored, created_at) "
            "VALUES ('00000000-0000-0000-0000-000000000001', 2, %(c)s, 0.25, 'explore', true, '2026-11-30 23:00+00'), "
            "('00000000-0000-0000-0000-000000000001', 1, %(a)s, 0.75, 'similar', false, '2026-11-30 23:00+00'), "
            "('00000000-0000-0000-0000-000000000002', 1, %(b)s, 0.5, 'personal', false, '2026-12-01 08:00+00')",
            {"a": a, "b": b, "c": c})
        before = conn.execute(ITEMS + "ORDER BY 1, 2").fetchall()
        outcomes = conn.execute("SELECT * FROM v_item_outcomes ORDER BY 1, 3").fetchall()

    migrations.upgrade(empty_url)
    with psycopg.connect(empty_url) as conn:
        rows = conn.execute("SELECT id, slot_keys, scores, reasons, explored FROM recommendations ORDER BY id"
                            ).fetchall()
        assert [r[1:] for r in rows] == [([a, c], [0.75, 0.25], ["similar", "explore"], [False, True]),
                                         ([b], [0.5], ["personal"], [False]), ([], [], [], [])]
        assert conn.execute(ITEMS + "ORDER BY 1, 2").fetchall() == before
        assert conn.execute("SELECT * FROM v_item_outcomes ORDER BY 1, 3").fetchall() == outcomes
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'recommendation_items'").fetchone() == ("v",)
        assert conn.execute("SELECT has_table_privilege('recsys_analyst', 'recommendation_items', 'SELECT')"
                            ).fetchone() == (True,)
        with pytest.raises(psycopg.errors.CheckViolation, match="ck_recommendations_items"):
            conn.execute("INSERT INTO recommendations (id, player_key, trigger, slot_keys, scores, reasons, explored) "
                         "VALUES (gen_random_uuid(), %s, 'api', '{1,2}', '{0.5}', '{similar,similar}', '{f,f}')",
                         (player,))
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation, match="ck_recommendations_reasons"):
            conn.execute("INSERT INTO recommendations (id, player_key, trigger, slot_keys, scores, reasons, explored) "
                         "VALUES (gen_random_uuid(), %s, 'api', '{1}', '{0.5}', '{because}', '{f}')", (player,))

    migrations.downgrade(empty_url, "0014")
    with psycopg.connect(empty_url) as conn:
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'recommendation_items'").fetchone() == ("p",)
        assert conn.execute(ITEMS + "ORDER BY 1, 2").fetchall() == before
        assert conn.execute("SELECT * FROM v_item_outcomes ORDER BY 1, 3").fetchall() == outcomes
        placed = conn.execute(  # each item in its list's month
            "SELECT DISTINCT replace(r.tableoid::regclass::text, 'recommendations', ''), "
            "replace(i.tableoid::regclass::text, 'recommendation_items', '') "
            "FROM recommendation_items i JOIN recommendations r ON r.id = i.recommendation_id").fetchall()
        assert placed and all(list_month == item_month for list_month, item_month in placed)
