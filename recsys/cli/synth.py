"""``recsys synth``: write a realistic, deterministic synthetic casino into the database."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta

from recsys.settings import Settings
from recsys.synth import SynthConfig

DEFAULTS = SynthConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic casino (slots, players, play sessions) into an empty database",
        description="Generate slots, players and play sessions with known taste clusters (ground truth in "
        "synth_player_clusters / synth_slot_clusters) and write them in one transaction. The same "
        "parameters give the same data; see docs/synthetic-data.md.",
    )
    parser.add_argument("--players", type=int, default=DEFAULTS.players, help="players (default %(default)s)")
    parser.add_argument("--slots", type=int, default=DEFAULTS.slots, help="slots (default %(default)s)")
    parser.add_argument("--days", type=int, default=DEFAULTS.days, help="days of play history (default %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed (default %(default)s)")
    parser.add_argument(
        "--start",
        type=_day,
        default=None,
        help="first day of the history, YYYY-MM-DD (default: today - DAYS, so the history ends today)",
    )
    parser.add_argument("--clusters", type=int, default=DEFAULTS.clusters, help="taste clusters (default %(default)s)")
    parser.add_argument("--reset", action="store_true", help="empty the casino's tables first (API keys stay)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.db.engine import create_engine
    from recsys.db.synth_store import write_casino

    start = args.start or datetime.now(UTC).date() - timedelta(days=args.days)
    config = SynthConfig(
        players=args.players, slots=args.slots, days=args.days, seed=args.seed, start=start, clusters=args.clusters
    ).validate()
    print(
        f"synthetic casino: {config.players:,} players, {config.slots:,} slots, {config.days} days from {start} "
        f"(seed {config.seed}, {config.clusters} clusters)",
        flush=True,
    )
    engine = create_engine(settings)
    try:
        summary = write_casino(engine, config, reset=args.reset, progress=not args.no_progress)
    finally:
        engine.dispose()
    seconds = sum(summary.stages.values())
    print(
        f"wrote {summary.players:,} players, {summary.slots:,} slots, {summary.sessions:,} sessions "
        f"in {seconds:.1f} s ({summary.rows / max(seconds, 1e-9):,.0f} rows/s); "
        f"reproduce with --seed {config.seed} --start {start}"
    )
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc
