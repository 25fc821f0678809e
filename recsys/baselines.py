"""Non-neural baselines for the evaluation harness: popularity, item-kNN, EASE and iALS.

All follow the scorer interface of ``recsys.evaluation`` (``score(user_idx, item_idx)``) and add
``score_all(user_idx)`` for full-catalogue ranking; item-kNN and EASE also answer ``similar_items``.

Item-kNN and EASE are item-to-item models: a user's score for item i sums a weight ``W[j, i]`` over
the items j the user has in training. Both start from the item co-occurrence counts ``XᵀX`` of the
binary user x item matrix X, built from each user's item list (:meth:`TrainItems.gram`), never from
a dense X: at casino scale (10^6 players, a few slots each) that is ~10^8 pair counts instead of a
10^6 x 5,000 matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Users per block when scoring whole catalogue rows: a block of the dense 0/1 user x item matrix
# is users_per_block * n_items float32 (16 MB at 1024 x 4096).
USERS_PER_BLOCK = 1024

# X's Gram matrix is counted pair by pair (``sum_u |I_u|^2`` cells) unless a dense block product
# (``2 n_users n_items^2`` float32 flops) is cheaper: on 2 cores a counted cell cost about 1,000
# flops (ML-1M, 3.9e8 cells: 14-18 s counted, 5.4 s as dense blocks; a casino of 10^6 players x
# 5,000 slots with a few slots each is the other way round by orders of magnitude).
FLOPS_PER_COUNTED_CELL = 1000

# (j, i) cells gathered at once when scoring pairs or counting co-occurrences: bounds the index
# arrays of one step to a few hundred MB whatever the users' history lengths.
CELLS_PER_STEP = 1 << 24


class TrainItems:
    """Each user's distinct training items, as sorted lists (the binary matrix X in CSR form).

    Parameters
    ----------
    user_idx, item_idx : np.ndarray, shape (n,)
        Training pairs (a repeated pair counts once).
    n_users, n_items : int
    """

    def __init__(self, user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int) -> None:
        self.n_users, self.n_items = int(n_users), int(n_items)
        keys = np.unique(np.asarray(user_idx, dtype=np.int64) * n_items + np.asarray(item_idx, dtype=np.int64))
        self.items = keys % n_items
        """Shape (nnz,), int64: the items of user 0, then of user 1, ..."""
        self.indptr = np.searchsorted(keys // n_items, np.arange(n_users + 1))
        """Shape (n_users + 1,): user u's items are ``items[indptr[u]:indptr[u + 1]]``."""

    def rows(self, users: np.ndarray) -> np.ndarray:
        """Dense 0/1 rows of X, shape (len(users), n_items), float32."""
        lo, hi = self.indptr[users], self.indptr[users + 1]
        lengths = hi - lo
        rows = np.repeat(np.arange(users.shape[0]), lengths)
        out = np.zeros((users.shape[0], self.n_items), dtype=np.float32)
        out[rows, self.items[_ranges(lo, lengths)]] = 1.0
        return out

    def gram(self) -> np.ndarray:
        """``XᵀX``, shape (n_items, n_items), float64: cell (i, j) counts the users who have both i and j
        (the diagonal: the users who have i).

        Counts every user's item pairs (``sum_u |I_u|^2`` cells), a chunk of users at a time, or sums
        ``block.T @ block`` over dense blocks of X when users have long histories (see
        ``FLOPS_PER_COUNTED_CELL``).
        """
        n = self.n_items
        lengths = np.diff(self.indptr)
        cost = np.cumsum(lengths.astype(np.int64) ** 2)
        if 2.0 * self.n_users * n * n < FLOPS_PER_COUNTED_CELL * float(cost[-1] if cost.size else 0):
            return self._dense_gram()
        counts = np.zeros(n * n, dtype=np.int64)
        start = 0
        while start < self.n_users:
            # Users up to CELLS_PER_STEP cells (at least one user, however long its list).
            done = cost[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(cost, done + CELLS_PER_STEP, side="right")))
            lo, hi = self.indptr[start], self.indptr[stop]
            items = self.items[lo:hi]
            per_entry = np.repeat(lengths[start:stop], lengths[start:stop])  # its user's list length
            first = np.repeat(self.indptr[start:stop] - lo, lengths[start:stop])  # its user's list start
            left = np.repeat(items, per_entry)
            right = items[_ranges(first, per_entry)]
            counts += np.bincount(left * n + right, minlength=n * n)
            start = stop
        return counts.reshape(n, n).astype(np.float64)

    def _dense_gram(self) -> np.ndarray:
        gram = np.zeros((self.n_items, self.n_items), dtype=np.float32)  # counts < 2^24 stay exact
        for start in range(0, self.n_users, USERS_PER_BLOCK):
            block = self.rows(np.arange(start, min(start + USERS_PER_BLOCK, self.n_users)))
            gram += block.T @ block
        return gram.astype(np.float64)

    def linear_scores(self, weights: np.ndarray, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """``sum_{j in I_u} weights[j, i]`` for each pair ``(u, i)``, shape (n,), float32.

        Gathers only the cells it needs, so a pair costs its user's history length, not ``n_items``.
        """
        user_idx = np.asarray(user_idx, dtype=np.int64)
        item_idx = np.asarray(item_idx, dtype=np.int64)
        lengths = self.indptr[user_idx + 1] - self.indptr[user_idx]
        ends = np.cumsum(lengths)
        out = np.empty(user_idx.shape[0], dtype=np.float32)
        start = 0
        while start < user_idx.shape[0]:
            done = ends[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, done + CELLS_PER_STEP, side="right")))
            part = lengths[start:stop]
            pair = np.repeat(np.arange(stop - start), part)
            history = self.items[_ranges(self.indptr[user_idx[start:stop]], part)]
            cells = weights[history, item_idx[start:stop][pair]]
            out[start:stop] = np.bincount(pair, weights=cells, minlength=stop - start)
            start = stop
        return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorized."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + offsets


