"""Popularity, item-kNN and EASE baselines: hand-computed answers, dense references and the planted clusters."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.baselines import EASE, ItemKNN, Popularity, TrainItems, ease_on_grid, spectral_item_vectors
from recsys.evaluation import evaluate_sampled
from recsys.ncf.vectors import most_similar


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


def test_spectral_vectors_keep_two_disjoint_blocks_apart() -> None:
    # Users 0-3 play slots {0, 1, 2} (each a different pair or all three), users 4-6 slots {3, 4}; slot 5 unplayed.
    users = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6])
    items = np.array([0, 1, 1, 2, 0, 2, 0, 1, 2, 3, 4, 3, 4, 3])
    vectors = spectral_item_vectors(users, items, n_users=7, n_items=6, bands=[(1.0, 2, 0.5)])
    assert vectors.shape == (6, 3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert vectors[5].tolist() == [0, 0, 1] and vectors[:5, 2].tolist() == [0] * 5  # the unplayed slot
    assert [sorted(row) for row in most_similar(vectors, np.arange(3), k=2).tolist()] == [[1, 2], [0, 2], [0, 1]]
    assert most_similar(vectors, np.array([3, 4]), k=1).tolist() == [[4], [3]]


def dense_spectral(x: np.ndarray, alpha: float, dim: int, power: float) -> np.ndarray:
    """One band of spectral_item_vectors computed directly from a dense 0/1 matrix."""
    gram = x.T @ x
    d = np.diag(gram).copy()
    d[d == 0] = 1.0
    w, v = np.linalg.eigh(gram / np.outer(d, d) ** alpha)
    top = np.argsort(-w)[:dim]
    out = v[:, top] * np.clip(w[top], 0, None) ** power
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-300)


def test_spectral_vectors_equal_a_dense_computation_and_item_knn_at_full_rank() -> None:
    rng = np.random.default_rng(3)
    x = (rng.random((40, 12)) < 0.3).astype(np.float64)
    x[:, 11] = 0.0  # an item nobody has
    users, items = np.nonzero(x)
    for alpha, power, dim in ((0.3, 0.5, 5), (0.5, 1.0, 4), (0.5, 0.5, 12)):
        vectors = spectral_item_vectors(users, items, 40, 12, bands=[(1.0, dim, power)], alpha=alpha)
        expected = dense_spectral(x, alpha, dim, power)[:11]
        # Eigenvectors are defined up to sign: compare in absolute value, and the cosines.
        np.testing.assert_allclose(np.abs(vectors[:11, :-1]), np.abs(expected), atol=1e-5)
        assert vectors[11].tolist() == [0] * dim + [1] and not vectors[:11, -1].any()
        np.testing.assert_allclose(vectors[:11] @ vectors[:11].T, expected @ expected.T, atol=1e-5)
    # alpha 0.5, power 0.5, full rank: the cosines are item-kNN's (shrink 0).
    knn = ItemKNN(users, items, 40, 12, neighbors=None, shrink=0.0)
    cosines = vectors[:11] @ vectors[:11].T
    np.fill_diagonal(cosines, 0.0)
    np.testing.assert_allclose(cosines, knn.similarity[:11, :11], atol=1e-5)
    # Two bands (weights 0.25 and 0.75): their cosines averaged with those weights.
    two = spectral_item_vectors(users, items, 40, 12, bands=[(0.25, 6, 0.5), (0.75, 3, 1.5)], alpha=0.3)
    assert two.shape == (12, 10)
    a, b = dense_spectral(x, 0.3, 6, 0.5), dense_spectral(x, 0.3, 3, 1.5)
    np.testing.assert_allclose(two[:11] @ two[:11].T, (0.25 * a @ a.T + 0.75 * b @ b.T)[:11, :11], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(two, axis=1), 1.0, atol=1e-6)


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


def _dense_ease(x: np.ndarray, l2: float) -> np.ndarray:
    """Steck 2019's four lines on a dense 0/1 matrix."""
    g = x.T @ x + l2 * np.eye(x.shape[1])
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))
    np.fill_diagonal(b, 0.0)
    return b


def test_ease_equals_the_dense_closed_form_on_a_known_matrix() -> None:
    # 5 users x 4 items; user 3 repeats the pair (3, 2), which must count once.
    users = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4])
    items = np.array([0, 1, 0, 1, 2, 1, 3, 2, 3, 2, 0])
    x = np.zeros((5, 4))
    x[users, items] = 1.0
    model = EASE(users, items, n_users=5, n_items=4, l2=2.0)
    expected = _dense_ease(x, 2.0)
    np.testing.assert_allclose(model.weights, expected, rtol=1e-6, atol=1e-7)
    assert np.all(np.diag(model.weights) == 0.0)
    # Hand-checkable cell: G = XᵀX + 2I has G[0, 0] = 3 + 2 and B[j, i] = -P[j, i] / P[i, i].
    assert (x.T @ x)[0, 0] == 3 and (x.T @ x)[2, 3] == 1
    np.testing.assert_allclose(model.score_all(np.arange(5)), x @ expected, rtol=1e-5, atol=1e-6)
    pairs_u, pairs_i = np.repeat(np.arange(5), 4), np.tile(np.arange(4), 5)
    np.testing.assert_allclose(model.score(pairs_u, pairs_i), (x @ expected).ravel(), rtol=1e-5, atol=1e-6)
    ids, weights = model.similar_items(1, k=2)
    assert 1 not in ids.tolist()
    assert ids.tolist() == np.argsort(-np.where(np.arange(4) == 1, -np.inf, expected[1]))[:2].tolist()


