"""Non-neural baselines for the evaluation harness: popularity and item-kNN.

Both follow the scorer interface of ``recsys.evaluation`` (``score(user_idx, item_idx)``) and add
``score_all(user_idx)`` for full-catalogue ranking; item-kNN also answers ``similar_items``.
"""

from __future__ import annotations

import numpy as np

# Users per block when accumulating X^T X or scoring: a block of the dense 0/1 user x item matrix
# is users_per_block * n_items float32 (16 MB at 1024 x 4096).
USERS_PER_BLOCK = 1024


class Popularity:
    """Scores an item by how many distinct users interacted with it in training (same for every user).

    Parameters
    ----------
    user_idx, item_idx : np.ndarray, shape (n,)
        Training pairs (a repeated pair counts once).
    n_items : int
    """

    def __init__(self, user_idx: np.ndarray, item_idx: np.ndarray, n_items: int) -> None:
        keys = np.unique(np.asarray(user_idx, dtype=np.int64) * n_items + np.asarray(item_idx, dtype=np.int64))
        self.counts = np.bincount(keys % n_items, minlength=n_items).astype(np.float32)

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Item counts, shape (n,), float32."""
        return self.counts[np.asarray(item_idx, dtype=np.int64)]

    def score_all(self, user_idx: np.ndarray) -> np.ndarray:
        """Shape (len(user_idx), n_items)."""
        return np.broadcast_to(self.counts, (len(user_idx), self.counts.shape[0]))


class ItemKNN:
    """Item-based kNN on binary co-occurrence with cosine similarity (Sarwar et al. 2001).

    ``sim(i, j) = c_ij / (sqrt(n_i * n_j) + shrink)`` where ``c_ij`` counts users who have both items
    and ``n_i`` users who have i; each item keeps its ``neighbors`` most similar items N(i). A user's
    score for item i is the sum of ``sim(i, j)`` over the items j in N(i) that the user has in
    training (the item-kNN of Sarwar et al. 2001 as Ferrari Dacrema et al. 2019 run it).

    Parameters
    ----------
    user_idx, item_idx : np.ndarray, shape (n,)
        Training pairs (a repeated pair counts once).
    n_users, n_items : int
    neighbors : int or None
        Neighbours kept per item; None keeps all. ML-1M, NCF protocol (HR@10 / NDCG@10, shrink 10):
        10 -> 0.641/0.391, 30 -> 0.667/0.397, 50 -> 0.666/0.397, 200 -> 0.647/0.382, 1000 -> 0.563/0.332.
    shrink : float
        Added to the cosine denominator, so pairs seen by few users count less.
    """

    def __init__(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        n_users: int,
        n_items: int,
        neighbors: int | None = 50,
        shrink: float = 10.0,
    ) -> None:
        self.n_items = int(n_items)
        keys = np.unique(np.asarray(user_idx, dtype=np.int64) * n_items + np.asarray(item_idx, dtype=np.int64))
        self._users = keys // n_items
        self._items = keys % n_items
        self._indptr = np.searchsorted(self._users, np.arange(n_users + 1))
        cooc = np.zeros((n_items, n_items), dtype=np.float32)
        for start in range(0, n_users, USERS_PER_BLOCK):
            block = self._user_rows(np.arange(start, min(start + USERS_PER_BLOCK, n_users)))
            cooc += block.T @ block
        counts = np.diag(cooc).copy()
        norm = np.sqrt(counts)
        sim = cooc / (norm[:, None] * norm[None, :] + shrink + 1e-12)
        np.fill_diagonal(sim, 0.0)
        if neighbors is not None and neighbors < n_items - 1:
            # Keep each item's top neighbours (row i: items most similar to i).
            cut = np.argpartition(-sim, neighbors, axis=1)[:, neighbors:]
            np.put_along_axis(sim, cut, 0.0, axis=1)
        self.similarity = sim
        """Shape (n_items, n_items), float32: row i holds sim(i, .) over i's kept neighbours."""

    def _user_rows(self, users: np.ndarray) -> np.ndarray:
        """Dense 0/1 rows of the training matrix, shape (len(users), n_items), float32."""
        lo, hi = self._indptr[users], self._indptr[users + 1]
        lengths = hi - lo
        rows = np.repeat(np.arange(users.shape[0]), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out = np.zeros((users.shape[0], self.n_items), dtype=np.float32)
        out[rows, self._items[np.repeat(lo, lengths) + offsets]] = 1.0
        return out

    def score_all(self, user_idx: np.ndarray) -> np.ndarray:
        """Shape (len(user_idx), n_items), float32: ``X[u] @ S.T`` where row i of S holds sim(i, N(i))."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        return self._user_rows(user_idx) @ self.similarity.T

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Scores, shape (n,), float32, computing each distinct user's row once."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        item_idx = np.asarray(item_idx, dtype=np.int64)
        users, inverse = np.unique(user_idx, return_inverse=True)
        out = np.empty(user_idx.shape[0], dtype=np.float32)
        for start in range(0, users.shape[0], USERS_PER_BLOCK):
            block = self.score_all(users[start : start + USERS_PER_BLOCK])
            mask = (inverse >= start) & (inverse < start + USERS_PER_BLOCK)
            out[mask] = block[inverse[mask] - start, item_idx[mask]]
        return out

    def similar_items(self, item_idx: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items most similar to ``item_idx`` (itself excluded): ``(item_idx (k,), sim (k,))``."""
        row = self.similarity[item_idx]
        top = np.argpartition(-row, min(k, row.shape[0] - 1))[:k]
        top = top[np.argsort(-row[top], kind="stable")]
        top = top[top != item_idx][:k]
        return top, row[top]