def _top_items(row: np.ndarray, item_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k highest cells of ``row`` but ``item_idx``, best first: ``(item_idx (k,), value (k,))``."""
    top = np.argpartition(-row, min(k, row.shape[0] - 1))[: k + 1]
    top = top[np.argsort(-row[top], kind="stable")]
    top = top[top != item_idx][:k]
    return top, row[top]


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
        self._train = TrainItems(user_idx, item_idx, n_users, n_items)
        cooc = self._train.gram().astype(np.float32)
        counts = np.diag(cooc).copy()
        norm = np.sqrt(counts)
        sim = cooc / (norm[:, None] * norm[None, :] + shrink + 1e-12)
        del cooc
        np.fill_diagonal(sim, 0.0)
        if neighbors is not None and neighbors < n_items - 1:
            # Keep each item's top neighbours (row i: items most similar to i).
            cut = np.argpartition(-sim, neighbors, axis=1)[:, neighbors:]
            np.put_along_axis(sim, cut, 0.0, axis=1)
        self.similarity = sim
        """Shape (n_items, n_items), float32: row i holds sim(i, .) over i's kept neighbours."""

    def score_all(self, user_idx: np.ndarray) -> np.ndarray:
        """Shape (len(user_idx), n_items), float32: ``X[u] @ S.T`` where row i of S holds sim(i, N(i))."""
        return self._train.rows(np.asarray(user_idx, dtype=np.int64)) @ self.similarity.T

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Scores, shape (n,), float32."""
        return self._train.linear_scores(self.similarity.T, user_idx, item_idx)

    def similar_items(self, item_idx: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items most similar to ``item_idx`` (itself excluded): ``(item_idx (k,), sim (k,))``."""
        return _top_items(self.similarity[item_idx], item_idx, k)



# The co-occurrence vectors the worker can index (kind ``cooc``): ``alpha`` and the bands
# ``(weight, dim, power)`` of :func:`spectral_item_vectors`. One band keeps 256 directions with
# their square-root eigenvalues (fine detail: MovieLens-1M's next item), the other the 32 leading
# ones weighted by ``w^1.5`` (the broad groups: a casino's taste clusters). Measured on both in
# bench/bench_similarity.py (docs/training.md): 0.1194 / 0.1511 (among unseen) on the ML-1M proxy
# against item-kNN's 0.1170 / 0.1507, 0.877 / 0.831 of a slot's neighbours in its cluster on the
# two demo casinos against item-kNN's 0.799 / 0.744.
SPECTRAL_ALPHA = 0.3
SPECTRAL_BANDS = ((0.6, 256, 0.5), (0.4, 32, 1.5))


def spectral_item_vectors(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    n_users: int,
    n_items: int,
    bands: Sequence[tuple[float, int, float]] = SPECTRAL_BANDS,
    alpha: float = SPECTRAL_ALPHA,
) -> np.ndarray:
    """Unit-norm item vectors from the leading eigenvectors of the normalised co-occurrence matrix.

    ``S = D^-alpha XᵀX D^-alpha`` with ``D`` the diagonal of ``XᵀX`` (users per item; an item no
    user has counts as 1) is symmetric positive semi-definite. A band ``(weight, dim, power)`` takes
    its ``dim`` largest eigenpairs ``S v = w v`` as the item vectors ``V w^power``, L2-normalised;
    the bands, each scaled by ``sqrt(weight)``, are concatenated and normalised, so the inner
    product (what FAISS ``IndexFlatIP`` searches) is the weighted mean of the bands' cosines.
    With one band, ``alpha = 0.5``, ``power = 0.5`` and full rank that cosine is exactly item-kNN's
    (:class:`ItemKNN` with shrink 0): every row of ``V w^0.5`` then has norm ``S_ii = 1``. Fewer
    dimensions smooth it (PureSVD-like); a larger ``power`` weights the leading directions more.

    Parameters
    ----------
    user_idx, item_idx : np.ndarray, shape (n,)
        Training pairs (a repeated pair counts once).
    n_users, n_items : int
    bands : sequence of (weight, dim, power)
        ``dim`` is capped at ``n_items``.
    alpha : float

    Returns
    -------
    np.ndarray, shape (n_items, sum of the bands' dims + 1), float32, rows of norm 1; the last
        coordinate is 1 for an item no user has (cosine 0 with every other item), else 0
    """
    gram = TrainItems(user_idx, item_idx, n_users, n_items).gram()
    counts = np.diag(gram).copy()
    scale = np.where(counts > 0, counts, 1.0) ** -alpha
    values, vectors = np.linalg.eigh(gram * scale[:, None] * scale[None, :])
    del gram
    order = np.argsort(-values, kind="stable")
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    parts = [np.sqrt(weight) * _unit_rows(vectors[:, :dim] * values[:dim] ** power) for weight, dim, power in bands]
    # A last coordinate, 1 for an item no user has and 0 otherwise: such an item has no co-occurrence
    # to place it by, so it gets cosine 0 with every other item instead of a zero vector (whose
    # cosine is undefined, NaN in pgvector) or a guessed direction that would crowd others' neighbours.
    unplayed = (counts == 0)[:, None]
    out = np.concatenate([np.where(unplayed, 0.0, np.concatenate(parts, axis=1)), unplayed], axis=1)
    return _unit_rows(out).astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)

