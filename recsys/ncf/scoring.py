"""A trained NCF model as plain numpy arrays: scoring, factors and state, with no torch needed.

Serving loads a model with :meth:`TrainedNCF.from_state` and scores one player against many slots
with :meth:`TrainedNCF.score_items`; nothing here imports torch, so an API process stays light.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.ncf.config import NCFConfig
from recsys.ncf.history import EpochStats

# Pairs scored per chunk in :func:`ncf_logits`: bounds the MLP activations to a few tens of MB.
SCORE_CHUNK = 1 << 16


def mlp_layer_names(weights: dict[str, np.ndarray]) -> list[str]:
    """``mlp.0``, ``mlp.1``, ...: the MLP tower's layers in order (none for a GMF model)."""
    count = sum(1 for k in weights if k.startswith("mlp.") and k.endswith(".weight"))
    return [f"mlp.{k}" for k in range(count)]


def ncf_logits(
    weights: dict[str, np.ndarray], config: NCFConfig, user_idx: np.ndarray, item_idx: np.ndarray
) -> np.ndarray:
    """NCF logits for pairs, in numpy (same maths as ``NCFNet.forward``).

    Parameters
    ----------
    weights : dict[str, np.ndarray]
        The model's arrays, keyed by ``NCFNet.state_dict()`` names.
    config : NCFConfig
        Says which towers exist.
    user_idx, item_idx : np.ndarray, shape (n,)

    Returns
    -------
    np.ndarray, shape (n,), float32
        Logits; ``1 / (1 + exp(-logit))`` is the predicted probability of interaction.
    """
    user_idx = np.asarray(user_idx, dtype=np.int64)
    item_idx = np.asarray(item_idx, dtype=np.int64)
    if user_idx.shape != item_idx.shape or user_idx.ndim != 1:
        raise ValueError("user_idx and item_idx must be 1-d arrays of the same length")
    out = np.empty(user_idx.shape[0], dtype=np.float32)
    h = weights["predict.weight"][0]
    b = weights["predict.bias"][0]
    use_gmf = config.model in ("gmf", "neumf")
    use_mlp = config.model in ("mlp", "neumf")
    n_gmf = config.factors if use_gmf else 0
    layers = mlp_layer_names(weights)
    for start in range(0, user_idx.shape[0], SCORE_CHUNK):
        u = user_idx[start : start + SCORE_CHUNK]
        i = item_idx[start : start + SCORE_CHUNK]
        logit = np.full(u.shape[0], b, dtype=np.float32)
        if use_gmf:
            logit += np.einsum("nf,nf,f->n", weights["user_gmf.weight"][u], weights["item_gmf.weight"][i], h[:n_gmf])
        if use_mlp:
            x = np.concatenate([weights["user_mlp.weight"][u], weights["item_mlp.weight"][i]], axis=1)
            for name in layers:
                x = np.maximum(x @ weights[f"{name}.weight"].T + weights[f"{name}.bias"], 0.0)
            logit += x @ h[n_gmf:]
        if "user_bias.weight" in weights:
            logit += weights["user_bias.weight"][u, 0]
        if "item_bias.weight" in weights:
            logit += weights["item_bias.weight"][i, 0]
        out[start : start + u.shape[0]] = logit
    return out


def item_logits(
    w: dict[str, np.ndarray], layers: list[str], items: np.ndarray, *, gmf=None, mlp=None, user_bias=None
) -> np.ndarray:
    """Logits of one user's vectors against many items: :meth:`TrainedNCF.score_items`'s maths, for
    a caller that holds the user's vectors (``gmf`` (f,), ``mlp`` (f',), ``user_bias``; None: the
    model has no such part) and ``layers = mlp_layer_names(w)``, such as serving, which keeps the
    layer names with the version instead of finding them per list.

    The MLP's first layer splits as ``W [p; q] = W_u p + W_i q``, so the user's share is computed
    once and the items' share is one matrix product. ``items``: (m,) int64 rows. Shape (m,), float32.
    """
    h = w["predict.weight"][0]
    logit = np.full(items.shape[0], w["predict.bias"][0], dtype=np.float32)
    n_gmf = 0
    if gmf is not None:
        n_gmf = gmf.shape[0]
        logit += w["item_gmf.weight"][items] @ (gmf * h[:n_gmf])
    if mlp is not None:
        q = w["item_mlp.weight"][items]
        if layers:
            first = w[f"{layers[0]}.weight"]
            half = mlp.shape[0]
            x = q @ first[:, half:].T + (first[:, :half] @ mlp + w[f"{layers[0]}.bias"])
            x = np.maximum(x, 0.0)
            for name in layers[1:]:
                x = np.maximum(x @ w[f"{name}.weight"].T + w[f"{name}.bias"], 0.0)
        else:
            x = np.concatenate([np.broadcast_to(mlp, (q.shape[0], mlp.shape[0])), q], axis=1)
        logit += x @ h[n_gmf:]
    if user_bias is not None:
        logit += user_bias
    if "item_bias.weight" in w:
        logit += w["item_bias.weight"][items, 0]
    return logit.astype(np.float32, copy=False)


