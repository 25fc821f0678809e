"""Hyperparameters of one NCF training run, in one dataclass (a saved model carries it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODEL_KINDS = ("gmf", "mlp", "neumf")
USER_HISTORY = ("none", "add", "only")
OPTIMIZERS = ("sgd", "adam", "adagrad")


@dataclass(frozen=True)
class NCFConfig:
    """Everything that decides what a training run produces.

    A ``neumf`` run with ``pretrain`` has three stages: GMF (``gmf_*`` fields), MLP (``mlp_*``
    fields), then the fused NeuMF (``finetune_*`` fields); without ``pretrain`` it is one stage
    (``optimizer``, ``lr``, ``epochs``). A ``gmf`` or ``mlp`` run is just its own stage.
    :meth:`stage` gives the flat configuration one stage trains with (its ``optimizer`` / ``lr`` /
    ``epochs`` are that stage's).

    The defaults were tuned on MovieLens-1M under the NCF paper's protocol (leave-latest-out, 99
    sampled negatives); the figures behind each choice are in the comments. They are the research
    CLI's (``recsys evaluate``). The training worker sets every field its settings group names
    (``recsys.settings.Training``, for every stage it trains: ``recsys.worker.ncf_config``) and keeps
    these defaults for the rest (initialisation, biases, ``alpha``, the weight floor, ...).
    """

    model: str = "neumf"
    """``gmf``, ``mlp`` or ``neumf`` (He et al. 2017, sections 3.2-3.4)."""

    factors: int = 192
    """GMF embedding size (= GMF's predictive factors). Rendle et al. 2020 find dot-product MF keeps
    improving up to 192 with the right L2. ML-1M, GMF alone after 30 epochs (HR@10 / NDCG@10):
    128 -> 0.723/0.449, 192 -> 0.731/0.450, 256 -> 0.725/0.449 (35 epochs)."""

    mlp_layers: tuple[int, ...] = (128, 64, 32)
    """Widths of the MLP tower: the first is the concatenated user+item MLP embedding (so each
    embedding has ``mlp_layers[0] // 2`` entries), the last is MLP's predictive factors; halving
    per layer is the paper's tower pattern. ML-1M: (256, 128, 64) reached HR@10 0.683 vs 0.670 for
    this tower but trains ~3x slower, and either adds the same ~0.001-0.002 to the fused NeuMF."""

    negatives: int = 8
    """Sampled negatives per positive, resampled every epoch. 8 as in Rendle et al. 2020's tuned MF
    (the paper finds 3-6 enough for its Adam runs). ML-1M: 16, with a faster-decaying rate over 16
    epochs to keep the time, gave GMF 0.709/0.434 against 0.731/0.450 for 8."""

    batch_size: int = 4096
    """Samples per step. Large batches keep per-step Python/autograd overhead small on CPUs; with
    ``sgd`` the step is scaled so each occurrence moves by ``lr`` as in per-example SGD."""

    reg: float = 0.0025
    """L2 penalty ``reg * |row|^2`` on the embedding rows (and biases) of every sample, i.e. per
    occurrence: frequent users/items are regularised more and the gradient stays sparse. 0.0025 here
    equals Rendle et al. 2020's 0.005 for ML-1M (their update uses ``reg * v``, the gradient of
    ``reg / 2 * |v|^2``). ML-1M, GMF-192 (HR@10 / NDCG@10): 0.0015 -> 0.719/0.440, 0.0025 ->
    0.731/0.449, 0.004 -> 0.717/0.440."""

    weight_decay: float = 0.0
    """L2 penalty on the dense layers (MLP tower, predict layer), applied by Adam."""

    init_std: float = 0.1
    """Standard deviation of the normal initialisation of embeddings. 0.1 as Rendle et al. 2020:
    the paper's 0.01 makes per-occurrence SGD start very slowly."""

    item_bias: bool = True
    """Add a learned per-item bias to the logit. The sampled protocol draws negatives uniformly, so
    how popular an item is carries much of the ranking (popularity alone: HR@10 0.45)."""

    user_bias: bool = False
    """Add a learned per-user bias to the logit (Rendle et al. 2020's MF has one). It cannot change
    a user's ranking, only how training shares the user's offset with the embeddings."""

    user_history: str = "none"
    """How a user's vector is made (``recsys.ncf.played``): ``none``, a free embedding row (the
    paper's NCF); ``add``, that row plus ``|N(u)|^-history_alpha * sum_{j in N(u)} y_j`` over the
    items they played (SVD++); ``only``, the played-items part alone (FISM, no per-user row)."""

    history_alpha: float = 0.5
    """Exponent of the bag size in the played-items part: 0 sums, 1 averages; 0.5 as SVD++."""

    learn_gmf_h: bool = False
    """Whether a ``gmf`` model learns its predict weights ``h``. Fixed to ones, GMF is exactly
    (biased) matrix factorisation (paper section 3.2) and the L2 penalty keeps its meaning; a learned
    ``h`` lets the model shrink ``p`` and ``q`` and grow ``h``, which dodges the penalty. The fused
    NeuMF always learns its predict layer."""

    gmf_optimizer: str = "sgd"
    gmf_lr: float = 0.01
    gmf_epochs: int = 30
    """GMF stage: plain SGD with a per-occurrence step, as Rendle et al. 2020's tuned MF. ML-1M
    (HR@10 / NDCG@10): Adam (SparseAdam) and Adagrad peaked near 0.71/0.43 within 5-8 epochs and
    then overfit; SGD at 0.01 climbs to 0.731/0.450 at epoch 30 and is flat after (10 more epochs
    at 0.005: 0.729/0.449); 0.02 decaying by 0.93 per epoch gets there by epoch ~23."""

    mlp_optimizer: str = "sgd"
    mlp_lr: float = 0.01
    mlp_epochs: int = 10
    mlp_reg: float = 0.0025
    mlp_init_std: float = 0.1
    """MLP stage: the same per-occurrence SGD, penalty and initialisation as GMF (dense layers: Adam
    at ``dense_lr``). ML-1M (HR@10 / NDCG@10): this reaches 0.684/0.403 at epoch 10; the paper's
    Adam (0.002, no penalty, N(0, 0.01)) peaks at 0.670-0.685/0.398-0.407 after 6 epochs and then
    overfits. Both are weaker than GMF; fused with GMF-192 at alpha 0.85 the SGD-trained tower gave
    0.733/0.451, the Adam-trained one 0.731-0.733/0.449-0.450."""

    finetune_optimizer: str = "sgd"
    finetune_lr: float = 0.002
    finetune_epochs: int = 0
    """Training of the fused NeuMF after pre-training. The paper fine-tunes it with plain SGD
    (Adam's moments are not carried over). On ML-1M every fine-tuning we measured lowered test
    NDCG@10 (1 epoch at SGD 0.002 / dense Adam 1e-4: 0.4475 -> 0.4450; 3 epochs at 0.005 / 1e-3:
    0.4502 -> 0.4163, the MLP tower overfits fast), so the default keeps the fused pre-trained
    models as they are: NeuMF is then the alpha-blend of the two towers' logits."""

    optimizer: str = "adam"
    lr: float = 0.001
    epochs: int = 10
    """NeuMF trained from scratch (``pretrain=False``): the paper's Adam at 0.001. Not tuned on ML-1M
    (the paper reports it below NeuMF with pre-training, 0.705 vs 0.730 HR@10)."""

    dense_lr: float = 0.001
    """Adam learning rate of the dense layers (MLP tower, predict layer, global bias) when the
    embeddings use ``sgd``."""

    lr_decay: float = 1.0
    """Every stage's learning rates are multiplied by this after each epoch."""

    patience: int | None = None
    """With ``train(..., keep_best=True)`` every stage keeps the weights of its best epoch by the
    ``evaluate`` score; with ``patience`` it also stops after that many epochs without a better one.
    None (run every epoch) by default: holdout curves can dip for several epochs and climb again
    (the worker's planted-cluster test: HR@10 0.489 at epoch 6, below it for five epochs, 0.568 at
    epoch 21)."""

    seed: int = 0
    """Seeds torch (initial weights) and the numpy generator (negatives, shuffling)."""

    threads: int = 2
    """``torch.set_num_threads``: the cores this process may use."""

    sparse: bool = True
    """Sparse embedding gradients (``nn.Embedding(sparse=True)``; ``SparseAdam`` for ``adam``): a
    step costs what the batch touches, not the 10^6-row table. ``False`` is the plain dense loop,
    kept to measure against (``bench/bench_training.py``)."""

    pretrain: bool = True
    """For ``neumf``: train GMF and MLP first, then fuse them (paper section 3.4.1)."""

    alpha: float = 0.85
    """Weight of GMF's predict layer against MLP's when fusing them. The paper uses 0.5, but here
    the MLP's logits spread 2-2.3x wider than GMF's and the MLP is the weaker tower (HR@10 0.67-0.68
    vs 0.73). ML-1M, GMF-192 fused with an MLP (HR@10 / NDCG@10): alpha 0.5 -> 0.718/0.437, 0.7 ->
    0.731/0.449, 0.85 -> 0.733/0.451, 1.0 (GMF alone) -> 0.731/0.450. The gain over GMF alone is
    within run-to-run noise (about +-0.002 NDCG@10)."""

    positive_weight_floor: float = 0.2
    """With per-pair ``weights`` in [0, 1], a positive's loss weight is
    ``floor + (1 - floor) * weight``: any play is evidence of interest, so a light play still counts
    for something instead of looking like an unobserved pair."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes kept with the model (data window, source); never read by training."""

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model must be one of {MODEL_KINDS}, not {self.model!r}")
        for name in ("optimizer", "gmf_optimizer", "mlp_optimizer", "finetune_optimizer"):
            if getattr(self, name) not in OPTIMIZERS:
                raise ValueError(f"{name} must be one of {OPTIMIZERS}, not {getattr(self, name)!r}")
        if self.user_history not in USER_HISTORY:
            raise ValueError(f"user_history must be one of {USER_HISTORY}, not {self.user_history!r}")
        if self.factors < 1 or not self.mlp_layers or min(self.mlp_layers) < 1:
            raise ValueError("factors and every MLP layer width must be positive")
        if self.mlp_layers[0] % 2:
            raise ValueError("mlp_layers[0] must be even: it is the user and item MLP embeddings side by side")
        if self.negatives < 1 or self.batch_size < 1 or self.threads < 1:
            raise ValueError("negatives, batch_size and threads must be positive")
        if self.patience is not None and self.patience < 1:
            raise ValueError("patience must be positive (or None: no early stop)")
        if min(self.epochs, self.gmf_epochs, self.mlp_epochs, self.finetune_epochs) < 0:
            raise ValueError("epochs must not be negative")
        if not 0.0 <= self.alpha <= 1.0 or not 0.0 <= self.positive_weight_floor <= 1.0:
            raise ValueError("alpha and positive_weight_floor must lie in [0, 1]")
        object.__setattr__(self, "mlp_layers", tuple(int(w) for w in self.mlp_layers))

    def stage(self, kind: str) -> NCFConfig:
        """The configuration a ``kind`` stage trains with: ``model=kind`` and that stage's optimizer,
        learning rate and epochs in ``optimizer`` / ``lr`` / ``epochs`` (for ``neumf`` with
        pre-training, the ``finetune_*`` values; without, the config as it is)."""
        if kind == "neumf":
            if not self.pretrain:
                return self.replace(model="neumf")
            return self.replace(
                model="neumf", optimizer=self.finetune_optimizer, lr=self.finetune_lr, epochs=self.finetune_epochs
            )
        if kind not in ("gmf", "mlp"):
            raise ValueError(f"unknown stage {kind!r}")
        changes: dict[str, Any] = {
            "model": kind,
            "optimizer": getattr(self, f"{kind}_optimizer"),
            "lr": getattr(self, f"{kind}_lr"),
            "epochs": getattr(self, f"{kind}_epochs"),
        }
        if kind == "mlp":
            changes.update(reg=self.mlp_reg, init_std=self.mlp_init_std)
        return self.replace(**changes)

    @property
    def total_epochs(self) -> int:
        """Epochs of every stage a run of this config trains."""
        if self.model == "neumf" and self.pretrain:
            return self.gmf_epochs + self.mlp_epochs + self.finetune_epochs
        return self.stage(self.model).epochs

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
