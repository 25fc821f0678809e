"""Small hand-built rows for tests that need an exact, known state (bulk data comes from recsys.synth)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa


def add_player(conn: sa.Connection, player_id: str, **fields) -> int:
    fields = {"marketing_consent": True, **fields}
    columns = ", ".join(["player_id", *fields])
    values = ", ".join([":player_id", *(f":{k}" for k in fields)])
    return conn.execute(
        sa.text(f"INSERT INTO players ({columns}) VALUES ({values}) RETURNING id"), {"player_id": player_id, **fields}
    ).scalar_one()


def add_slot(conn: sa.Connection, slot_id: str, **fields) -> int:
    fields = {
        "name": slot_id.title(),
        "provider": "acme",
        "theme": "fruit",
        "volatility": "medium",
        "rtp": 96.0,
        "min_bet": 0.1,
        "max_bet": 100,
        **fields,
    }
    columns = ", ".join(["slot_id", *fields])
    values = ", ".join([":slot_id", *(f":{k}" for k in fields)])
    return conn.execute(
        sa.text(f"INSERT INTO slots ({columns}) VALUES ({values}) RETURNING id"), {"slot_id": slot_id, **fields}
    ).scalar_one()


def add_session(
    conn: sa.Connection,
    session_id: str,
    player_key: int,
    slot_key: int,
    started_at: datetime,
    seconds: float,
    *,
    spins: int = 0,
    total_bet: float = 0.0,
    total_win: float = 0.0,
    bonus: bool = False,
) -> int:
    ended_at = started_at + timedelta(seconds=seconds)
    return conn.execute(
        sa.text(
            "INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at, ended_at, "
            "seconds, spins, total_bet, total_win, bonus) VALUES (:sid, :p, :s, :start, :end, :end, :seconds, "
            ":spins, :bet, :win, :bonus) RETURNING id"
        ),
        {
            "sid": session_id,
            "p": player_key,
            "s": slot_key,
            "start": started_at,
            "end": ended_at,
            "seconds": seconds,
            "spins": spins,
            "bet": total_bet,
            "win": total_win,
            "bonus": bonus,
        },
    ).scalar_one()


def fast_pipeline(settings, data_dir, **changes):
    """Settings for a pipeline that trains in seconds (GMF, 8 epochs, one thread as the ``settings``
    fixture's: tests/conftest.py says why) behind a gate that lets any version through, baselines
    included (tests/test_worker.py tests the gate itself)."""
    fast = {
        "train_model": "gmf",
        "train_threads": 1,
        "train_epochs": 8,
        "train_lr": 0.01,
        "train_factors": 16,
        "holdout_days": 5,
        "gate_min_hr": 0.0,
        "gate_max_drop": 1.0,
        "gate_popularity_margin": 1.0,
        "gate_beat_itemknn": False,
        "gate_beat_ials": False,
        "offline_top_n": 10,
        "consolidate_lookback_seconds": 0,
    }
    return settings.replace(data_dir=data_dir, **{**fast, **changes})
