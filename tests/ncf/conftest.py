"""Synthetic implicit-feedback data with a planted answer, shared by the NCF tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass(frozen=True)
class Planted:
    """Users and items in ``k`` clusters; users interact mostly inside their own cluster.

    Train pairs are ``(user_idx, item_idx)``; each user has one held-out in-cluster test item and 99
    negatives the user never touched.
    """

    n_users: int
    n_items: int
    user_cluster: np.ndarray
    item_cluster: np.ndarray
    user_idx: np.ndarray
    item_idx: np.ndarray
    test_user_idx: np.ndarray
    test_item_idx: np.ndarray
    negative_item_idx: np.ndarray


def make_planted(
    n_users: int = 300, n_items: int = 160, k: int = 8, per_user: int = 12, in_cluster: float = 0.9, seed: int = 7
) -> Planted:
    """With the defaults each user keeps ~9 unseen in-cluster items, so about 6 of the 99 negatives
    share the test item's cluster: a model that knows the clusters has HR@10 near 1, popularity ~0.2."""
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(0, k, n_users)
    item_cluster = np.arange(n_items) % k
    # Within a cluster, item popularity follows a mild power law, so popularity is a real (weak) signal.
    base = 1.0 / (1.0 + np.arange(n_items) // k) ** 0.5
    users, items, test_items = [], [], []
    for u in range(n_users):
        inside = np.flatnonzero(item_cluster == user_cluster[u])
        outside = np.flatnonzero(item_cluster != user_cluster[u])
        n_in = int(round(per_user * in_cluster))
        chosen_in = rng.choice(inside, n_in, replace=False, p=base[inside] / base[inside].sum())
        chosen_out = rng.choice(outside, per_user - n_in, replace=False)
        test_items.append(chosen_in[0])
        picked = np.concatenate([chosen_in[1:], chosen_out])
        users.append(np.full(picked.shape[0], u))
        items.append(picked)
    user_idx = np.concatenate(users).astype(np.int64)
    item_idx = np.concatenate(items).astype(np.int64)
    test_user_idx = np.arange(n_users, dtype=np.int64)
    test_item_idx = np.asarray(test_items, dtype=np.int64)
    from recsys.evaluation import sample_test_negatives

    negatives = sample_test_negatives(user_idx, item_idx, test_user_idx, test_item_idx, n_items, 99, seed)
    return Planted(n_users, n_items, user_cluster, item_cluster, user_idx, item_idx,
                   test_user_idx, test_item_idx, negatives)


@pytest.fixture(scope="session")
def planted() -> Planted:
    return make_planted()


@pytest.fixture(scope="session")
def planted_factory():
    """``make_planted`` itself, for tests that need other sizes."""
    return make_planted