# EASE's L2 penalty when no validation cases can choose it (the demo casino's choice; see
# EASE_L2_GRID for what the search picked on larger casinos).
EASE_DEFAULT_L2 = 500.0
# Penalties tried, walked from the largest down (:func:`ease_on_grid`'s ``patience``). Validation
# HR@10 was single-peaked in l2 wherever measured, and the best grows with the casino: 500 at
# 20,000 players, 3,000 at 200,000, 30,000 (then the top of the grid) at 10^6.
EASE_L2_GRID = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0, 300000.0)
EASE_PATIENCE = 2


class EASE:
    """EASE: an item-item linear model with a closed-form solution (Steck 2019, "Embarrassingly Shallow
    Autoencoders for Sparse Data").

    ``B = argmin |X - XB|² + l2 |B|²`` subject to ``diag(B) = 0`` is ``B = I - P diagMat(1 / diag(P))``
    with ``P = (XᵀX + l2 I)⁻¹``; a user's scores are ``X[u] @ B``. X is binary (a repeated pair counts
    once). The inverse costs O(n_items³) once (5,000 slots: a 5,000 x 5,000 float64 matrix, 200 MB);
    ``XᵀX`` comes from the users' item lists.

    Parameters
    ----------
    user_idx, item_idx : np.ndarray, shape (n,)
        Training pairs.
    n_users, n_items : int
    l2 : float
        The L2 penalty λ (> 0); :func:`ease_on_grid` picks it on validation cases.
    """

    def __init__(
        self, user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int, l2: float = EASE_DEFAULT_L2
    ) -> None:
        train = TrainItems(user_idx, item_idx, n_users, n_items)
        self._set(train, EASESolver(train).weights(l2), l2)

    @classmethod
    def _from(cls, train: TrainItems, weights: np.ndarray, l2: float) -> EASE:
        model = cls.__new__(cls)
        model._set(train, weights, l2)
        return model

    def _set(self, train: TrainItems, weights: np.ndarray, l2: float) -> None:
        self._train = train
        self.n_items = train.n_items
        self.l2 = float(l2)
        self.weights = weights
        """B, shape (n_items, n_items), float32: ``B[j, i]`` is what having item j adds to item i's score."""

    def score_all(self, user_idx: np.ndarray) -> np.ndarray:
        """Shape (len(user_idx), n_items), float32: ``X[u] @ B``."""
        return self._train.rows(np.asarray(user_idx, dtype=np.int64)) @ self.weights

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Scores, shape (n,), float32."""
        return self._train.linear_scores(self.weights, user_idx, item_idx)

    def similar_items(self, item_idx: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items that having ``item_idx`` raises most (row ``B[item_idx]``): ``(item_idx (k,), B (k,))``."""
        return _top_items(self.weights[item_idx], item_idx, k)


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's B from ``gram = XᵀX`` (float64, shape (n, n)): ``B = I - P diagMat(1 / diag(P))``,
    ``P = (gram + l2 I)⁻¹``; returns float32 with a zero diagonal. ``gram`` is left as it was."""
    if not l2 > 0:
        raise ValueError(f"EASE's l2 must be positive, not {l2}")
    diagonal = np.arange(gram.shape[0])
    gram[diagonal, diagonal] += l2  # in place (and back below): no second n x n copy
    try:
        p = np.linalg.inv(gram)
    finally:
        gram[diagonal, diagonal] -= l2
    p /= -p.diagonal().copy()[None, :]  # off the diagonal, B_ij = -P_ij / P_jj
    p[diagonal, diagonal] = 0.0
    return p.astype(np.float32)


def ease_weights_dual(rows: np.ndarray, user_gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's B from the users' rows of X (``rows``, float64, shape (m, n)) and ``user_gram = X Xᵀ``
    (m, m), for when users are fewer than items: the same B as :func:`ease_weights`, through
    Woodbury's identity ``(XᵀX + l2 I)⁻¹ = (I - A) / l2`` with ``A = Xᵀ (X Xᵀ + l2 I)⁻¹ X``, so that
    ``B_ij = A_ij / (1 - A_jj)`` off the diagonal. An m x m inverse and an (n x m) @ (m x n) product
    replace the n x n inverse (Last.fm: 1,892 users, 17,632 items). Returns float32, zero diagonal."""
    if not l2 > 0:
        raise ValueError(f"EASE's l2 must be positive, not {l2}")
    m, n = rows.shape
    users = np.arange(m)
    user_gram[users, users] += l2
    try:
        mx = np.linalg.solve(user_gram, rows)  # (X Xᵀ + l2 I)⁻¹ X, shape (m, n)
    finally:
        user_gram[users, users] -= l2
    a_diagonal = np.einsum("ij,ij->j", rows, mx)
    scale = 1.0 / (1.0 - a_diagonal)  # 1 - A_jj = l2 P_jj > 0
    out = np.empty((n, n), dtype=np.float32)
    step = max(1, (1 << 25) // max(n, 1))  # column blocks of ~256 MB in float64
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[:, start:stop] = (rows.T @ mx[:, start:stop]) * scale[None, start:stop]
    out[np.arange(n), np.arange(n)] = 0.0
    return out


class EASESolver:
    """What EASE's B is computed from, once for every l2: ``XᵀX`` (:func:`ease_weights`), or, when
    fewer users have items than there are items, those users' rows of X and ``X Xᵀ``
    (:func:`ease_weights_dual`, the same B for less work)."""

    def __init__(self, train: TrainItems) -> None:
        active = np.flatnonzero(np.diff(train.indptr) > 0)
        self.dual = active.size < train.n_items
        if self.dual:
            self.rows = train.rows(active).astype(np.float64)
            self.user_gram = self.rows @ self.rows.T
        else:
            self.gram = train.gram()

    def weights(self, l2: float) -> np.ndarray:
        """B for penalty ``l2``, shape (n_items, n_items), float32."""
        if self.dual:
            return ease_weights_dual(self.rows, self.user_gram, l2)
        return ease_weights(self.gram, l2)


def ease_on_grid(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    n_users: int,
    n_items: int,
    judge: Callable[[EASE], Any],
    grid: Sequence[float] = tuple(reversed(EASE_L2_GRID)),
    patience: int | None = EASE_PATIENCE,
) -> tuple[EASE, dict[float, Any]]:
    """Fit EASE for the l2 values of ``grid``, in its order (one ``XᵀX``, one inverse each), and keep
    the best.

    ``judge(model)`` returns a comparable figure, higher is better (e.g. ``(HR@10, NDCG@10)`` on
    validation cases); the first of equal figures wins. With ``patience``, the walk stops after that
    many values in a row that do not beat the best so far: each inverse costs O(n_items³) (about
    17 s at 5,000 slots on 2 busy cores), and walking down from the largest penalty stops early on
    the large casinos whose best penalty is large. Returns the kept model and each tried l2's figure.
    """
    if not grid:
        raise ValueError("an empty grid of l2 values")
    train = TrainItems(user_idx, item_idx, n_users, n_items)
    solver = EASESolver(train)
    best: EASE | None = None
    figures: dict[float, Any] = {}
    since_best = 0
    for l2 in grid:
        model = EASE._from(train, solver.weights(l2), l2)
        figures[float(l2)] = judge(model)
        if best is None or figures[float(l2)] > figures[best.l2]:
            best, since_best = model, 0
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                break
        del model
    assert best is not None
    return best, figures


# iALS (implicit ALS, Hu, Koren and Volinsky 2008, as benfred/implicit fits it): the settings tried on
# the validation cases, factors x regularisation, and the fixed rest. A binary matrix with implicit's
# confidence ``1 + alpha`` on a played pair; 15 sweeps, implicit's default. On the demo casino (2.5
# slots a player) a grid of 32-128 factors and 0.01-1 chose its corner, 32 factors at 1.0, both
# times: the grid reaches past it on both sides.
IALS_FACTORS_GRID = (16, 32, 64, 128)
IALS_REG_GRID = (0.1, 1.0, 10.0, 100.0)
IALS_DEFAULT = (32, 1.0)
IALS_ITERATIONS = 15
IALS_ALPHA = 1.0


class IALS:
    """Implicit ALS from the ``implicit`` package (CPU), fitted on the binary player x slot matrix.

    A user's score for an item is the dot product of their factors. Fitting is deterministic for a
    ``seed`` (implicit's ``random_state``) up to its threads' float summation order.

    Parameters
    ----------
    user_idx, item_idx : np.ndarray, shape (n,)
        Training pairs (a repeated pair counts once).
    n_users, n_items : int
    factors : int
    reg : float
        The L2 regularisation of both factor tables.
    threads : int
        implicit's ``num_threads`` (0: every core).
    """

    def __init__(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        n_users: int,
        n_items: int,
        factors: int = IALS_DEFAULT[0],
        reg: float = IALS_DEFAULT[1],
        *,
        iterations: int = IALS_ITERATIONS,
        seed: int = 0,
        threads: int = 0,
    ) -> None:
        import scipy.sparse as sp
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        keys = np.unique(np.asarray(user_idx, dtype=np.int64) * n_items + np.asarray(item_idx, dtype=np.int64))
        matrix = sp.csr_matrix(
            (np.full(keys.size, IALS_ALPHA, dtype=np.float32), (keys // n_items, keys % n_items)),
            shape=(n_users, n_items),
        )
        self.factors, self.reg = int(factors), float(reg)
        # implicit parallelises itself; a multi-threaded BLAS under it only oversubscribes the cores
        # (and implicit warns about it when the model is made).
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=self.factors, regularization=self.reg, alpha=1.0, iterations=iterations,
                calculate_training_loss=False, num_threads=threads, random_state=seed,
            )
            model.fit(matrix, show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        """Shape (n_users, factors)."""
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        """Shape (n_items, factors)."""

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Scores, shape (n,), float32."""
        users = self.user_factors[np.asarray(user_idx, dtype=np.int64)]
        return np.einsum("ij,ij->i", users, self.item_factors[np.asarray(item_idx, dtype=np.int64)])

    def score_all(self, user_idx: np.ndarray) -> np.ndarray:
        """Shape (len(user_idx), n_items), float32."""
        return self.user_factors[np.asarray(user_idx, dtype=np.int64)] @ self.item_factors.T


def ials_on_grid(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    n_users: int,
    n_items: int,
    judge: Callable[[IALS], Any],
    factors_grid: Sequence[int] = IALS_FACTORS_GRID,
    reg_grid: Sequence[float] = IALS_REG_GRID,
    **fit: Any,
) -> tuple[IALS, dict[tuple[int, float], Any]]:
    """Fit iALS for each (factors, reg) of the grids and keep the best by ``judge(model)`` (higher is
    better, the first of equals wins), as :func:`ease_on_grid` does for EASE's penalty.

    Walks the factors at the middle penalty first, then the penalties at the best factors
    (``len(factors_grid) + len(reg_grid) - 1`` fits, not their product): each fit costs a few
    seconds at the casino's scale. Returns the kept model and each tried pair's figure.
    """
    figures: dict[tuple[int, float], Any] = {}
    models: dict[tuple[int, float], IALS] = {}
    best: tuple[int, float] | None = None

    def consider(factors: int, reg: float) -> None:
        nonlocal best
        key = (int(factors), float(reg))
        if key in figures:
            return
        model = IALS(user_idx, item_idx, n_users, n_items, factors, reg, **fit)
        figures[key] = judge(model)
        if best is None or figures[key] > figures[best]:
            if best is not None:
                models.pop(best, None)
            best = key
            models[key] = model

    middle = reg_grid[len(reg_grid) // 2]
    for factors in factors_grid:
        consider(factors, middle)
    assert best is not None
    for reg in reg_grid:
        consider(best[0], reg)
    return models[best], figures
