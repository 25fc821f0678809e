"""Player vectors built from the slots they played (``NCFConfig.user_history``): the maths, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.ncf.config import NCFConfig
from recsys.ncf.model import NCFNet
from recsys.ncf.played import PlayedItems
from recsys.ncf.training import train
from tests.ncf.test_training import SMALL, fit, hr_at_10

# Users 0..3 over 5 items; user 2 played nothing, user 0 played item 1 twice (it counts once).
USERS = np.array([0, 0, 0, 1, 3, 3, 3, 3])
ITEMS = np.array([1, 4, 1, 2, 0, 2, 3, 4])


def test_bags_hold_each_users_distinct_items() -> None:
    played = PlayedItems(USERS, ITEMS, n_users=4, n_items=5)
    items, offsets, counts = played.bags(torch.tensor([3, 2, 0, 3]))
    assert counts.tolist() == [4, 0, 2, 4]
    assert offsets.tolist() == [0, 4, 4, 6]
    assert items.tolist() == [0, 2, 3, 4, 1, 4, 0, 2, 3, 4]


@pytest.mark.parametrize(("mode", "alpha"), [("only", 0.5), ("only", 1.0), ("add", 0.5)])
def test_user_vector_is_the_scaled_sum_of_played_items(mode: str, alpha: float) -> None:
    config = NCFConfig(model="gmf", factors=3, user_history=mode, history_alpha=alpha, item_bias=False)
    net = NCFNet(4, 5, config, played=PlayedItems(USERS, ITEMS, 4, 5))
    y = net.item_hist_gmf.weight.detach().numpy()
    own = net.user_gmf.weight.detach().numpy() if mode == "add" else np.zeros((4, 3), np.float32)
    expected = {0: (y[1] + y[4]) / 2**alpha, 1: y[2], 2: np.zeros(3), 3: (y[0] + y[2] + y[3] + y[4]) / 4**alpha}
    weights = net.serving_weights()
    for user, vector in expected.items():
        np.testing.assert_allclose(weights["user_gmf.weight"][user], own[user] + vector, rtol=1e-5, atol=1e-6)
    # While training, a positive's own item leaves the bag: user 3 predicting item 2 sees 0, 3, 4.
    left_out = net.user_vectors("gmf", torch.tensor([3, 3]), torch.tensor([2, 1]), torch.tensor([True, False]))
    np.testing.assert_allclose(left_out[0].detach().numpy(), own[3] + (y[0] + y[3] + y[4]) / 3**alpha, rtol=1e-5)
    np.testing.assert_allclose(left_out[1].detach().numpy(), weights["user_gmf.weight"][3], rtol=1e-5)
    # The served logit uses the stored vector: GMF with h = 1 is a dot product.
    logit = net(torch.tensor([3]), torch.tensor([1])).item()
    q = net.item_gmf.weight.detach().numpy()[1]
    assert logit == pytest.approx(float(weights["user_gmf.weight"][3] @ q) + float(net.predict.bias.detach()), abs=1e-5)


def test_only_mode_has_no_per_user_table() -> None:
    net = NCFNet(4, 5, NCFConfig(model="neumf", user_history="only"), played=PlayedItems(USERS, ITEMS, 4, 5))
    names = {name for name, _ in net.named_parameters()}
    assert not {"user_gmf.weight", "user_mlp.weight"} & names
    assert {"item_hist_gmf.weight", "item_hist_mlp.weight"} <= names
    assert net.sparse_parameters() == []  # item tables only: their gradients are dense


@pytest.mark.parametrize("kind", ["gmf", "neumf"])
def test_history_models_learn_the_planted_clusters(planted, kind: str) -> None:
    model = fit(planted, SMALL.replace(model=kind, user_history="only"))
    assert hr_at_10(model, planted) > 0.8
    # What is scored and stored is one plain vector per user, for every user.
    assert model.weights["user_gmf.weight"].shape == (planted.n_users, SMALL.factors)


def test_history_training_is_deterministic(planted) -> None:
    config = SMALL.replace(model="gmf", user_history="only", gmf_epochs=2)
    a = train(config, planted.user_idx, planted.item_idx, planted.n_users, planted.n_items)
    b = train(config, planted.user_idx, planted.item_idx, planted.n_users, planted.n_items)
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name])
