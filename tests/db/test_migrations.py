import psycopg
import pytest
import sqlalchemy as sa

from recsys.db import migrations
from recsys.db.engine import sqlalchemy_url, with_database
from recsys.db.schema import metadata


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
