"""CLI errors: an unreachable database is one line and exit 2 for every command; a busy port is refused."""

import socket

import pytest

from recsys.cli import main


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
