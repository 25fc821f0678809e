"""The NCF networks (He et al. 2017): GMF, MLP and their fusion NeuMF, as one torch module.

Parameter names are those of the numpy state a trained model is saved as (``recsys.ncf.scoring``),
so ``state_dict()`` and ``TrainedNCF.weights`` convert into each other without a mapping table.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recsys.ncf.config import NCFConfig

# Embedding tables: the parameters whose rows a batch touches sparsely.
EMBEDDING_NAMES = ("user_gmf", "item_gmf", "user_mlp", "item_mlp", "user_bias", "item_bias")


class NCFNet(nn.Module):
    """GMF, MLP or NeuMF, chosen by ``config.model``.

    ``logit(u, i) = h . [p_u * q_i ; MLP([p'_u ; q'_i])] + b (+ b_u) (+ b_i)``, with the GMF part only for
    ``gmf``/``neumf`` and the MLP part only for ``mlp``/``neumf``.

    Parameters
    ----------
    n_users, n_items : int
        Sizes of the embedding tables.
    config : NCFConfig
    sparse : bool
        Whether the embedding tables produce sparse gradients (for ``torch.optim.SparseAdam``).
    """

    def __init__(self, n_users: int, n_items: int, config: NCFConfig, sparse: bool = True) -> None:
        super().__init__()
        self.kind = config.model
        self.use_gmf = config.model in ("gmf", "neumf")
        self.use_mlp = config.model in ("mlp", "neumf")
        predict_in = 0
        if self.use_gmf:
            self.user_gmf = nn.Embedding(n_users, config.factors, sparse=sparse)
            self.item_gmf = nn.Embedding(n_items, config.factors, sparse=sparse)
            predict_in += config.factors
        if self.use_mlp:
            half = config.mlp_layers[0] // 2
            self.user_mlp = nn.Embedding(n_users, half, sparse=sparse)
            self.item_mlp = nn.Embedding(n_items, half, sparse=sparse)
            widths = config.mlp_layers
            self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
            predict_in += widths[-1]
        self.user_bias = nn.Embedding(n_users, 1, sparse=sparse) if config.user_bias else None
        self.item_bias = nn.Embedding(n_items, 1, sparse=sparse) if config.item_bias else None
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

    def dense_parameters(self) -> list[nn.Parameter]:
        sparse_ids = {id(p) for p in self.embedding_parameters()}
        return [p for p in self.parameters() if id(p) not in sparse_ids and p.requires_grad]

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Logits, shape (n,), for pairs ``(user_idx[j], item_idx[j])``."""
        return self.forward_with_penalty(user_idx, item_idx)[0]

    def forward_with_penalty(
        self, user_idx: torch.Tensor, item_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits, shape (n,), and the sum of squares of the embedding rows they used (scalar)."""
        parts = []
        penalty = torch.zeros((), dtype=torch.float32)
        if self.use_gmf:
            p = self.user_gmf(user_idx)
            q = self.item_gmf(item_idx)
            parts.append(p * q)
            penalty = penalty + p.square().sum() + q.square().sum()
        if self.use_mlp:
            p = self.user_mlp(user_idx)
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

    def load_numpy_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load arrays produced by :meth:`numpy_weights` (all keys must match)."""
        self.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()})
