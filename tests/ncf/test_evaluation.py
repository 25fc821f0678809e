"""HR@K / NDCG@K on hand-computed cases, ties, and full-catalogue ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.evaluation import (
    evaluate_full,
    evaluate_sampled,
    metrics_from_ranks,
    ranks_against,
    sample_test_negatives,
)


class TableScorer:
    """Scores pairs from a dense (n_users, n_items) table."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = np.asarray(table, dtype=np.float64)

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        return self.table[user_idx, item_idx]


def test_first_place_gives_hr_and_ndcg_one() -> None:
    table = np.array([[9.0, 1.0, 2.0, 3.0]])
    result = evaluate_sampled(TableScorer(table), np.array([0]), np.array([0]), np.array([[1, 2, 3]]), k=10)
    assert result.ranks.tolist() == [0]
    assert result.hit_ratio == 1.0
    assert result.ndcg == 1.0


def test_third_place_gives_ndcg_one_over_log2_4() -> None:
    table = np.array([[5.0, 9.0, 8.0, 1.0]])
    result = evaluate_sampled(TableScorer(table), np.array([0]), np.array([0]), np.array([[1, 2, 3]]), k=10)
    assert result.ranks.tolist() == [2]
    assert result.hit_ratio == 1.0
    assert result.ndcg == pytest.approx(1.0 / math.log2(4.0))


def test_rank_outside_k_is_a_miss() -> None:
    table = np.array([[5.0, 9.0, 8.0, 1.0]])
    result = evaluate_sampled(TableScorer(table), np.array([0]), np.array([0]), np.array([[1, 2, 3]]), k=2)
    assert result.hit_ratio == 0.0
    assert result.ndcg == 0.0


def test_ties_count_against_the_model() -> None:
    # A constant scorer must rank the test item last among 99 negatives, not first.
    table = np.zeros((1, 100))
    result = evaluate_sampled(TableScorer(table), np.array([0]), np.array([0]), np.arange(1, 100)[None, :])
    assert result.ranks.tolist() == [99]
    assert result.hit_ratio == 0.0
    assert ranks_against(np.array([1.0]), np.array([[1.0, 0.5, 2.0]])).tolist() == [2]


def test_nan_scores_count_against_the_model() -> None:
    assert ranks_against(np.array([np.nan]), np.array([[0.0, 1.0]])).tolist() == [2]
    assert ranks_against(np.array([3.0]), np.array([[np.nan, 1.0]])).tolist() == [1]


def test_negative_equal_to_test_item_is_ignored() -> None:
    table = np.array([[5.0, 1.0, 2.0]])
    result = evaluate_sampled(TableScorer(table), np.array([0]), np.array([0]), np.array([[1, 0, 2]]))
    assert result.ranks.tolist() == [0]


def test_mean_over_users() -> None:
    metrics = metrics_from_ranks(np.array([0, 2, 50, 9]), k=10)
    assert metrics.hit_ratio == pytest.approx(0.75)
    assert metrics.ndcg == pytest.approx((1.0 + 1.0 / math.log2(4.0) + 0.0 + 1.0 / math.log2(11.0)) / 4)


def test_full_ranking_excludes_train_items() -> None:
    # User 0 trained on items 1 and 2, which score higher than the test item 3; they must not count.
    table = np.array([[0.1, 9.0, 8.0, 5.0, 6.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    result = evaluate_full(TableScorer(table), np.array([0]), np.array([3]), np.array([0, 0, 1]),
                           np.array([1, 2, 0]), n_items=5)
    assert result.ranks.tolist() == [1]  # only item 4 beats it


def test_full_ranking_uses_score_all_when_present() -> None:
    class AllScorer(TableScorer):
        def score_all(self, user_idx: np.ndarray) -> np.ndarray:
            return self.table[user_idx]

    table = np.array([[0.1, 9.0, 8.0, 5.0, 6.0]])
    result = evaluate_full(AllScorer(table), np.array([0]), np.array([4]), np.array([0]), np.array([1]), n_items=5)
    assert result.ranks.tolist() == [1]  # item 2 beats it, item 1 is a train item


def test_sampled_negatives_avoid_train_and_test_items() -> None:
    train_u = np.array([0, 0, 1])
    train_i = np.array([1, 2, 3])
    negatives = sample_test_negatives(train_u, train_i, np.array([0, 1]), np.array([0, 4]), n_items=20,
                                      n_negatives=15, seed=3)
    assert negatives.shape == (2, 15)
    assert not set(negatives[0]) & {0, 1, 2}
    assert not set(negatives[1]) & {3, 4}
    assert all(len(set(row)) == 15 for row in negatives)
    again = sample_test_negatives(train_u, train_i, np.array([0, 1]), np.array([0, 4]), n_items=20,
                                  n_negatives=15, seed=3)
    assert np.array_equal(negatives, again)
