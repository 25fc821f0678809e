"""NCF training on planted clusters: it learns the structure, deterministically, sparse or dense."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.baselines import Popularity
from recsys.evaluation import evaluate_sampled
from recsys.ncf.config import NCFConfig
from recsys.ncf.model import NCFNet
from recsys.ncf.scoring import TrainedNCF
from recsys.ncf.training import fuse_pretrained, train

# Small and quick: the planted data has 300 users x 160 items, 3,300 pairs.
SMALL = NCFConfig(
    factors=16, mlp_layers=(32, 16, 8), negatives=4, batch_size=256, reg=0.0, threads=1, seed=3,
    gmf_optimizer="adam", gmf_lr=0.01, gmf_epochs=8, mlp_optimizer="adam", mlp_lr=0.01, mlp_epochs=8, mlp_reg=0.0,
    finetune_optimizer="adam", finetune_lr=0.01, finetune_epochs=8, alpha=0.5, init_std=0.1, item_bias=False,
)


def hr_at_10(model, planted) -> float:
    return evaluate_sampled(
        model, planted.test_user_idx, planted.test_item_idx, planted.negative_item_idx
    ).hit_ratio


def fit(planted, config: NCFConfig, **kwargs) -> TrainedNCF:
    return train(config, planted.user_idx, planted.item_idx, planted.n_users, planted.n_items, **kwargs)


@pytest.fixture(scope="module")
def neumf(planted) -> TrainedNCF:
    return fit(planted, SMALL)


def test_neumf_recovers_clusters_far_above_popularity(planted, neumf) -> None:
    popularity = hr_at_10(Popularity(planted.user_idx, planted.item_idx, planted.n_items), planted)
    learned = hr_at_10(neumf, planted)
    # A model that knows the clusters sits near 1.0 here, popularity near 0.2 (see make_planted).
    assert popularity < 0.4
    assert learned > popularity + 0.4


@pytest.mark.parametrize("kind", ["gmf", "mlp"])
def test_single_towers_learn(planted, kind: str) -> None:
    model = fit(planted, SMALL.replace(model=kind))
    assert hr_at_10(model, planted) > 0.5


def test_history_covers_every_stage(neumf) -> None:
    stages = [s.stage for s in neumf.history]
    assert stages == ["gmf"] * 8 + ["mlp"] * 8 + ["neumf"] * 8
    assert all(s.loss > 0 and s.samples == 5 * 3300 for s in neumf.history)


def test_same_seed_gives_identical_weights(planted) -> None:
    config = SMALL.replace(finetune_epochs=2, gmf_epochs=1, mlp_epochs=1)
    first = fit(planted, config)
    second = fit(planted, config)
    assert first.weights.keys() == second.weights.keys()
    for name in first.weights:
        assert np.array_equal(first.weights[name], second.weights[name]), name
    other = fit(planted, config.replace(seed=4))
    assert not np.array_equal(first.weights["item_gmf.weight"], other.weights["item_gmf.weight"])


def test_numpy_scores_equal_torch_scores(planted, neumf) -> None:
    net = NCFNet(planted.n_users, planted.n_items, neumf.config)
    net.load_numpy_weights(neumf.weights)
    users = np.repeat(np.arange(0, 300, 37), 20)
    items = np.tile(np.arange(0, 160, 8), users.shape[0] // 20)
    with torch.no_grad():
        expected = net(torch.from_numpy(users), torch.from_numpy(items)).numpy()
    np.testing.assert_allclose(neumf.score(users, items), expected, rtol=1e-5, atol=1e-5)
    # The serving path: one user against many items.
    np.testing.assert_allclose(neumf.score_items(int(users[0]), items[:20]), expected[:20], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        neumf.score_items(5), neumf.score(np.full(160, 5), np.arange(160)), rtol=1e-5, atol=1e-5
    )


def test_state_round_trip(neumf) -> None:
    import json

    state = neumf.state()
    json.dumps(state["config"])
    json.dumps(state["history"])
    again = TrainedNCF.from_state(state)
    users, items = np.arange(50), np.arange(50)
    assert np.array_equal(again.score(users, items), neumf.score(users, items))
    assert again.config == neumf.config
    assert again.user_factors["gmf"].shape == (300, 16)
    assert again.item_factors["mlp"].shape == (160, 16)


def test_fusion_starts_as_the_alpha_blend(planted) -> None:
    gmf = fit(planted, SMALL.replace(model="gmf", gmf_epochs=2, item_bias=True))
    mlp = fit(planted, SMALL.replace(model="mlp", mlp_epochs=2, item_bias=True))
    fused = TrainedNCF(SMALL.replace(item_bias=True), fuse_pretrained(gmf.weights, mlp.weights, 0.3))
    users, items = planted.user_idx[:100], planted.item_idx[:100]
    np.testing.assert_allclose(
        fused.score(users, items), 0.3 * gmf.score(users, items) + 0.7 * mlp.score(users, items), rtol=1e-5, atol=1e-5
    )


def test_dense_embeddings_learn_too(planted) -> None:
    model = fit(planted, SMALL.replace(model="gmf", sparse=False))
    assert hr_at_10(model, planted) > 0.5


def test_pair_weights_shift_the_model_toward_heavy_pairs(planted) -> None:
    # Weight 0 on every out-of-cluster pair: the model should rank in-cluster items even higher.
    inside = planted.user_cluster[planted.user_idx] == planted.item_cluster[planted.item_idx]
    weights = inside.astype(np.float32)
    config = SMALL.replace(model="gmf")
    plain = fit(planted, config)
    weighted = fit(planted, config, weights=weights)
    assert hr_at_10(weighted, planted) >= hr_at_10(plain, planted) - 0.02
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit(planted, config, weights=weights * 2.0)


def test_callbacks_report_each_epoch(planted) -> None:
    seen = []
    config = SMALL.replace(model="gmf", gmf_epochs=3)
    fit(planted, config, callback=seen.append, evaluate=lambda m: hr_at_10(m, planted))
    assert [s.epoch for s in seen] == [1, 2, 3]
    assert all(s.hr_at_10 is not None and 0.0 <= s.hr_at_10 <= 1.0 for s in seen)
    assert all(s.samples_per_second > 0 for s in seen)


def test_bad_input_is_rejected(planted) -> None:
    with pytest.raises(ValueError, match="out of range"):
        train(SMALL, planted.user_idx, planted.item_idx, 10, planted.n_items)
    with pytest.raises(ValueError, match="model must be"):
        NCFConfig(model="svd")


def test_keep_best_keeps_the_best_epoch_and_stops_after_patience(planted) -> None:
    config = SMALL.replace(model="gmf", gmf_epochs=10, patience=2)
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.9, 0.9])
    snapshots = []

    def evaluate(model: TrainedNCF) -> float:
        snapshots.append({k: v.copy() for k, v in model.weights.items()})
        return next(scripted)

    model = fit(planted, config, evaluate=evaluate, keep_best=True)
    # Epoch 2 is the best; epochs 3 and 4 bring nothing better, so the stage stops there.
    assert [s.epoch for s in model.history] == [1, 2, 3, 4]
    assert len(snapshots) == 4
    for name, array in model.weights.items():
        np.testing.assert_array_equal(array, snapshots[1][name], err_msg=name)
    assert not np.array_equal(model.weights["item_gmf.weight"], snapshots[3]["item_gmf.weight"])


def test_keep_best_needs_something_to_judge_by(planted) -> None:
    with pytest.raises(ValueError, match="keep_best needs an evaluate callback"):
        fit(planted, SMALL.replace(model="gmf", gmf_epochs=1), keep_best=True)
