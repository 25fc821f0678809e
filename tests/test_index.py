import numpy as np
import pytest

from recsys.index import SlotIndex, SlotIndexError
from recsys.ncf.vectors import normalize_rows


def _vectors(n=500, d=16, seed=0):
    return normalize_rows(np.random.default_rng(seed).normal(size=(n, d)))


def test_flat_search_is_exact_and_answers_with_the_given_ids():
    vectors = _vectors()
    ids = np.arange(vectors.shape[0]) * 7 + 3  # slot keys, not row numbers
    index = SlotIndex(vectors, ids)
    queries = vectors[[0, 10, 99]]
    found, scores = index.search(queries, 5)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
    np.testing.assert_array_equal(found, ids[exact])
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, exact, axis=1), rtol=1e-5)
    assert found[0, 0] == ids[0]  # a stored vector is its own nearest neighbour (cosine 1)
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)


def test_k_beyond_the_index_pads_with_minus_one():
    index = SlotIndex(_vectors(3), np.array([10, 20, 30]))
    found, scores = index.search(_vectors(3)[0], 5)
    assert found.shape == (1, 5)
    assert sorted(found[0, :3].tolist()) == [10, 20, 30]
    assert found[0, 3:].tolist() == [-1, -1]
    assert np.isneginf(scores[0, 3:]).all()


def test_hnsw_is_measured_against_exact_search():
    vectors = _vectors(2000, 32, seed=1)
    ids = np.arange(2000)
    exact = SlotIndex(vectors, ids, "IDMap,Flat").search(vectors[:200], 10)[0]
    approximate = SlotIndex(vectors, ids, "IDMap,HNSW32").search(vectors[:200], 10)[0]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approximate, exact, strict=True)])
    assert recall >= 0.9


@pytest.mark.parametrize(
    ("factory", "ids", "message"),
    [
        ("NoSuchIndex", np.arange(4), "invalid FAISS factory"),
        ("Flat", np.array([5, 6, 7, 8]), "ids must be 0..n-1"),
        ("IDMap,Flat", np.array([1, 1, 2, 3]), "unique"),
    ],
)
def test_bad_structures_are_refused(factory, ids, message):
    with pytest.raises(SlotIndexError, match=message):
        SlotIndex(_vectors(4), ids, factory)


def test_a_query_of_the_wrong_dimension_is_refused():
    index = SlotIndex(_vectors(4, 8), np.arange(4))
    with pytest.raises(SlotIndexError, match="dimensions"):
        index.search(np.ones(5, dtype=np.float32), 1)