@dataclass
class TrainedNCF:
    """A trained GMF/MLP/NeuMF model, as numpy arrays.

    Attributes
    ----------
    config : NCFConfig
        The configuration that produced it.
    weights : dict[str, np.ndarray]
        float32 arrays keyed by ``NCFNet.state_dict()`` names: ``user_gmf.weight`` (n_users, factors),
        ``item_gmf.weight`` (n_items, factors), ``user_mlp.weight`` / ``item_mlp.weight``
        (n, mlp_layers[0] // 2), ``mlp.{k}.weight`` / ``mlp.{k}.bias``, ``predict.weight``
        (1, predictive factors), ``predict.bias`` (1,), and ``user_bias.weight`` (n_users, 1) /
        ``item_bias.weight`` (n_items, 1) when ``config.user_bias`` / ``config.item_bias``.
    history : list[EpochStats]
        Every epoch of every stage, in order.
    """

    config: NCFConfig
    weights: dict[str, np.ndarray]
    history: list[EpochStats] = field(default_factory=list)

    @property
    def n_users(self) -> int:
        key = "user_gmf.weight" if "user_gmf.weight" in self.weights else "user_mlp.weight"
        return int(self.weights[key].shape[0])

    @property
    def n_items(self) -> int:
        key = "item_gmf.weight" if "item_gmf.weight" in self.weights else "item_mlp.weight"
        return int(self.weights[key].shape[0])

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """Logits for pairs, shape (n,), float32 (monotone in the predicted probability)."""
        return ncf_logits(self.weights, self.config, user_idx, item_idx)

    def score_items(self, user_idx: int, item_idx: np.ndarray | None = None) -> np.ndarray:
        """Logits of one user against many items (the serving path).

        The MLP's first layer splits as ``W [p; q] = W_u p + W_i q``, so the user's share is
        computed once and the items' share is one matrix product.

        Parameters
        ----------
        user_idx : int
        item_idx : np.ndarray, shape (m,), optional
            Items to score; every item when omitted.

        Returns
        -------
        np.ndarray, shape (m,), float32
        """
        w = self.weights
        items = np.arange(self.n_items) if item_idx is None else np.asarray(item_idx, dtype=np.int64)
        return item_logits(
            w,
            mlp_layer_names(w),
            items,
            gmf=w["user_gmf.weight"][user_idx] if "user_gmf.weight" in w else None,
            mlp=w["user_mlp.weight"][user_idx] if "user_mlp.weight" in w else None,
            user_bias=w["user_bias.weight"][user_idx, 0] if "user_bias.weight" in w else None,
        )

    def score_all(self, user_idx: np.ndarray) -> np.ndarray:
        """Logits of each user against every item, shape (len(user_idx), n_items), float32
        (full-catalogue ranking in ``recsys.evaluation.evaluate_full``)."""
        return np.stack([self.score_items(int(u)) for u in np.asarray(user_idx)])

    @property
    def user_factors(self) -> dict[str, np.ndarray]:
        """User embeddings by tower: ``{"gmf": (n_users, factors), "mlp": (n_users, mlp_layers[0] // 2)}``."""
        return {t: self.weights[f"user_{t}.weight"] for t in ("gmf", "mlp") if f"user_{t}.weight" in self.weights}

    @property
    def item_factors(self) -> dict[str, np.ndarray]:
        """Item embeddings by tower: ``{"gmf": (n_items, factors), "mlp": (n_items, mlp_layers[0] // 2)}``."""
        return {t: self.weights[f"item_{t}.weight"] for t in ("gmf", "mlp") if f"item_{t}.weight" in self.weights}

    def state(self) -> dict[str, Any]:
        """Everything needed to score: ``{"config": JSON-able dict, "history": JSON-able list,
        "weights": {name: float32 ndarray}}``."""
        return {
            "config": self.config.to_dict(),
            "history": [s.to_dict() for s in self.history],
            "weights": {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.weights.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrainedNCF:
        """Inverse of :meth:`state`."""
        history: Iterable[dict[str, Any]] = state.get("history", [])
        return cls(
            config=NCFConfig.from_dict(dict(state["config"])),
            weights={k: np.asarray(v, dtype=np.float32) for k, v in state["weights"].items()},
            history=[EpochStats.from_dict(dict(s)) for s in history],
        )
