"""The NCF networks (He et al. 2017): GMF, MLP and their fusion NeuMF, as one torch module.

Parameter names are those of the numpy state a trained model is saved as (``recsys.ncf.scoring``),
so ``state_dict()`` and ``TrainedNCF.weights`` convert into each other without a mapping table.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.ncf.config import NCFConfig
from recsys.ncf.played import PlayedItems

# Embedding tables: the parameters whose rows a batch touches sparsely.
EMBEDDING_NAMES = (
    "user_gmf", "item_gmf", "user_mlp", "item_mlp", "user_bias", "item_bias", "item_hist_gmf", "item_hist_mlp"
)
# Users per chunk when every user's vector is computed from their played items.
USERS_PER_CHUNK = 1 << 16


class NCFNet(nn.Module):
    """GMF, MLP or NeuMF, chosen by ``config.model``.

    ``logit(u, i) = h . [p_u * q_i ; MLP([p'_u ; q'_i])] + b (+ b_u) (+ b_i)``, with the GMF part only for
    ``gmf``/``neumf`` and the MLP part only for ``mlp``/``neumf``.

    With ``config.user_history`` a user's vector in each tower is built from the items they played
    (``played``): ``p_u = [free row +] |N(u)|^-alpha * sum_{j in N(u)} y_j`` (SVD++ / FISM), with
    ``y`` the tower's ``item_hist_*`` table. A positive's own item is left out of its user's bag
    while training (FISM), so the model learns to predict an item from the *other* items played.

    Parameters
    ----------
    n_users, n_items : int
        Sizes of the embedding tables.
    config : NCFConfig
    sparse : bool
        Whether the embedding tables produce sparse gradients (for ``torch.optim.SparseAdam``).
    played : PlayedItems, optional
        Each user's training items; required with ``config.user_history``.
    """

    def __init__(
        self, n_users: int, n_items: int, config: NCFConfig, sparse: bool = True, played: PlayedItems | None = None
    ) -> None:
        super().__init__()
        self.kind = config.model
        self.n_users = n_users
        self.use_gmf = config.model in ("gmf", "neumf")
        self.use_mlp = config.model in ("mlp", "neumf")
        if config.user_history != "none" and played is None:
            raise ValueError(f"user_history={config.user_history!r} needs the users' played items")
        self.played = played if config.user_history != "none" else None
        self.history_alpha = config.history_alpha
        free_users = config.user_history != "only"
        # With played-items bags every batch touches most item rows, so sparse item gradients only
        # add coalescing (SparseAdam was ~40% of a step); the per-user tables stay sparse.
        sparse_items = sparse and self.played is None
        predict_in = 0
        if self.use_gmf:
            if free_users:
                self.user_gmf = nn.Embedding(n_users, config.factors, sparse=sparse)
            self.item_gmf = nn.Embedding(n_items, config.factors, sparse=sparse_items)
            if self.played is not None:
                self.item_hist_gmf = nn.Embedding(n_items, config.factors, sparse=sparse_items)
            predict_in += config.factors
        if self.use_mlp:
            half = config.mlp_layers[0] // 2
            if free_users:
                self.user_mlp = nn.Embedding(n_users, half, sparse=sparse)
            self.item_mlp = nn.Embedding(n_items, half, sparse=sparse_items)
            if self.played is not None:
                self.item_hist_mlp = nn.Embedding(n_items, half, sparse=sparse_items)
            widths = config.mlp_layers
            self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
            predict_in += widths[-1]
        self.user_bias = nn.Embedding(n_users, 1, sparse=sparse) if config.user_bias else None
        self.item_bias = nn.Embedding(n_items, 1, sparse=sparse_items) if config.item_bias else None
        self.predict = nn.Linear(predict_in, 1)
        self._init(config)

    def _init(self, config: NCFConfig) -> None:
        for name in EMBEDDING_NAMES:
            table = getattr(self, name, None)
            if table is None:
                continue
            if name in ("user_bias", "item_bias"):
                nn.init.zeros_(table.weight)
            else:
                nn.init.normal_(table.weight, std=config.init_std)
        if self.use_mlp:
            # Glorot for the ReLU tower and the predict layer, as the paper's Keras code does.
            for layer in self.mlp:
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.predict.bias)
        if self.kind == "gmf" and not config.learn_gmf_h:
            nn.init.ones_(self.predict.weight)
            self.predict.weight.requires_grad_(False)
        else:
            nn.init.xavier_uniform_(self.predict.weight)

    def embedding_parameters(self) -> list[nn.Parameter]:
        return [getattr(self, n).weight for n in EMBEDDING_NAMES if getattr(self, n, None) is not None]

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The embedding tables that produce sparse gradients."""
        return [getattr(self, n).weight for n in EMBEDDING_NAMES if getattr(getattr(self, n, None), "sparse", False)]

    def dense_parameters(self) -> list[nn.Parameter]:
        sparse_ids = {id(p) for p in self.embedding_parameters()}
        return [p for p in self.parameters() if id(p) not in sparse_ids and p.requires_grad]

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Logits, shape (n,), for pairs ``(user_idx[j], item_idx[j])``."""
        return self.forward_with_penalty(user_idx, item_idx)[0]

    def user_vectors(
        self, tower: str, user_idx: torch.Tensor, item_idx: torch.Tensor | None = None,
        exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The users' vectors in ``tower`` (``gmf`` or ``mlp``), shape (n, d).

        The free row, plus (with ``user_history``) the scaled sum of the played items' ``y`` rows;
        where ``exclude[j]`` is true, ``item_idx[j]`` is left out of user j's bag (it is the
        positive being predicted).
        """
        own = getattr(self, f"user_{tower}", None)
        vectors = own(user_idx) if own is not None else None
        if self.played is None:
            return vectors
        table = getattr(self, f"item_hist_{tower}")
        # One bag per distinct user of the batch (training batches hold each user's samples together).
        users, inverse = torch.unique(user_idx, return_inverse=True)
        items, offsets, counts = self.played.bags(users)
        total = F.embedding_bag(items, table.weight, offsets, mode="sum", sparse=table.sparse)[inverse]
        counts = counts[inverse].to(total.dtype)
        if exclude is not None:
            left_out = exclude.to(total.dtype)
            total = total - left_out[:, None] * table(item_idx)
            counts = counts - left_out
        history = total * counts.clamp(min=1.0).pow(-self.history_alpha)[:, None]
        return history if vectors is None else vectors + history

    def forward_with_penalty(
        self, user_idx: torch.Tensor, item_idx: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits, shape (n,), and the sum of squares of the embedding rows they used (scalar).

        ``exclude`` (bool, shape (n,)): pairs whose item is in the user's played items and is left
        out of the bag (the positives, while training with ``user_history``).
        """
        parts = []
        penalty = torch.zeros((), dtype=torch.float32)
        if self.use_gmf:
            p = self.user_vectors("gmf", user_idx, item_idx, exclude)
            q = self.item_gmf(item_idx)
            parts.append(p * q)
            penalty = penalty + p.square().sum() + q.square().sum()
        if self.use_mlp:
            p = self.user_vectors("mlp", user_idx, item_idx, exclude)
            q = self.item_mlp(item_idx)
            penalty = penalty + p.square().sum() + q.square().sum()
            x = torch.cat([p, q], dim=1)
            for layer in self.mlp:
                x = torch.relu(layer(x))
            parts.append(x)
        features = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        logits = self.predict(features).squeeze(-1)
        for table, idx in ((self.user_bias, user_idx), (self.item_bias, item_idx)):
            if table is not None:
                b = table(idx).squeeze(-1)
                logits = logits + b
                penalty = penalty + b.square().sum()
        return logits, penalty

    def numpy_weights(self, copy: bool = True) -> dict[str, np.ndarray]:
        """Every parameter as a float32 numpy array, keyed by its ``state_dict`` name."""
        out = {}
        for name, tensor in self.state_dict().items():
            array = tensor.detach().cpu().numpy()
            out[name] = array.copy() if copy else array
        return out

    def serving_weights(self, copy: bool = True) -> dict[str, np.ndarray]:
        """:meth:`numpy_weights` with every user's whole vector in ``user_gmf`` / ``user_mlp``.

        Without ``user_history`` these are the trained weights. With it, each user's vector is
        computed from all their played items (nothing left out) once, so scoring, the stored player
        embeddings and FAISS see one plain vector per user; the ``item_hist_*`` tables stay, to
        build a new player's vector from their plays at request time. ``copy`` as :meth:`numpy_weights`.
        """
        weights = self.numpy_weights(copy=copy)
        if self.played is None:
            return weights
        with torch.no_grad():
            for tower in ("gmf", "mlp"):
                if not getattr(self, f"use_{tower}"):
                    continue
                chunks = [
                    self.user_vectors(tower, torch.arange(start, min(start + USERS_PER_CHUNK, self.n_users)))
                    for start in range(0, self.n_users, USERS_PER_CHUNK)
                ]
                weights[f"user_{tower}.weight"] = torch.cat(chunks).numpy()
        return weights

    def load_numpy_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load arrays produced by :meth:`numpy_weights` (all keys must match)."""
        self.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()})
