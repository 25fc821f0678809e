"""Top-K evaluation of any scorer: HR@K and NDCG@K, sampled (NCF protocol) or full-catalogue.

A *scorer* is anything with ``score(user_idx, item_idx) -> scores`` over 1-d arrays of pairs (a
``TrainedNCF``, a baseline from ``recsys.baselines``). Higher scores rank first.

Ranks are 0-based and **ties count against the model**: the rank of a test item is the number of
candidates whose score is ``>=`` its own. A model that gives every item the same score therefore
ranks every test item last, never first; a NaN score (test item or candidate) also counts as a loss.
HR@K is the share of test cases with ``rank < K``; NDCG@K (one relevant item) is
``1 / log2(rank + 2)`` for those hits and 0 otherwise, averaged over test cases (He et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recsys.ncf.sampling import ObservedPairs

# Pairs scored per call to ``scorer.score``: large enough to amortize per-call overhead, small
# enough that a (chunk x MLP width) activation stays in tens of MB.
PAIRS_PER_CALL = 1 << 18


class Scorer(Protocol):
    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Scores, shape (n,), for pairs ``(user_idx[j], item_idx[j])``."""
        ...


@dataclass(frozen=True)
class RankingMetrics:
    """HR@K and NDCG@K over test cases, with the rank of each.

    Attributes
    ----------
    k : int
    hit_ratio, ndcg : float
        Means over the test cases.
    ranks : np.ndarray, shape (n_cases,), int64
        0-based rank of each test item among its candidates (ties counted against it).
    """

    k: int
    hit_ratio: float
    ndcg: float
    ranks: np.ndarray

    @property
    def n_cases(self) -> int:
        return int(self.ranks.shape[0])


