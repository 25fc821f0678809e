"""``recsys import players|slots|sessions PATH``: bulk import of CSV or Parquet (docs/import-format.md).

The file is read and checked completely before the database is touched; then it is written in one
transaction, so a bad file writes nothing. (The module is not called ``import``: that is a keyword.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from recsys.importing import KINDS
from recsys.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import players, slots or play sessions from a CSV or Parquet file",
        description="Insert new rows and update changed ones (by player_id, slot_id or session_id); "
        "rows equal to what is stored are left untouched. Import players and slots before sessions. "
        "Format: docs/import-format.md.",
    )
    parser.add_argument("kind", choices=KINDS, help="what the file holds")
    parser.add_argument("path", type=Path, help="a .csv, .csv.gz or .parquet file")
    parser.add_argument(
        "--offline", action="store_true",
        help="nothing is serving: a large sessions file may drop and rebuild indexes (an exclusive lock; faster)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys import importing
    from recsys.db.engine import create_engine
    from recsys.db.imports import import_frame

    started = time.perf_counter()
    source = str(args.path)
    frame = importing.load_file(args.path, args.kind)
    engine = create_engine(settings)
    try:
        result = import_frame(engine, args.kind, frame, source=source, offline=args.offline)
    finally:
        engine.dispose()
    seconds = time.perf_counter() - started
    print(
        f"{source}: {result.rows:,} {args.kind} read: {result.inserted:,} inserted, {result.updated:,} updated, "
        f"{result.unchanged:,} unchanged in {seconds:.1f} s ({result.rows / seconds:,.0f} rows/s)"
    )
    return 0
