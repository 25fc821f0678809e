"""``recsys analyst create|revoke|list``: PostgreSQL logins for analysts, limited as docs/analytics.md says."""

from __future__ import annotations

import argparse

from recsys.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyst", help="create, list or revoke analysts' database logins (read-only, time-limited)",
        description="Analysts' PostgreSQL logins: members of recsys_analyst (SELECT on the documented tables "
                    "and views, nothing on api_keys), each with its own statement timeout, idle-in-transaction "
                    "timeout and connection limit (role settings do not pass through membership). "
                    "Roles belong to the whole server.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a login and print how to connect (the password once)")
    create.add_argument("name", help="the login's name: lower-case letters, digits and _")
    create.add_argument("--statement-timeout", default="60s",
                        help="longest statement before PostgreSQL cancels it (a PostgreSQL time: 60s, 5min)")
    create.add_argument("--idle-timeout", default="5min",
                        help="an open transaction left idle this long ends the session "
                             "(idle_in_transaction_session_timeout)")
    create.add_argument("--connections", type=int, default=3, help="at most this many sessions at once")
    actions.add_parser("list", help="list the analysts' logins with their limits")
    revoke = actions.add_parser("revoke", help="drop a login, ending its open sessions")
    revoke.add_argument("name", help="the login's name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.db import analysts
    from recsys.db.engine import create_engine, libpq_url

    url = libpq_url(settings)
    engine = create_engine(settings, url)
    try:
        if args.action == "create":
            limits = analysts.Limits(args.statement_timeout, args.idle_timeout, args.connections)
            password = analysts.create_analyst(engine, args.name, limits)
            print(f"created analyst login {args.name} (member of {analysts.ANALYST_ROLE}): statements stop after "
                  f"{limits.statement_timeout}, idle transactions after {limits.idle_in_transaction_timeout}, "
                  f"at most {limits.connection_limit} sessions, read-only")
            print(f"password (shown once): {password}")
            print(f"connect: psql '{analysts.login_url(url, args.name, password)}'")
            if not settings.database.url:
                print("(the embedded server runs only while a recsys process holds it, e.g. `recsys serve`)")
        elif args.action == "list":
            for row in analysts.list_analysts(engine):
                limits = ", ".join(f"{k}={v}" for k, v in sorted(row.settings.items()))
                print(f"{row.name:<20} connections {row.connection_limit:<3} {limits}")
        else:
            ended = analysts.revoke_analyst(engine, args.name)
            print(f"revoked analyst login {args.name}" + (f" ({ended} open sessions ended)" if ended else ""))
    finally:
        engine.dispose()
    return 0