def ranks_against(test_scores: np.ndarray, candidate_scores: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Rank of each test score among its row of candidate scores, ties counted against it.

    Parameters
    ----------
    test_scores : np.ndarray, shape (n,)
    candidate_scores : np.ndarray, shape (n, m)
        The items the test item competes with (not including itself).
    valid : np.ndarray of bool, shape (n, m), optional
        Candidates to count; others are ignored.

    Returns
    -------
    np.ndarray, shape (n,), int64
        Number of valid candidates scoring ``>=`` the test item (or NaN, or any candidate at all
        when the test score is NaN).
    """
    test = np.asarray(test_scores)[:, None]
    cand = np.asarray(candidate_scores)
    beats = (cand >= test) | np.isnan(cand) | np.isnan(test)
    if valid is not None:
        beats &= valid
    return beats.sum(axis=1).astype(np.int64)


def metrics_from_ranks(ranks: np.ndarray, k: int = 10) -> RankingMetrics:
    """HR@K and NDCG@K from 0-based ranks, shape (n,)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    if ranks.size == 0:
        raise ValueError("no test cases to evaluate")
    hit = ranks < k
    gain = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return RankingMetrics(k=k, hit_ratio=float(hit.mean()), ndcg=float(gain.mean()), ranks=ranks)


def _score_pairs(scorer: Scorer, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
    out = np.empty(user_idx.shape[0], dtype=np.float64)
    for start in range(0, user_idx.shape[0], PAIRS_PER_CALL):
        stop = start + PAIRS_PER_CALL
        out[start:stop] = scorer.score(user_idx[start:stop], item_idx[start:stop])
    return out


def evaluate_sampled(
    scorer: Scorer,
    user_idx: np.ndarray,
    test_item_idx: np.ndarray,
    negative_item_idx: np.ndarray,
    k: int = 10,
) -> RankingMetrics:
    """HR@K / NDCG@K with each test item ranked among its own sampled negatives (NCF protocol).

    A negative equal to the test item is ignored rather than counted as a tie: the published
    ML-1M negatives file has 77 such rows, and the NCF reference code scored candidates through a
    dict keyed by item, which collapsed the duplicate onto the test item.

    Parameters
    ----------
    scorer : Scorer
    user_idx, test_item_idx : np.ndarray, shape (n,)
        One test case per entry.
    negative_item_idx : np.ndarray, shape (n, m)
        The m negatives of each test case (99 in the protocol).
    k : int

    Returns
    -------
    RankingMetrics
    """
    user_idx = np.asarray(user_idx, dtype=np.int64)
    test_item_idx = np.asarray(test_item_idx, dtype=np.int64)
    negatives = np.asarray(negative_item_idx, dtype=np.int64)
    n, m = negatives.shape
    if user_idx.shape != (n,) or test_item_idx.shape != (n,):
        raise ValueError("user_idx, test_item_idx and the rows of negative_item_idx must match")
    items = np.concatenate([test_item_idx[:, None], negatives], axis=1)
    scores = _score_pairs(scorer, np.repeat(user_idx, m + 1), items.ravel()).reshape(n, m + 1)
    ranks = ranks_against(scores[:, 0], scores[:, 1:], valid=negatives != test_item_idx[:, None])
    return metrics_from_ranks(ranks, k)


def evaluate_full(
    scorer: Scorer,
    user_idx: np.ndarray,
    test_item_idx: np.ndarray,
    train_user_idx: np.ndarray,
    train_item_idx: np.ndarray,
    n_items: int,
    k: int = 10,
    users_per_chunk: int = 256,
) -> RankingMetrics:
    """HR@K / NDCG@K with each test item ranked against the whole catalogue minus the user's train items.

    Parameters
    ----------
    scorer : Scorer
        If it has ``score_all(user_idx) -> (n, n_items)``, that is used instead of pair scoring.
    user_idx, test_item_idx : np.ndarray, shape (n,)
    train_user_idx, train_item_idx : np.ndarray, shape (t,)
        The pairs the model was trained on; they are excluded from the candidates.
    n_items : int
    k : int
    users_per_chunk : int
        Test cases scored together (memory is ``users_per_chunk * n_items`` scores).

    Returns
    -------
    RankingMetrics
    """
    user_idx = np.asarray(user_idx, dtype=np.int64)
    test_item_idx = np.asarray(test_item_idx, dtype=np.int64)
    train = ObservedPairs(train_user_idx, train_item_idx, n_items)
    train_users = train.keys // n_items
    ranks = np.empty(user_idx.shape[0], dtype=np.int64)
    all_items = np.arange(n_items, dtype=np.int64)
    score_all = getattr(scorer, "score_all", None)
    for start in range(0, user_idx.shape[0], users_per_chunk):
        users = user_idx[start : start + users_per_chunk]
        tests = test_item_idx[start : start + users_per_chunk]
        c = users.shape[0]
        if score_all is not None:
            scores = np.asarray(score_all(users), dtype=np.float64)
        else:
            scores = _score_pairs(scorer, np.repeat(users, n_items), np.tile(all_items, c)).reshape(c, n_items)
        valid = np.ones((c, n_items), dtype=bool)
        # Train items of each user in the chunk, found by range in the sorted key array.
        lo = np.searchsorted(train_users, users, side="left")
        hi = np.searchsorted(train_users, users, side="right")
        lengths = hi - lo
        rows = np.repeat(np.arange(c), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        valid[rows, train.keys[np.repeat(lo, lengths) + offsets] % n_items] = False
        valid[np.arange(c), tests] = False
        test_scores = scores[np.arange(c), tests]
        ranks[start : start + c] = ranks_against(test_scores, scores, valid)
    return metrics_from_ranks(ranks, k)


def sample_test_negatives(
    train_user_idx: np.ndarray,
    train_item_idx: np.ndarray,
    user_idx: np.ndarray,
    test_item_idx: np.ndarray,
    n_items: int,
    n_negatives: int = 99,
    seed: int = 0,
) -> np.ndarray:
    """Draw the protocol's negatives: per test case, distinct items the user has neither trained
    on nor is tested on.

    Returns
    -------
    np.ndarray, shape (n, n_negatives), int64
    """
    seen = ObservedPairs(
        np.concatenate([np.asarray(train_user_idx), np.asarray(user_idx)]),
        np.concatenate([np.asarray(train_item_idx), np.asarray(test_item_idx)]),
        n_items,
    )
    return seen.sample_distinct_negatives(np.asarray(user_idx), n_negatives, np.random.default_rng(seed))


def hold_out_one_per_user(
    user_idx: np.ndarray, item_idx: np.ndarray, n_items: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Carve a validation split from training pairs: one random distinct pair of every user who has
    at least two (so each keeps a history), drawn with ``seed``.

    Returns
    -------
    rest_user_idx, rest_item_idx : np.ndarray, shape (m,)
        The distinct pairs left to train on.
    held_user_idx, held_item_idx : np.ndarray, shape (n_held,)
        One held-out pair per such user, ordered by user.
    """
    keys = np.unique(np.asarray(user_idx, dtype=np.int64) * n_items + np.asarray(item_idx, dtype=np.int64))
    users = keys // n_items
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    lengths = np.diff(np.r_[starts, keys.size])
    eligible = lengths >= 2
    rng = np.random.default_rng(seed)
    picked = starts[eligible] + (rng.random(int(eligible.sum())) * lengths[eligible]).astype(np.int64)
    keep = np.ones(keys.size, dtype=bool)
    keep[picked] = False
    return users[keep], keys[keep] % n_items, users[picked], keys[picked] % n_items


def hit_ratio_callback(
    user_idx: np.ndarray, test_item_idx: np.ndarray, negative_item_idx: np.ndarray, k: int = 10
) -> Callable[[Scorer], float]:
    """A training ``evaluate`` callback: the sampled-protocol HR@K of a model on fixed test cases."""

    def hit_ratio(scorer: Scorer) -> float:
        return evaluate_sampled(scorer, user_idx, test_item_idx, negative_item_idx, k).hit_ratio

    return hit_ratio
