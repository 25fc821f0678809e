"""Benchmark ``recsys synth`` at casino scale: 10^6 players x 5,000 slots x 90 days by default.

Writes into a fresh database ``recsys_bench_synth`` on the server of ``RECSYS_DATABASE_URL``, or on an
embedded server in a temporary folder when it is unset. Prints the time of each stage, rows, rows/s,
the database size and the peak memory of this process. Nothing is asserted: figures, not tests.

    python bench/bench_synth.py                       # full scale, several minutes
    python bench/bench_synth.py --players 100000      # a quick run
    python bench/bench_synth.py --players 200000 --no-fast-load   # indexes kept during the load
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import sqlalchemy as sa

from recsys.db import migrations
from recsys.db.embedded import embedded_url
from recsys.db.engine import sqlalchemy_url, with_database
from recsys.db.synth_store import encode_sessions, write_casino
from recsys.synth import SynthConfig, generate_catalogue, generate_players

DATABASE = "recsys_bench_synth"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=1_000_000)
    parser.add_argument("--slots", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-players", type=int, default=50_000)
    parser.add_argument("--no-fast-load", action="store_true", help="keep indexes and foreign keys during COPY")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    args = parser.parse_args(argv)

    config = SynthConfig(players=args.players, slots=args.slots, days=args.days, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as folder:
        server = os.environ.get("RECSYS_DATABASE_URL") or embedded_url(Path(folder))
        admin = with_database(server, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DATABASE}")
        url = with_database(server, DATABASE)
        migrations.upgrade(url)
        engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
        try:
            _run(engine, config, args)
        finally:
            engine.dispose()
            if not args.keep:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    return 0


def _run(engine: sa.Engine, config: SynthConfig, args: argparse.Namespace) -> None:
    print(
        f"synth: {config.players:,} players x {config.slots:,} slots x {config.days} days, seed {config.seed}, "
        f"blocks of {args.block_players:,} players, fast load {'off' if args.no_fast_load else 'on'}",
        flush=True,
    )
    started = time.perf_counter()
    summary = write_casino(
        engine, config, block_players=args.block_players, progress=True, fast_load=not args.no_fast_load
    )
    wall = time.perf_counter() - started
    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
        table = conn.execute(sa.text("SELECT pg_total_relation_size('play_sessions')")).scalar_one()

    print(f"\n{'stage':<16}{'seconds':>10}{'share':>8}")
    for stage, seconds in summary.stages.items():
        print(f"{stage:<16}{seconds:>10.1f}{seconds / wall:>8.0%}")
    print(f"{'total':<16}{wall:>10.1f}")
    print(
        f"\nrows: {summary.players:,} players, {summary.slots:,} slots, {summary.sessions:,} sessions "
        f"({summary.sessions / summary.players:.1f} per player), {summary.rows:,} in all with the ground truth"
    )
    copy = summary.stages.get("copy sessions", 0.0)
    print(f"rows/s: {summary.rows / wall:,.0f} overall; sessions COPY {summary.sessions / max(copy, 1e-9):,.0f}/s")
    print(f"database: {size / 2**30:.2f} GiB, play_sessions with indexes {table / 2**30:.2f} GiB")
    _encode_figures(config, args.block_players)
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**10
    print(f"peak memory (ru_maxrss): this process {peak_self:,.0f} MiB, children {peak_children:,.0f} MiB")


def _encode_figures(config: SynthConfig, block_players: int) -> None:
    """Client-side costs of one block, without the database: generation and the CSV encoding."""
    catalogue = generate_catalogue(config)
    started = time.perf_counter()
    block = next(generate_players(config.replace(players=min(config.players, block_players)), catalogue))
    generated = time.perf_counter() - started
    started = time.perf_counter()
    data = encode_sessions(block.sessions)
    encoded = time.perf_counter() - started
    rows = len(block.sessions)
    print(
        f"one block of {len(block.players):,} players, {rows:,} sessions: generate {generated:.2f} s "
        f"({rows / generated:,.0f} sessions/s), encode {encoded:.2f} s ({rows / encoded:,.0f} rows/s, "
        f"{len(data) / rows:.0f} bytes a row)"
    )


if __name__ == "__main__":
    sys.exit(main())
