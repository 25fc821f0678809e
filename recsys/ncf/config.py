"""Hyperparameters of one NCF training run, in one dataclass (a saved model carries it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODEL_KINDS = ("gmf", "mlp", "neumf")


@dataclass(frozen=True)
class NCFConfig:
    """Everything that decides what a training run produces.

    The defaults are the values tuned on MovieLens-1M under the NCF paper's protocol (see
    ``bench/`` and the evaluation report); casino data reuses them until tuned on its own hold-out.
    """

    model: str = "neumf"
    """``gmf``, ``mlp`` or ``neumf`` (He et al. 2017, sections 3.2-3.4)."""

    factors: int = 64
    """GMF embedding size, which is also GMF's number of predictive factors."""

    mlp_layers: tuple[int, ...] = (128, 64, 32)
    """Widths of the MLP tower: the first is the concatenated user+item MLP embedding (so each
    embedding has ``mlp_layers[0] // 2`` entries), the last is MLP's number of predictive factors.
    Halving per layer is the paper's tower pattern."""

    negatives: int = 4
    """Sampled negatives per positive, resampled every epoch (paper: 3-6 is best, Fig. 7)."""

    lr: float = 0.001
    """Learning rate of the sparse (embedding) and dense optimizers."""

    batch_size: int = 4096
    """Samples per step. Large batches keep the per-step Python/autograd overhead small on CPUs."""

    epochs: int = 20
    """Epochs of the final model (for ``neumf`` with pre-training: of the fused model)."""

    reg: float = 0.0
    """L2 penalty on the embedding rows of each batch, ``reg * sum(row ** 2) / batch_size`` per
    occurrence: frequent users/items are regularized more, like per-example SGD (Rendle et al. 2020),
    and the gradient stays sparse."""

    weight_decay: float = 0.0
    """L2 penalty on the dense layers (MLP tower, predict layer), applied by the dense optimizer."""

    init_std: float = 0.01
    """Standard deviation of the normal initialisation of embeddings (paper: 0.01)."""

    item_bias: bool = False
    """Add a learned per-item bias to the logit: the sampled-negative protocol rewards popularity."""

    seed: int = 0
    """Seeds torch and the numpy generator that samples negatives and shuffles."""

    threads: int = 2
    """``torch.set_num_threads``: the cores this process may use."""

    sparse: bool = True
    """Sparse embedding gradients with ``SparseAdam`` (step cost follows the batch, not the table).
    ``False`` is the plain dense-Adam loop, kept to measure against (``bench/bench_training.py``)."""

    pretrain: bool = True
    """For ``neumf``: first train GMF and MLP, then fuse them (paper section 3.4.1)."""

    pretrain_epochs: int = 20
    """Epochs of each of the GMF and MLP pre-training runs."""

    pretrain_lr: float = 0.001
    """Learning rate of the pre-training runs."""

    alpha: float = 0.5
    """Weight of GMF's predict layer against MLP's when fusing them (paper: 0.5)."""

    positive_weight_floor: float = 0.0
    """With per-pair ``weights`` in [0, 1], a positive's loss weight is
    ``floor + (1 - floor) * weight``: any play is evidence of interest, so a light play should
    still count for something rather than look like an unobserved pair."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes kept with the model (data window, source); never read by training."""

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model must be one of {MODEL_KINDS}, not {self.model!r}")
        if self.factors < 1 or not self.mlp_layers or min(self.mlp_layers) < 1:
            raise ValueError("factors and every MLP layer width must be positive")
        if self.mlp_layers[0] % 2:
            raise ValueError("mlp_layers[0] must be even: it is the user and item MLP embeddings side by side")
        if self.negatives < 1 or self.batch_size < 1 or self.epochs < 0 or self.threads < 1:
            raise ValueError("negatives, batch_size and threads must be positive, epochs non-negative")
        if not 0.0 <= self.alpha <= 1.0 or not 0.0 <= self.positive_weight_floor <= 1.0:
            raise ValueError("alpha and positive_weight_floor must lie in [0, 1]")
        object.__setattr__(self, "mlp_layers", tuple(int(w) for w in self.mlp_layers))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["mlp_layers"] = list(self.mlp_layers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NCFConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error so a typo cannot pass silently."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown NCFConfig fields: {sorted(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> NCFConfig:
        return dataclasses.replace(self, **changes)
