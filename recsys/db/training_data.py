"""What training reads: the consolidated interactions of a window, as arrays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import sqlalchemy as sa

from recsys.db.bulk import read_frame


@dataclass(frozen=True)
class InteractionData:
    """Player x slot pairs of a window. ``player_keys[player_idx]`` is a pair's player, likewise slots.

    Attributes
    ----------
    player_keys : (n_players,) int64, sorted: the database key of each player row
    slot_keys : (n_slots,) int64, sorted: the database key of each slot row
    player_idx, slot_idx : (n_pairs,) int64
    weight : (n_pairs,) float32, the pair's best normalized score in the window, in [0, 1]
    first_day : (n_pairs,) int32, days since 1970-01-01 of the pair's first interaction
    """

    player_keys: np.ndarray
    slot_keys: np.ndarray
    player_idx: np.ndarray
    slot_idx: np.ndarray
    weight: np.ndarray
    first_day: np.ndarray
    start: date
    end: date

    @property
    def n_pairs(self) -> int:
        return int(self.player_idx.shape[0])


def latest_day(engine: sa.Engine) -> date | None:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT max(day) FROM interactions")).scalar()


def load_interactions(engine: sa.Engine, start: date, end: date) -> InteractionData:
    """Pairs with at least one interaction day in ``[start, end]``, aggregated over the window."""
    query = (
        "SELECT player_key, slot_key, (min(day) - DATE '1970-01-01') AS first_day, "
        "max(normalized_score) AS weight FROM interactions "
        f"WHERE day BETWEEN DATE '{start.isoformat()}' AND DATE '{end.isoformat()}' "
        "GROUP BY player_key, slot_key"
    )
    with engine.connect() as conn:
        frame = read_frame(
            conn, query, {"player_key": "int64", "slot_key": "int64", "first_day": "int32", "weight": "float32"}
        )
    player_keys, player_idx = np.unique(frame["player_key"].to_numpy(), return_inverse=True)
    slot_keys, slot_idx = np.unique(frame["slot_key"].to_numpy(), return_inverse=True)
    return InteractionData(
        player_keys=player_keys,
        slot_keys=slot_keys,
        player_idx=player_idx.astype(np.int64),
        slot_idx=slot_idx.astype(np.int64),
        weight=np.clip(frame["weight"].to_numpy(np.float32), 0.0, 1.0),
        first_day=frame["first_day"].to_numpy(np.int32),
        start=start,
        end=end,
    )
