"""The item-kNN strategy of an experiment arm: each slot's nearest slots by co-occurrence.

Built off the request path when a snapshot needs it (an experiment with an ``itemknn`` arm), from
the player x slot pairs of a training window (``recsys.db.training_data.load_interactions``): the
item-kNN of ``recsys.baselines.ItemKNN`` (cosine of the players who played both slots, shrunk by
``SHRINK``), each slot keeping its ``NEIGHBOURS`` most similar slots. Serving reads it like a model's
neighbourhood: around the context slot, or around the player's recent slots (the sum of their
neighbours' similarities), and the rest of the policy (protection, markets, exclusions,
exploration, the provider cap) is the same code as in every arm.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from recsys.baselines import ItemKNN

NEIGHBOURS = 100
"""Neighbours kept per slot: the candidate pool's default (``RECSYS_CANDIDATE_POOL``)."""
SHRINK = 10.0
"""Added to the cosine's denominator (``ItemKNN``'s default): pairs seen by few players count less."""


@dataclass(frozen=True)
class ItemNeighbours:
    """Each window slot's neighbours, best first.

    ``keys[r]`` / ``similarity[r]``: shape (NEIGHBOURS,), the slot keys (int64, -1 pads) and
    similarities (float32, in [0, 1)) of slot ``slot_keys[r]``; ``start``/``end``: the window.
    """

    slot_keys: np.ndarray  # (n,) int64, ascending
    keys: np.ndarray  # (n, m) int64
    similarity: np.ndarray  # (n, m) float32
    start: date | None
    end: date | None

    @classmethod
    def build(cls, player_idx: np.ndarray, slot_idx: np.ndarray, slot_keys: np.ndarray, n_players: int,
              start: date | None, end: date | None, neighbours: int = NEIGHBOURS) -> ItemNeighbours:
        """From the window's pairs (indexes into its players and ``slot_keys``). Peak memory is the
        dense (n, n) float32 similarity of ``ItemKNN`` (100 MB at 5,000 slots), freed on return."""
        n = int(slot_keys.size)
        m = max(1, min(neighbours, n - 1))
        if n < 2:
            return cls(np.asarray(slot_keys, dtype=np.int64), np.full((n, 1), -1, dtype=np.int64),
                       np.zeros((n, 1), dtype=np.float32), start, end)
        sim = ItemKNN(player_idx, slot_idx, n_players, n, neighbors=None, shrink=SHRINK).similarity
        top = np.argpartition(-sim, m - 1, axis=1)[:, :m]
        top_sim = np.take_along_axis(sim, top, axis=1)
        order = np.argsort(-top_sim, axis=1, kind="stable")
        top, top_sim = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sim, order, axis=1)
        keys = np.asarray(slot_keys, dtype=np.int64)[top]
        keys[top_sim <= 0] = -1  # never played together: no neighbour
        return cls(np.asarray(slot_keys, dtype=np.int64), keys, top_sim.astype(np.float32), start, end)

    def _rows(self, slot_keys: np.ndarray) -> np.ndarray:
        """Row of each key, -1 for a slot outside the window."""
        keys = np.asarray(slot_keys, dtype=np.int64)
        if self.slot_keys.size == 0:
            return np.full(keys.shape, -1, dtype=np.int64)
        at = np.minimum(self.slot_keys.searchsorted(keys), self.slot_keys.size - 1)
        return np.where(self.slot_keys[at] == keys, at, -1)

    def around(
        self, context_key: int | None, recent_keys: np.ndarray, size: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(keys (s,) int64, similarity (s,) float32)``, best first, at most ``size``: the context
        slot's neighbours, or (no context, or one outside the window or without neighbours) the
        recent slots' neighbours by summed similarity (capped at 1); None when neither has any."""
        if context_key is not None:
            (row,) = self._rows(np.array([context_key]))
            found = self.keys[row] >= 0 if row >= 0 else np.zeros(0, dtype=bool)
            if found.any():
                return self.keys[row][found][:size], self.similarity[row][found][:size]
        rows = self._rows(recent_keys)
        rows = rows[rows >= 0]
        if rows.size == 0:
            return None
        keys, sims = self.keys[rows].ravel(), self.similarity[rows].ravel()
        found = keys >= 0
        keys, sims = keys[found], sims[found]
        if keys.size == 0:
            return None
        unique, inverse = np.unique(keys, return_inverse=True)
        summed = np.minimum(np.bincount(inverse, weights=sims), 1.0)
        order = np.lexsort((unique, -summed))[:size]
        return unique[order], summed[order].astype(np.float32)
