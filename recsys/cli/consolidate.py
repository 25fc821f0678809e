"""``recsys consolidate``: play sessions -> interactions with score and normalized score."""

from __future__ import annotations

import argparse

from recsys.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "consolidate", help="turn play sessions into scored interactions (incremental, idempotent)"
    )
    parser.add_argument("--full", action="store_true", help="rebuild every player's interactions")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.db.consolidation import consolidate
    from recsys.db.engine import create_engine

    engine = create_engine(settings)
    print("consolidating play sessions ...", flush=True)
    result = consolidate(engine, settings.scoring, full=args.full)
    kind = "full rebuild" if result.full else "incremental"
    days = f"{result.first_day} .. {result.last_day}" if result.first_day else "no sessions"
    print(
        f"{kind}: {result.players:,} players, {result.interactions:,} interactions ({days}) "
        f"in {result.seconds:.1f} s; watermark {result.watermark.isoformat()}"
    )
    engine.dispose()
    return 0
