"""Log lines escape control characters, so a client cannot forge one (issue 10)."""

import logging

from recsys.logs import EscapingFormatter, escape


def test_control_characters_in_a_message_are_escaped_but_tracebacks_keep_their_lines():
    assert escape("p1\nINFO forged\x00") == "p1\\x0aINFO forged\\x00"
    formatter = EscapingFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = logging.LogRecord("api", logging.ERROR, __file__, 1, "unhandled error in GET %s", ("/p1\nforged",),
                                   (type(exc), exc, exc.__traceback__))
    lines = formatter.format(record).splitlines()
    assert lines[0] == "ERROR unhandled error in GET /p1\\x0aforged"
    assert lines[1] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"


def test_the_cli_logs_through_the_escaping_formatter(monkeypatch, capsys):
    from recsys.cli import main

    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setenv("RECSYS_DATABASE_URL", "postgresql://postgres:@127.0.0.1:9/recsys")
    main(["apikey", "list"])  # configures logging, then fails to connect (exit 2)
    logging.getLogger("recsys.test").warning("player %s", "p1\nCRITICAL forged")
    err = capsys.readouterr().err
    assert "player p1\\x0aCRITICAL forged" in err and "\nCRITICAL forged" not in err
