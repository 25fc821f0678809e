"""The similar-slot index: FAISS over a version's L2-normalised slot vectors (no I/O).

The structure is a FAISS factory string (``"IDMap,Flat"``, ``"IDMap,HNSW32"``, ...), so it is
configuration. Vectors are unit-norm and the metric is inner product, so a score is the cosine.
For a catalogue of a few thousand slots exact ``Flat`` search is both the fastest and exact
(``bench/bench_search.py``). An index is never mutated once built: a new version, or a new slot,
builds a new one and the caller swaps one reference.
"""

from __future__ import annotations

import faiss
import numpy as np

from recsys.errors import RecsysError

DEFAULT_FACTORY = "IDMap,Flat"


class SlotIndexError(RecsysError, ValueError):
    """An index cannot be built from these vectors or this factory string."""


class SlotIndex:
    """Inner-product search over unit-norm slot vectors, answering with the caller's ids.

    Parameters
    ----------
    vectors : np.ndarray, shape (n, d)
        L2-normalised rows (float32; other dtypes are converted).
    ids : np.ndarray, shape (n,)
        The id of each row (int64), e.g. slot keys; returned by :meth:`search`.
    factory : str
        A FAISS factory string. Without an ``IDMap`` prefix the ids must be ``0..n-1``.
    """

    def __init__(self, vectors: np.ndarray, ids: np.ndarray, factory: str = DEFAULT_FACTORY) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or ids.shape != (vectors.shape[0],):
            raise SlotIndexError(f"need vectors (n, d) and ids (n,), got {vectors.shape} and {ids.shape}")
        if np.unique(ids).size != ids.size:
            raise SlotIndexError("ids must be unique")
        try:
            index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise SlotIndexError(f"invalid FAISS factory string {factory!r}: {exc}") from exc
        if vectors.shape[0] and not index.is_trained:
            index.train(vectors)
        if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
            index.add_with_ids(vectors, ids)
        else:
            if not np.array_equal(ids, np.arange(ids.size)):
                raise SlotIndexError(f"factory {factory!r} has no IDMap, so ids must be 0..n-1")
            index.add(vectors)
        self.factory = factory
        self.dim = int(vectors.shape[1])
        self.ntotal = int(index.ntotal)
        self._index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows with the highest inner product with each query.

        Parameters
        ----------
        queries : np.ndarray, shape (q, d) or (d,)
        k : int

        Returns
        -------
        ids : np.ndarray, shape (q, k), int64
            Best first; ``-1`` where fewer than ``k`` rows exist.
        scores : np.ndarray, shape (q, k), float32
            Inner products (cosines for unit-norm queries); ``-inf`` beside a ``-1`` id.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise SlotIndexError(f"queries have {queries.shape[1]} dimensions, the index {self.dim}")
        if k < 1:
            raise SlotIndexError(f"k must be at least 1, got {k}")
        n = min(k, self.ntotal)
        if n == k:  # the serving path: no padding to allocate
            scores, ids = self._index.search(queries, k)
            if (ids < 0).any():  # approximate structures may find fewer than k
                scores[ids < 0] = -np.inf
            return ids, scores
        ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
        scores = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        if n:
            found_scores, found_ids = self._index.search(queries, n)
            ids[:, :n] = found_ids
            scores[:, :n] = np.where(found_ids >= 0, found_scores, -np.inf)
        return ids, scores


def set_threads(threads: int) -> None:
    """FAISS's OpenMP threads. One query at a time gains nothing from more than one, and on a
    shared 2-core machine OpenMP's spinning threads slow down the other requests."""
    faiss.omp_set_num_threads(max(1, threads))
