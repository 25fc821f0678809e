"""CLI errors: an unreachable database is one line and exit 2 for every command; a busy port is refused."""

import socket

import psycopg
import pytest

from recsys.cli import main
from recsys.db.engine import with_database


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv", [
    ["db", "upgrade"], ["db", "current"], ["db", "check"], ["serve", "--port", "0"], ["apikey", "list"],
    ["consolidate"], ["train"], ["pipeline", "run"],
])
def test_an_unreachable_database_is_one_line_and_exit_2(argv, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RECSYS_DATABASE_URL", f"postgresql://postgres:@127.0.0.1:{_closed_port()}/recsys")
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    if argv[0] == "serve":
        argv = ["serve", "--port", str(_closed_port())]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the database" in err[0], err


def test_serve_refuses_a_port_already_in_use(monkeypatch, capsys, settings):
    monkeypatch.setenv("RECSYS_DATABASE_URL", settings.database.url)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--host", "127.0.0.1", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"127.0.0.1:{port} is already in use" in err[0], err


# --- issue 22, failure 9: an un-migrated database, a bad port or URL are one line, never a traceback ------

UNMIGRATED = "recsys_unmigrated"


@pytest.fixture
def unmigrated_url(server_url):
    """An empty database (no schema at all), made for the test and dropped after it."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {UNMIGRATED} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {UNMIGRATED}")
    yield with_database(server_url, UNMIGRATED)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {UNMIGRATED} WITH (FORCE)")


@pytest.mark.parametrize("argv", [
    ["apikey", "create", "--scope", "read"], ["apikey", "list"], ["experiment", "list"], ["pipeline", "run"],
    ["train"], ["consolidate"], ["import", "players", "examples/players.csv"],
])
def test_every_command_on_an_unmigrated_database_says_run_db_upgrade(argv, unmigrated_url, monkeypatch, capsys,
                                                                      tmp_path):
    monkeypatch.setenv("RECSYS_DATABASE_URL", unmigrated_url)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run `recsys db upgrade`" in err[0], err


@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_serve_refuses_a_port_out_of_range_in_one_line(port, monkeypatch, capsys, settings):
    monkeypatch.setenv("RECSYS_DATABASE_URL", settings.database.url)
    assert main(["serve", "--host", "127.0.0.1", "--port", port]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--port {port}" in err[0] and "1..65535" in err[0], err


@pytest.mark.parametrize("argv", [["apikey", "list"], ["db", "current"], ["serve", "--port", "8123"]])
def test_a_malformed_database_url_is_one_line_naming_the_variable(argv, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RECSYS_DATABASE_URL", "postgresql://u:p@[::1")
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RECSYS_DATABASE_URL" in err[0], err