def test_ease_on_a_larger_random_matrix_and_the_gram_in_chunks(monkeypatch) -> None:
    import recsys.baselines

    rng = np.random.default_rng(3)
    x = (rng.random((200, 30)) < 0.15).astype(np.float64)
    users, items = np.nonzero(x)
    monkeypatch.setattr(recsys.baselines, "FLOPS_PER_COUNTED_CELL", 0)  # counted, not dense blocks
    monkeypatch.setattr(recsys.baselines, "CELLS_PER_STEP", 50)  # many chunks, and users longer than one
    train = TrainItems(users, items, 200, 30)
    np.testing.assert_array_equal(train.gram(), x.T @ x)
    model = EASE(users, items, 200, 30, l2=7.5)
    np.testing.assert_allclose(model.weights, _dense_ease(x, 7.5), rtol=1e-5, atol=1e-6)
    u, i = rng.integers(0, 200, 500), rng.integers(0, 30, 500)
    np.testing.assert_allclose(model.score(u, i), (x @ _dense_ease(x, 7.5))[u, i], rtol=1e-4, atol=1e-5)


def test_ease_with_fewer_users_than_items_equals_the_dense_closed_form() -> None:
    # 6 users x 25 items (item 24 nobody's, user 5 without items): the Woodbury path, the same B.
    from recsys.baselines import EASESolver, ease_on_grid

    rng = np.random.default_rng(5)
    x = (rng.random((6, 25)) < 0.3).astype(np.float64)
    x[:, 24] = 0.0
    x[5] = 0.0
    users, items = np.nonzero(x)
    assert EASESolver(TrainItems(users, items, 6, 25)).dual
    for l2 in (0.5, 4.0):
        model = EASE(users, items, 6, 25, l2=l2)
        np.testing.assert_allclose(model.weights, _dense_ease(x, l2), rtol=1e-5, atol=1e-6)
    assert np.all(model.weights[:, 24] == 0.0) and np.all(np.diag(model.weights) == 0.0)
    best, _ = ease_on_grid(users, items, 6, 25, judge=lambda m: -abs(m.l2 - 4.0), grid=(0.5, 4.0, 40.0))
    np.testing.assert_allclose(best.weights, _dense_ease(x, 4.0), rtol=1e-5, atol=1e-6)
    assert not EASESolver(TrainItems(users, items % 4, 6, 4)).dual  # more users than items: XᵀX


def test_ease_on_grid_keeps_the_best_judged_l2() -> None:
    rng = np.random.default_rng(4)
    x = (rng.random((100, 20)) < 0.2).astype(np.float64)
    users, items = np.nonzero(x)
    # A judge that prefers l2 = 50: the kept model is the one fitted with it, bit for bit.
    best, figures = ease_on_grid(users, items, 100, 20, judge=lambda m: -abs(m.l2 - 50.0), grid=(10, 50, 500),
                                 patience=None)
    assert best.l2 == 50.0
    assert figures == {10.0: -40.0, 50.0: 0.0, 500.0: -450.0}
    np.testing.assert_array_equal(best.weights, EASE(users, items, 100, 20, l2=50.0).weights)
    with pytest.raises(ValueError, match="positive"):
        EASE(users, items, 100, 20, l2=0.0)


def test_ease_on_grid_walks_down_and_stops_after_its_patience() -> None:
    rng = np.random.default_rng(4)
    x = (rng.random((100, 20)) < 0.2).astype(np.float64)
    users, items = np.nonzero(x)
    # Figures peak at l2 = 1000: walking down from 30000, 300 and 100 do not beat it, so 30 and 10 are
    # never tried.
    figure = {30000.0: 1, 10000.0: 2, 3000.0: 3, 1000.0: 4, 300.0: 3, 100.0: 2, 30.0: 9, 10.0: 9}
    best, figures = ease_on_grid(users, items, 100, 20, judge=lambda m: figure[m.l2], grid=tuple(figure))
    assert best.l2 == 1000.0
    assert list(figures) == [30000.0, 10000.0, 3000.0, 1000.0, 300.0, 100.0]
    best, figures = ease_on_grid(users, items, 100, 20, judge=lambda m: figure[m.l2], grid=tuple(figure),
                                 patience=None)
    assert best.l2 == 30.0 and len(figures) == 8  # the whole grid; the first of equals wins


def test_ease_beats_popularity_on_planted_clusters(planted) -> None:
    def hr(model) -> float:
        return evaluate_sampled(
            model, planted.test_user_idx, planted.test_item_idx, planted.negative_item_idx
        ).hit_ratio

    ease = EASE(planted.user_idx, planted.item_idx, planted.n_users, planted.n_items, l2=50.0)
    pop = Popularity(planted.user_idx, planted.item_idx, planted.n_items)
    assert hr(ease) > hr(pop) + 0.4


def test_the_gram_matrix_is_the_same_counted_or_as_dense_blocks(monkeypatch) -> None:
    import recsys.baselines

    rng = np.random.default_rng(5)
    x = (rng.random((3000, 40)) < 0.3).astype(np.float64)  # 3 blocks of users
    users, items = np.nonzero(x)
    train = TrainItems(users, items, 3000, 40)
    monkeypatch.setattr(recsys.baselines, "FLOPS_PER_COUNTED_CELL", 0)
    counted = train.gram()
    monkeypatch.setattr(recsys.baselines, "FLOPS_PER_COUNTED_CELL", 10**9)
    dense = train.gram()
    np.testing.assert_array_equal(counted, x.T @ x)
    np.testing.assert_array_equal(dense, x.T @ x)
