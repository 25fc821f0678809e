"""What the trigger replay reads (``recsys.replay``): the long sessions of a window and their players'
first play of each slot, as arrays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa


@dataclass(frozen=True)
class LongSessions:
    """Sessions of at least the threshold's continuous play, shape (s,) each; times in epoch seconds."""

    player_key: np.ndarray  # int64
    slot_key: np.ndarray  # int64
    started: np.ndarray  # float64


@dataclass(frozen=True)
class FirstPlays:
    """Each (player, slot) pair's first session start, epoch seconds; shape (p,) each, sorted by player."""

    player_key: np.ndarray
    slot_key: np.ndarray
    first: np.ndarray


def long_sessions(engine: sa.Engine, threshold_seconds: float, start: datetime, end: datetime) -> LongSessions:
    """Sessions with ``seconds >= threshold_seconds`` whose last event lies in ``[start, end)``."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT player_key, slot_key, extract(epoch FROM started_at) FROM play_sessions "
                "WHERE seconds >= :threshold AND last_event_at >= :start AND last_event_at < :end "
                "ORDER BY player_key, started_at"
            ),
            {"threshold": threshold_seconds, "start": start, "end": end},
        ).all()
    columns = list(zip(*rows, strict=True)) if rows else [(), (), ()]
    return LongSessions(
        np.asarray(columns[0], dtype=np.int64), np.asarray(columns[1], dtype=np.int64),
        np.asarray(columns[2], dtype=np.float64),
    )


def first_plays(engine: sa.Engine, player_keys: np.ndarray) -> FirstPlays:
    """When each of ``player_keys`` first started a session of each slot they ever played."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT player_key, slot_key, extract(epoch FROM min(started_at)) FROM play_sessions "
                "WHERE player_key = ANY(:players) GROUP BY player_key, slot_key ORDER BY player_key, 3"
            ),
            {"players": [int(k) for k in np.unique(player_keys)]},
        ).all()
    columns = list(zip(*rows, strict=True)) if rows else [(), (), ()]
    return FirstPlays(
        np.asarray(columns[0], dtype=np.int64), np.asarray(columns[1], dtype=np.int64),
        np.asarray(columns[2], dtype=np.float64),
    )
