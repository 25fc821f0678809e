"""A stored model version scoring this run's players and slots: the gate compares the active version
with the new one on the same holdout cases through it."""

from __future__ import annotations

import numpy as np

from recsys.db import versions
from recsys.db.training_data import InteractionData


class VersionScorer:
    """A stored version scoring this run's ``(player_idx, slot_idx)`` pairs through the keys both share.

    Pairs whose player or slot the stored version does not know score ``-inf`` (ranked last).
    """

    def __init__(self, model, player_map: np.ndarray, slot_map: np.ndarray) -> None:
        self.model = model
        self.player_map = player_map  # this run's player_idx -> the version's row, or -1
        self.slot_map = slot_map

    @classmethod
    def load(cls, engine, version_id: int, data: InteractionData, player_idx: np.ndarray) -> VersionScorer:
        """Load the version's slot side and the rows of the players ``player_idx`` (this run's rows)."""
        from recsys.ncf.scoring import TrainedNCF

        state = versions.load_weights(engine, version_id)
        slots = versions.load_slot_vectors(engine, version_id)
        player_keys, player_towers = versions.load_player_vectors(engine, version_id, data.player_keys[player_idx])
        weights = dict(state["weights"])
        for tower, table in slots.towers.items():
            weights[f"item_{tower}.weight"] = table
        for tower, table in player_towers.items():
            weights[f"user_{tower}.weight"] = table
        model = TrainedNCF.from_state({"config": state["config"], "weights": weights})
        return cls(model, positions(data.player_keys, player_keys), positions(data.slot_keys, slots.slot_keys))

    def knows(self, player_idx: np.ndarray, slot_idx: np.ndarray) -> np.ndarray:
        return (self.player_map[player_idx] >= 0) & (self.slot_map[slot_idx] >= 0)

    def score(self, player_idx: np.ndarray, slot_idx: np.ndarray) -> np.ndarray:
        known = self.knows(player_idx, slot_idx)
        out = np.full(player_idx.shape[0], -np.inf, dtype=np.float32)
        out[known] = self.model.score(self.player_map[player_idx[known]], self.slot_map[slot_idx[known]])
        return out


def positions(keys: np.ndarray, stored_keys: np.ndarray) -> np.ndarray:
    """For each of ``keys``, its row in ``stored_keys`` (any order), or -1."""
    out = np.full(len(keys), -1, dtype=np.int64)
    if len(stored_keys) == 0:
        return out
    order = np.argsort(stored_keys)
    ordered = stored_keys[order]
    found = np.clip(np.searchsorted(ordered, keys), 0, len(ordered) - 1)
    hit = ordered[found] == keys
    out[hit] = order[found[hit]]
    return out
