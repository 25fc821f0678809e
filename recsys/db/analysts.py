"""Analyst logins: LOGIN roles that are members of ``recsys_analyst``, each with its own limits.

``recsys_analyst`` (migrations 0003 and 0005) holds the grants: SELECT on the history tables and
views, nothing on ``api_keys``, no TEMP, no ``pg_notify``. Grants pass through membership, but role
*settings* do not: a login created as a plain member of ``recsys_analyst`` starts with
``statement_timeout = 0`` even after ``SET ROLE`` (issue 23). So each login carries its own
``statement_timeout``, ``idle_in_transaction_session_timeout``, connection limit and
``default_transaction_read_only``, set here when it is made.

Roles belong to the whole server (every database on it), like the ``recsys_analyst`` role itself.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import sqlalchemy as sa

from recsys.errors import RecsysError

ANALYST_ROLE = "recsys_analyst"

NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A role name that needs no quoting: lower case, digits and ``_``, at most 63 characters."""


class AnalystError(RecsysError):
    """An analyst login could not be made or removed; ``name`` is the login, ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"analyst {name!r}: {reason}")


@dataclass(frozen=True)
class Limits:
    """A login's own limits (PostgreSQL setting texts: ``60s``, ``5min``)."""

    statement_timeout: str = "60s"
    idle_in_transaction_timeout: str = "5min"
    connection_limit: int = 3


@dataclass(frozen=True)
class Analyst:
    name: str
    connection_limit: int
    settings: dict[str, str]  # the role's own settings: statement_timeout -> 60s ...


def create_analyst(engine: sa.Engine, name: str, limits: Limits = Limits()) -> str:
    """Make the login ``name`` in ``recsys_analyst`` with ``limits``; returns its password (random,
    shown once: PostgreSQL keeps only its SCRAM hash).

    Raises :class:`AnalystError` for a bad name, a role that exists, bad limits (PostgreSQL's own
    message), or a database user that may not create roles. Nothing is left behind on failure.
    """
    _check_name(name)
    if limits.connection_limit < 1:
        raise AnalystError(name, f"the connection limit must be at least 1, not {limits.connection_limit}")
    # token_urlsafe's alphabet ([A-Za-z0-9_-]) and the checked name need no quoting in the DDL below,
    # which takes no bind parameters.
    password = secrets.token_urlsafe(24)
    settings = {
        "statement_timeout": limits.statement_timeout,
        "idle_in_transaction_session_timeout": limits.idle_in_transaction_timeout,
        "default_transaction_read_only": "on",
    }
    try:
        with engine.begin() as conn:
            if _exists(conn, name):
                raise AnalystError(name, f"a role of that name exists (`recsys analyst revoke {name}` first)")
            conn.execute(sa.text(
                f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT "
                f"CONNECTION LIMIT {int(limits.connection_limit)} PASSWORD '{password}' IN ROLE {ANALYST_ROLE}"
            ))
            for setting, value in settings.items():
                conn.execute(sa.text(f"ALTER ROLE {name} SET {setting} = {_literal(value)}"))
    except sa.exc.DBAPIError as exc:
        raise AnalystError(name, _message(exc)) from exc
    return password


def revoke_analyst(engine: sa.Engine, name: str) -> int:
    """Drop the login ``name`` (only a member of ``recsys_analyst``), ending its open sessions first.
    Returns how many sessions were ended."""
    _check_name(name)
    try:
        with engine.begin() as conn:
            if not _is_analyst(conn, name):
                raise AnalystError(name, "no analyst login of that name (`recsys analyst list` shows them)")
            ended = conn.execute(sa.text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = :name"
            ), {"name": name}).scalar_one()
            conn.execute(sa.text(f"DROP ROLE {name}"))
    except sa.exc.DBAPIError as exc:
        raise AnalystError(name, _message(exc)) from exc
    return int(ended)


def list_analysts(engine: sa.Engine) -> list[Analyst]:
    """The login members of ``recsys_analyst``, by name, with their own settings."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("""
            SELECT r.rolname, r.rolconnlimit,
                   coalesce((SELECT s.setconfig FROM pg_db_role_setting s
                             WHERE s.setrole = r.oid AND s.setdatabase = 0), '{}') AS config
            FROM pg_roles r
            JOIN pg_auth_members m ON m.member = r.oid
            JOIN pg_roles g ON g.oid = m.roleid AND g.rolname = :group
            WHERE r.rolcanlogin
            ORDER BY r.rolname
        """), {"group": ANALYST_ROLE}).all()
    return [Analyst(name, limit, dict(item.split("=", 1) for item in config)) for name, limit, config in rows]


def login_url(url: str, name: str, password: str) -> str:
    """The libpq URL ``url`` with ``name`` and ``password`` as its user (the server and database kept)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{quote(name)}:{quote(password, safe='')}@{host}").geturl()


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise AnalystError(name, "a name is lower-case letters, digits and _ (at most 63, not starting with a digit)")


def _exists(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": name}).first() is not None


def _is_analyst(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.text("""
        SELECT 1 FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid
        JOIN pg_roles g ON g.oid = m.roleid
        WHERE r.rolname = :name AND r.rolcanlogin AND g.rolname = :group
    """), {"name": name, "group": ANALYST_ROLE}).first() is not None


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _message(exc: sa.exc.DBAPIError) -> str:
    """PostgreSQL's own first line (``invalid value for parameter ...``, ``permission denied ...``)."""
    return str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
