"""``recsys apikey create|list|revoke``: API keys for the HTTP API (shown once, stored hashed)."""

from __future__ import annotations

import argparse

from recsys.settings import Settings

SCOPES = ("read", "ingest", "admin")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("apikey", help="create, list or revoke API keys")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--scope", action="append", choices=SCOPES, required=True,
                        help="read, ingest or admin (admin implies the others); repeat for several")
    create.add_argument("--name", help="who or what the key is for")
    actions.add_parser("list", help="list keys (prefix, scopes, name, state)")
    revoke = actions.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix", help="the key's prefix (`recsys apikey list` shows them)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.db import apikeys
    from recsys.db.engine import create_engine

    engine = create_engine(settings)
    try:
        if args.action == "create":
            key, row = apikeys.create_key(engine, args.scope, args.name)
            print(key)
            print(f"(prefix {row.prefix}, scopes {','.join(row.scopes)}: store it now, it is not shown again)",
                  flush=True)
        elif args.action == "list":
            for row in apikeys.list_keys(engine):
                state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
                print(f"{row.prefix}  {','.join(row.scopes):<20} {state:<22} {row.name or ''}")
        else:
            if not apikeys.revoke_key(engine, args.prefix):
                print(f"no active key with prefix {args.prefix}")
                return 1
            print(f"revoked {args.prefix} (processes that cached it stop accepting it within "
                  f"{settings.serving.api_key_cache_seconds:g} s)")
    finally:
        engine.dispose()
    return 0
