"""Item vectors for similarity: each kind's definition, unit norms, and cluster recovery."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ncf.config import NCFConfig
from recsys.ncf.scoring import TrainedNCF
from recsys.ncf.vectors import VECTOR_KINDS, item_vectors, most_similar, normalize_rows, usable_kind


def random_neumf(seed: int = 0) -> TrainedNCF:
    rng = np.random.default_rng(seed)
    config = NCFConfig(factors=4, mlp_layers=(6, 4, 2))
    shapes = {
        "user_gmf.weight": (5, 4), "item_gmf.weight": (7, 4), "user_mlp.weight": (5, 3), "item_mlp.weight": (7, 3),
        "mlp.0.weight": (4, 6), "mlp.0.bias": (4,), "mlp.1.weight": (2, 4), "mlp.1.bias": (2,),
        "predict.weight": (1, 6), "predict.bias": (1,), "item_bias.weight": (7, 1),
    }
    return TrainedNCF(config, {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()})


@pytest.mark.parametrize("kind", VECTOR_KINDS)
def test_every_kind_is_unit_norm(kind: str) -> None:
    vectors = item_vectors(random_neumf(), kind)
    assert vectors.shape[0] == 7 and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_kinds_follow_their_definitions() -> None:
    model = random_neumf()
    w = model.weights
    h = w["predict.weight"][0, :4]
    np.testing.assert_allclose(item_vectors(model, "gmf_h"), normalize_rows(w["item_gmf.weight"] * h), rtol=1e-5)
    np.testing.assert_allclose(
        item_vectors(model, "mlp_proj"), normalize_rows(w["item_mlp.weight"] @ w["mlp.0.weight"][:, 3:].T), rtol=1e-5
    )
    concat = item_vectors(model, "concat")
    # Each tower contributes a unit half, so each half has norm 1/sqrt(2).
    np.testing.assert_allclose(np.linalg.norm(concat[:, :4], axis=1), 2**-0.5, rtol=1e-5)


def test_missing_tower_is_an_error() -> None:
    model = random_neumf()
    gmf_only = TrainedNCF(model.config.replace(model="gmf"),
                          {k: v for k, v in model.weights.items() if "mlp" not in k})
    with pytest.raises(ValueError, match="needs a tower"):
        item_vectors(gmf_only, "mlp")
    with pytest.raises(ValueError, match="unknown vector kind"):
        item_vectors(model, "svd")


def test_one_tower_models_fall_back_to_their_tower() -> None:
    model = random_neumf()
    gmf_only = TrainedNCF(model.config.replace(model="gmf"), {k: v for k, v in model.weights.items() if "mlp" not in k})
    mlp_only = TrainedNCF(model.config.replace(model="mlp"), {k: v for k, v in model.weights.items() if "gmf" not in k})
    assert [usable_kind(model, k) for k in ("concat", "gmf", "mlp_proj")] == ["concat", "gmf", "mlp_proj"]
    assert [usable_kind(gmf_only, k) for k in ("concat", "concat_h", "gmf_h", "mlp")] == ["gmf", "gmf", "gmf_h", "gmf"]
    assert [usable_kind(mlp_only, k) for k in ("concat", "gmf", "mlp_proj")] == ["mlp", "mlp", "mlp_proj"]


def test_most_similar_excludes_the_query() -> None:
    vectors = normalize_rows(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]]))
    top = most_similar(vectors, np.array([0, 2]), k=2)
    assert top.tolist() == [[1, 3], [3, 1]]


def test_trained_gmf_vectors_recover_the_clusters(planted) -> None:
    from recsys.ncf.training import train

    config = NCFConfig(model="gmf", factors=16, negatives=4, batch_size=256, gmf_optimizer="adam", gmf_lr=0.01,
                       gmf_epochs=8, reg=0.0, threads=1, learn_gmf_h=True)
    model = train(config, planted.user_idx, planted.item_idx, planted.n_users, planted.n_items)
    for kind in ("gmf", "gmf_h"):
        top = most_similar(item_vectors(model, kind), np.arange(planted.n_items), k=5)
        same = planted.item_cluster[top] == planted.item_cluster[:, None]
        # 8 clusters: a random neighbour shares the cluster 1 time in 8.
        assert same.mean() > 0.7, kind
