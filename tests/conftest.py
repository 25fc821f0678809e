"""Tests run against a real PostgreSQL migrated by Alembic: the embedded one by default.

``RECSYS_TEST_DATABASE_URL`` points them at another server instead (its database is wiped).
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from recsys.db import migrations
from recsys.db.embedded import embedded_url
from recsys.db.engine import sqlalchemy_url, with_database
from recsys.db.schema import metadata
from recsys.settings import Settings

TEST_DATABASE = "recsys_test"


def _fresh_database(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEST_DATABASE}")
    return with_database(admin_url, TEST_DATABASE)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory) -> str:
    """libpq URL of the server's maintenance database (``postgres``)."""
    url = os.environ.get("RECSYS_TEST_DATABASE_URL")
    if url:
        return url
    data_dir = Path(os.environ.get("RECSYS_TEST_DATA_DIR") or tmp_path_factory.mktemp("embedded"))
    return with_database(embedded_url(data_dir), "postgres")


@pytest.fixture(scope="session")
def database_url(server_url) -> str:
    """A fresh database at the head revision; shared by the session, emptied before each test."""
    url = _fresh_database(server_url)
    migrations.upgrade(url)
    return url


@pytest.fixture(scope="session")
def settings(database_url, tmp_path_factory) -> Settings:
    return Settings.from_env({}, database_url=database_url, data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def engine(database_url):
    engine = sa.create_engine(sqlalchemy_url(database_url), pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine):
    """An empty database (every table truncated) and the engine to reach it."""
    names = ", ".join(table.name for table in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return engine
