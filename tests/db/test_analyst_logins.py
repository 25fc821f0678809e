"""`recsys analyst create|list|revoke`: a login over the real server is limited by its own settings.

Role settings do not pass through membership, so ``recsys_analyst``'s own ``statement_timeout``
never reaches a login that is only its member (issue 23): each login carries its own limits.
"""

from __future__ import annotations

import re
import time

import psycopg
import pytest
import sqlalchemy as sa

from recsys.cli import main
from recsys.db import apikeys


@pytest.fixture
def cli(monkeypatch, db, database_url, tmp_path):
    monkeypatch.setenv("RECSYS_DATABASE_URL", database_url)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    made = []
    yield made
    with psycopg.connect(database_url, autocommit=True) as conn:  # roles outlive the test's database
        for name in made:
            conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'")
            conn.execute(f"DROP ROLE IF EXISTS {name}")


def create(cli, capsys, name: str, *options: str) -> str:
    """``recsys analyst create name ...``; returns the URL it printed."""
    cli.append(name)
    assert main(["analyst", "create", name, *options]) == 0
    out = capsys.readouterr().out
    (url,) = re.findall(r"connect: psql '(\S+)'", out)
    (password,) = re.findall(r"password \(shown once\): (\S+)", out)
    assert f"{name}:{password}@" in url
    return url


def test_a_plain_member_of_the_analyst_role_gets_no_statement_timeout(db, database_url, cli):
    """Why each login needs its own settings: the group's 60 s never reaches its members."""
    cli.append("plain_member")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE plain_member LOGIN IN ROLE recsys_analyst")
    with psycopg.connect(database_url.replace("postgres:@", "plain_member:@"), autocommit=True) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        conn.execute("SET ROLE recsys_analyst")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)


def test_the_timeout_cancels_a_long_query_and_writes_and_key_hashes_are_refused(db, cli, capsys):
    apikeys.create_key(db, ["read"], "someone")
    url = create(cli, capsys, "jane", "--statement-timeout", "300ms")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user, current_setting('statement_timeout')").fetchone() == ("jane", "300ms")
        assert conn.execute("SELECT count(*) FROM v_recommendation_items").fetchone() == (0,)
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="api_keys"):
            conn.execute("SELECT key_hash FROM api_keys")
        for statement in ("INSERT INTO feedback (recommendation_id, slot_key, action, ts) "
                          "VALUES (gen_random_uuid(), 1, 'click', now())",
                          "DELETE FROM players", "CREATE TABLE scratch (x int)"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute(statement)
        conn.execute("SET default_transaction_read_only = off")  # its own choice: the grants still refuse
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM players")
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM api_keys")).scalar_one() == 1


def test_an_idle_transaction_ends_the_session_and_the_connection_limit_holds(db, cli, capsys):
    url = create(cli, capsys, "idle_ann", "--idle-timeout", "500ms", "--connections", "2")
    first, second = psycopg.connect(url), psycopg.connect(url)
    with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
        psycopg.connect(url)
    first.execute("SELECT 1")  # a transaction left open
    time.sleep(1.5)
    with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
        first.execute("SELECT 1")
    first.close()
    second.close()


def test_list_and_revoke_which_ends_open_sessions(db, cli, capsys):
    url = create(cli, capsys, "bob")
    assert main(["analyst", "list"]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("bob ")]
    assert "connections 3" in line and "statement_timeout=60s" in line
    assert "idle_in_transaction_session_timeout=5min" in line
    session = psycopg.connect(url, autocommit=True)
    assert main(["analyst", "revoke", "bob"]) == 0
    assert "revoked analyst login bob (1 open sessions ended)" in capsys.readouterr().out
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    with pytest.raises(psycopg.OperationalError, match='role "bob" does not exist'):
        psycopg.connect(url)


@pytest.mark.parametrize(("argv", "message"), [
    (["create", "Jane; DROP"], "analyst 'Jane; DROP': a name is lower-case letters"),
    (["create", "tim", "--statement-timeout", "soon"], 'invalid value for parameter "statement_timeout"'),
    (["create", "tim", "--connections", "0"], "the connection limit must be at least 1"),
    (["create", "recsys_analyst"], "a role of that name exists"),
    (["revoke", "postgres"], "no analyst login of that name"),
])
def test_mistakes_are_one_line_and_exit_2_leaving_no_role(db, cli, capsys, argv, message):
    assert main(["analyst", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pg_roles WHERE rolname = 'tim'")).scalar_one() == 0
