"""Writing the synthetic casino: exact rows, keys 1..N, sequences advanced, all or nothing."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from recsys.cli import main
from recsys.db import migrations
from recsys.db.synth_store import CasinoNotEmptyError, encode_sessions, timestamp_text, write_casino
from recsys.synth import PLAYERS_PER_STREAM, SynthConfig, generate_casino

CONFIG = SynthConfig(players=2_000, slots=200, days=30, seed=11, start=date(2025, 2, 1))


def _count(conn: sa.Connection, table: str) -> int:
    return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def _keys(conn: sa.Connection, table: str, column: str = "id") -> tuple[int, int, int]:
    return tuple(conn.execute(sa.text(f"SELECT count(*), min({column}), max({column}) FROM {table}")).one())


def test_writes_the_generated_casino_with_keys_from_one(db):
    summary = write_casino(db, CONFIG)
    casino = generate_casino(CONFIG)
    assert (summary.players, summary.slots, summary.sessions) == (2_000, 200, len(casino.sessions))
    with db.connect() as conn:
        assert _keys(conn, "players") == (2_000, 1, 2_000)
        assert _keys(conn, "slots") == (200, 1, 200)
        assert _keys(conn, "play_sessions") == (summary.sessions, 1, summary.sessions)
        assert _keys(conn, "synth_player_clusters", "player_key") == (2_000, 1, 2_000)
        assert _keys(conn, "synth_slot_clusters", "slot_key") == (200, 1, 200)
        stored = pd.read_sql(sa.text("SELECT * FROM play_sessions ORDER BY id"), conn)
        clusters = pd.read_sql(sa.text("SELECT cluster FROM synth_player_clusters ORDER BY player_key"), conn)
        slots = pd.read_sql(sa.text("SELECT id, slot_id, rtp, markets, release_date FROM slots ORDER BY id"), conn)
        players = pd.read_sql(sa.text("SELECT * FROM players ORDER BY id"), conn)

    expected = casino.sessions
    for column in ("session_id", "player_key", "slot_key", "spins", "bonus", "seconds"):
        assert stored[column].tolist() == expected[column].tolist(), column
    for column in ("started_at", "last_event_at", "ended_at"):
        assert (stored[column] == expected[column]).all(), column
    for column in ("total_bet", "total_win"):
        assert np.array_equal(stored[column].astype(float).to_numpy(), expected[column].to_numpy()), column
    assert clusters["cluster"].tolist() == casino.player_clusters["cluster"].tolist()
    assert slots["slot_id"].tolist() == casino.slots["slot_id"].tolist()
    assert slots["rtp"].astype(float).tolist() == casino.slots["rtp"].tolist()
    assert slots["release_date"].tolist() == casino.slots["release_date"].tolist()
    assert [None if m is None else list(m) for m in slots["markets"]] == casino.slots["markets"].tolist()
    assert players["self_excluded_until"].notna().sum() == casino.players["self_excluded_until"].notna().sum()
    assert (players["registered_at"] == casino.players["registered_at"]).all()


def test_sequences_continue_after_the_explicit_keys(db):
    summary = write_casino(db, CONFIG)
    with db.begin() as conn:
        player = conn.execute(sa.text("INSERT INTO players (player_id) VALUES ('late') RETURNING id")).scalar_one()
        slot = conn.execute(
            sa.text(
                "INSERT INTO slots (slot_id, name, provider, theme, volatility, rtp, min_bet, max_bet) "
                "VALUES ('late', 'Late', 'acme', 'fruit', 'low', 96, 0.1, 10) RETURNING id"
            )
        ).scalar_one()
        session = conn.execute(
            sa.text(
                "INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at) "
                "VALUES ('late', :p, :s, now(), now()) RETURNING id"
            ),
            {"p": player, "s": slot},
        ).scalar_one()
    assert (player, slot, session) == (2_001, 201, summary.sessions + 1)


def test_indexes_and_foreign_keys_are_restored(db, database_url):
    write_casino(db, CONFIG)
    migrations.check(database_url)  # the schema still matches the migrations, index for index
    with db.connect() as conn, pytest.raises(sa.exc.IntegrityError), conn.begin():
        conn.execute(
            sa.text(
                "INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at) "
                "VALUES ('orphan', 999999, 1, now(), now())"
            )
        )


def test_a_second_run_refuses_and_writes_nothing(db):
    first = write_casino(db, CONFIG)
    with pytest.raises(CasinoNotEmptyError, match="--reset") as raised:
        write_casino(db, CONFIG.replace(seed=12, players=100))
    assert (raised.value.players, raised.value.slots) == (2_000, 200)
    with db.connect() as conn:
        assert _count(conn, "players") == 2_000
        assert _count(conn, "play_sessions") == first.sessions


def test_reset_replaces_the_casino(db):
    write_casino(db, CONFIG)
    with db.begin() as conn:
        conn.execute(sa.text("INSERT INTO api_keys (prefix, key_hash, scopes) VALUES ('k1', 'h', '{read}')"))
    smaller = CONFIG.replace(players=300, slots=40, seed=12)
    summary = write_casino(db, smaller, reset=True)
    with db.connect() as conn:
        assert _keys(conn, "players") == (300, 1, 300)
        assert _keys(conn, "slots") == (40, 1, 40)
        assert _keys(conn, "play_sessions") == (summary.sessions, 1, summary.sessions)
        assert _count(conn, "synth_player_clusters") == 300
        assert _count(conn, "api_keys") == 1
        first = conn.execute(sa.text("SELECT session_id FROM play_sessions WHERE id = 1")).scalar_one()
    assert first == generate_casino(smaller).sessions["session_id"].iloc[0]


def test_a_failure_mid_way_leaves_nothing_behind(db, database_url):
    config = CONFIG.replace(players=PLAYERS_PER_STREAM + 100, slots=50, days=3)

    def crash(players: int, sessions: int) -> None:
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        write_casino(db, config, block_players=PLAYERS_PER_STREAM, on_block=crash)
    with db.connect() as conn:
        for table in ("players", "slots", "play_sessions", "synth_slot_clusters"):
            assert _count(conn, table) == 0, table
    migrations.check(database_url)  # the dropped indexes came back with the rollback


def test_cli_writes_refuses_and_resets(db, settings, monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_DATABASE_URL", settings.database.url)
    args = ["synth", "--players", "300", "--slots", "30", "--days", "7", "--seed", "3", "--start", "2025-01-01"]
    assert main([*args, "--no-progress"]) == 0
    assert "wrote 300 players, 30 slots" in capsys.readouterr().out

    assert main([*args, "--no-progress"]) == 2
    assert "--reset" in capsys.readouterr().err

    assert main([*args, "--players", "200", "--reset", "--no-progress"]) == 0
    with db.connect() as conn:
        assert _count(conn, "players") == 200

    assert main(["synth", "--players", "0", "--no-progress", "--reset"]) == 2
    assert "players" in capsys.readouterr().err


def test_timestamp_text_matches_numpy():
    seconds = np.array([0, 951_782_400, 951_868_799, 1_709_164_800, 4_102_444_799, -86_400 * 365 * 50, 1_735_689_601])
    text = timestamp_text(seconds).view("S22").ravel().astype(str)
    expected = [s.replace("T", " ") + "+00" for s in np.datetime_as_string(seconds.astype("datetime64[s]"))]
    assert text.tolist() == expected


def test_encoded_sessions_are_fixed_width_csv():
    sessions = generate_casino(CONFIG.replace(players=50, slots=20, days=3)).sessions
    lines = encode_sessions(sessions).decode().splitlines()
    assert len(lines) == len(sessions) and len({len(line) for line in lines}) == 1
    first = lines[0].split(",")
    assert first[1] == sessions["session_id"].iloc[0]
    assert float(first[9]) == sessions["total_bet"].iloc[0]
    assert first[11] in ("t", "f")
