"""Popularity and item-kNN baselines: hand-computed answers and the planted clusters."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.baselines import ItemKNN, Popularity
from recsys.evaluation import evaluate_sampled


def test_popularity_counts_distinct_users() -> None:
    model = Popularity(np.array([0, 0, 1, 2, 2]), np.array([1, 1, 1, 0, 2]), n_items=4)
    assert model.score(np.array([5, 5, 5, 5]), np.array([0, 1, 2, 3])).tolist() == [1.0, 2.0, 1.0, 0.0]
    assert model.score_all(np.array([0, 1])).shape == (2, 4)


def test_item_knn_cosine_on_a_hand_example() -> None:
    # Users 0 and 1 have items {0, 1}; user 2 has {1, 2}. cos(0,1) = 2/sqrt(2*3), cos(1,2) = 1/sqrt(3).
    users = np.array([0, 0, 1, 1, 2, 2])
    items = np.array([0, 1, 0, 1, 1, 2])
    model = ItemKNN(users, items, n_users=3, n_items=4, neighbors=None, shrink=0.0)
    assert model.similarity[0, 1] == pytest.approx(2 / np.sqrt(6))
    assert model.similarity[1, 2] == pytest.approx(1 / np.sqrt(3))
    assert model.similarity[0, 2] == 0.0 and model.similarity[1, 1] == 0.0
    # User 2 (items 1, 2) scores item 0 by sim(1, 0) + sim(2, 0).
    assert model.score(np.array([2]), np.array([0]))[0] == pytest.approx(2 / np.sqrt(6))
    np.testing.assert_allclose(model.score_all(np.array([2]))[0], model.score(np.full(4, 2), np.arange(4)), rtol=1e-6)
    ids, sims = model.similar_items(1, k=2)
    assert ids.tolist() == [0, 2]


def test_neighbour_pruning_keeps_the_top_rows() -> None:
    users = np.array([0, 0, 0, 1, 1, 2, 2])
    items = np.array([0, 1, 2, 0, 1, 0, 3])
    model = ItemKNN(users, items, n_users=3, n_items=4, neighbors=1, shrink=0.0)
    assert (model.similarity > 0).sum(axis=1).tolist() == [1, 1, 1, 1]
    assert model.similarity[0].argmax() == 1


def test_item_knn_beats_popularity_on_planted_clusters(planted) -> None:
    def hr(model) -> float:
        return evaluate_sampled(
            model, planted.test_user_idx, planted.test_item_idx, planted.negative_item_idx
        ).hit_ratio

    knn = ItemKNN(planted.user_idx, planted.item_idx, planted.n_users, planted.n_items)
    pop = Popularity(planted.user_idx, planted.item_idx, planted.n_items)
    assert hr(knn) > hr(pop) + 0.4
