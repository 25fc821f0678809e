"""Vectorized negative sampling: never an observed pair, deterministic under a seed."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ncf.sampling import ObservedPairs, epoch_samples


def test_negatives_are_never_observed(planted) -> None:
    observed = ObservedPairs(planted.user_idx, planted.item_idx, planted.n_items)
    users = np.repeat(planted.user_idx, 4)
    negatives = observed.sample_negatives(users, np.random.default_rng(0))
    assert negatives.shape == users.shape
    assert not observed.contains(users, negatives).any()
    assert observed.contains(planted.user_idx, planted.item_idx).all()


def test_dense_user_still_gets_its_few_unobserved_items() -> None:
    # User 0 has seen 98 of 100 items: only items 98 and 99 may be drawn.
    observed = ObservedPairs(np.zeros(98, dtype=np.int64), np.arange(98), n_items=100)
    negatives = observed.sample_negatives(np.zeros(500, dtype=np.int64), np.random.default_rng(1))
    assert set(negatives.tolist()) == {98, 99}


def test_user_with_every_item_is_an_error() -> None:
    observed = ObservedPairs(np.zeros(5, dtype=np.int64), np.arange(5), n_items=5)
    with pytest.raises(ValueError, match="user_idx 0"):
        observed.sample_negatives(np.zeros(3, dtype=np.int64), np.random.default_rng(0))


def test_epoch_samples_layout_and_determinism(planted) -> None:
    observed = ObservedPairs(planted.user_idx, planted.item_idx, planted.n_items)
    weight = np.linspace(0.0, 1.0, planted.user_idx.shape[0]).astype(np.float32)
    first = epoch_samples(planted.user_idx, planted.item_idx, observed, 3, np.random.default_rng(5), weight)
    second = epoch_samples(planted.user_idx, planted.item_idx, observed, 3, np.random.default_rng(5), weight)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)
    users, items, labels, sample_weight = first
    n = planted.user_idx.shape[0]
    assert users.shape == (4 * n,)
    assert labels.sum() == n
    assert np.array_equal(observed.contains(users, items), labels == 1.0)
    assert np.all(sample_weight[labels == 0.0] == 1.0)
    assert np.isclose(np.sort(sample_weight[labels == 1.0]), np.sort(weight)).all()
