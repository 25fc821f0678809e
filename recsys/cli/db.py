"""``recsys db upgrade|downgrade|current|check``: the schema, through Alembic only."""

from __future__ import annotations

import argparse

from recsys.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="migrate the database schema (Alembic)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("upgrade", help="upgrade to a revision (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    down = actions.add_parser("downgrade", help="downgrade to a revision (e.g. -1, base)")
    down.add_argument("revision")
    actions.add_parser("current", help="print the database's revision")
    actions.add_parser("check", help="fail when the schema module and the migrations disagree")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.db import migrations
    from recsys.db.engine import libpq_url

    url = libpq_url(settings)
    if args.action == "upgrade":
        print(f"upgrading database to {args.revision} ...", flush=True)
        migrations.upgrade(url, args.revision)
        print(f"database at revision {migrations.current(url)}")
    elif args.action == "downgrade":
        print(f"downgrading database to {args.revision} ...", flush=True)
        migrations.downgrade(url, args.revision)
        print(f"database at revision {migrations.current(url)}")
    elif args.action == "current":
        print(migrations.current(url) or "(empty database)")
    else:
        migrations.check(url)
        print("schema and migrations agree")
    return 0
