"""Alembic environment, close to the template: the metadata from recsys.db.schema, the URL from settings."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from recsys.db.engine import libpq_url, sqlalchemy_url
from recsys.db.schema import PARTITIONED_TABLES, metadata
from recsys.settings import Settings

config = context.config
target_metadata = metadata


def include_object(obj, name, type_, reflected, compare_to):
    # Partitions of a partitioned table (interactions_2026_01 ...) are created at run time.
    if type_ == "table" and reflected and compare_to is None:
        return not any(name.startswith(f"{parent}_") for parent in PARTITIONED_TABLES)
    return True


def database_url() -> str:
    url = config.attributes.get("url") or libpq_url(Settings.from_env())
    return sqlalchemy_url(url)


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = engine_from_config({"sqlalchemy.url": database_url()}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
