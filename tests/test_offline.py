"""Offline top-N lists: the exact ranking of the full model over each player's unplayed slots."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.ncf.config import NCFConfig
from recsys.ncf.model import NCFNet
from recsys.ncf.scoring import TrainedNCF, ncf_logits
from recsys.offline import top_n

PLAYERS, SLOTS = 50, 40


def random_model(config: NCFConfig, seed: int = 0) -> TrainedNCF:
    net = NCFNet(PLAYERS, SLOTS, config)
    rng = np.random.default_rng(seed)
    weights = {k: rng.normal(scale=0.5, size=v.shape).astype(np.float32) for k, v in net.numpy_weights().items()}
    return TrainedNCF(config, weights)


def brute_force(model: TrainedNCF, seen: set[tuple[int, int]], n: int) -> list[list[int]]:
    out = []
    for u in range(PLAYERS):
        slots = np.array([i for i in range(SLOTS) if (u, i) not in seen])
        scores = ncf_logits(model.weights, model.config, np.full(slots.size, u), slots)
        out.append(slots[np.argsort(-scores, kind="stable")[:n]].tolist())
    return out


@pytest.mark.parametrize(
    "config",
    [
        NCFConfig(model="neumf", factors=6, mlp_layers=(8, 6, 4), user_bias=True),
        NCFConfig(model="gmf", factors=6, learn_gmf_h=True),
        NCFConfig(model="mlp", mlp_layers=(8, 4)),
        NCFConfig(model="mlp", mlp_layers=(8,), item_bias=False),
    ],
    ids=["neumf", "gmf", "mlp", "mlp-no-hidden-layer"],
)
def test_without_prefilter_the_lists_are_the_full_models_exact_ranking(config: NCFConfig) -> None:
    model = random_model(config)
    rng = np.random.default_rng(1)
    seen_u = np.repeat(np.arange(PLAYERS), 30)
    seen_i = rng.integers(0, SLOTS, seen_u.size)
    seen = set(zip(seen_u.tolist(), seen_i.tolist(), strict=True))
    slots, scores = top_n(model, seen_u, seen_i, 5, prefilter=SLOTS, block=16)

    expected = brute_force(model, seen, 5)
    for u in range(PLAYERS):
        got = [s for s in slots[u].tolist() if s >= 0]
        assert got == expected[u], u
        assert len(got) == min(5, SLOTS - len({i for (p, i) in seen if p == u}))
        np.testing.assert_allclose(
            scores[u, : len(got)], ncf_logits(model.weights, config, np.full(len(got), u), np.array(got)), rtol=1e-5,
            atol=1e-5,
        )


def test_a_player_who_played_nearly_everything_gets_a_short_padded_list() -> None:
    model = random_model(NCFConfig(model="neumf", factors=4, mlp_layers=(6, 4)))
    seen_u = np.zeros(SLOTS - 2, dtype=np.int64)
    seen_i = np.arange(2, SLOTS)
    slots, scores = top_n(model, seen_u, seen_i, 5, prefilter=10)
    assert sorted(slots[0, :2].tolist()) == [0, 1]
    assert slots[0, 2:].tolist() == [-1, -1, -1] and np.all(np.isneginf(scores[0, 2:]))
    assert np.all(slots[1:] >= 0)
