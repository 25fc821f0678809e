"""Training GMF / MLP / NeuMF on implicit feedback with sampled negatives.

Embedding tables produce sparse gradients (``nn.Embedding(sparse=True)``) and are stepped by an
optimizer that only touches the rows a batch used: plain SGD (GMF pre-training, NeuMF fine-tuning)
or ``torch.optim.SparseAdam`` (MLP pre-training); the small dense layers use ``torch.optim.Adam``.
So a step costs what the batch costs, not what a 10^6-row table costs
(``bench/bench_training.py`` measures both against a dense-Adam loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from recsys.ncf import distributed
from recsys.ncf.config import NCFConfig
from recsys.ncf.history import EpochStats
from recsys.ncf.model import NCFNet
from recsys.ncf.played import PlayedItems
from recsys.ncf.sampling import ObservedPairs, epoch_samples
from recsys.ncf.scoring import TrainedNCF

EpochCallback = Callable[[EpochStats], None]
EvalCallback = Callable[[TrainedNCF], float]


def train(
    config: NCFConfig,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    n_users: int,
    n_items: int,
    weights: np.ndarray | None = None,
    callback: EpochCallback | None = None,
    evaluate: EvalCallback | None = None,
    keep_best: bool = False,
) -> TrainedNCF:
    """Train the model ``config.model`` on observed pairs.

    Every observed pair is a positive; each epoch draws ``config.negatives`` fresh unobserved items
    per positive as negatives (label 0). For ``neumf`` with ``config.pretrain``, GMF and MLP are
    trained first and fused (predict layers blended by ``config.alpha``), then fine-tuned for
    ``config.finetune_epochs`` (0 by default: see ``NCFConfig.finetune_epochs``).

    Parameters
    ----------
    config : NCFConfig
    user_idx, item_idx : np.ndarray, shape (n,)
        Row positions of the observed pairs, in ``[0, n_users)`` / ``[0, n_items)``.
    n_users, n_items : int
        Sizes of the embedding tables (users or items without pairs keep their initial rows).
    weights : np.ndarray, shape (n,), optional
        Per-pair strength in [0, 1] (the casino's normalized score). A positive's log-loss term is
        multiplied by ``floor + (1 - floor) * weight`` (``config.positive_weight_floor``); negatives
        weigh 1. Weighting the loss, rather than using the weight as a soft label, keeps the target
        "played it" while letting strong plays pull harder; the floor keeps a light play from
        counting as no evidence at all.
    callback : callable, optional
        Called with an :class:`EpochStats` after every epoch of every stage.
    evaluate : callable, optional
        ``evaluate(model) -> HR@10`` run after every epoch; its result lands in ``EpochStats``.
    keep_best : bool
        Model selection on ``evaluate`` (which should then score validation cases, not the test
        cases): each stage keeps the weights of its best epoch, and with ``config.patience`` stops
        after that many epochs without improvement. ``history`` still lists every epoch run.

    Under ``torchrun`` (after :func:`recsys.ncf.distributed.init_from_env`) every rank calls this
    with the same arguments and trains its share of each batch with DDP; only the leader calls
    ``callback`` and ``evaluate``. Every rank returns the same model.

    Returns
    -------
    TrainedNCF
    """
    user_idx = np.asarray(user_idx, dtype=np.int64)
    item_idx = np.asarray(item_idx, dtype=np.int64)
    if user_idx.ndim != 1 or user_idx.shape != item_idx.shape:
        raise ValueError("user_idx and item_idx must be 1-d arrays of the same length")
    if user_idx.size == 0:
        raise ValueError("no interactions to train on")
    if user_idx.min() < 0 or user_idx.max() >= n_users or item_idx.min() < 0 or item_idx.max() >= n_items:
        raise ValueError("user_idx / item_idx out of range of n_users / n_items")
    pair_weight = None
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32)
        if weights.shape != user_idx.shape:
            raise ValueError("weights must have one entry per pair")
        if not np.all((weights >= 0.0) & (weights <= 1.0)):
            raise ValueError("weights must lie in [0, 1]")
        floor = np.float32(config.positive_weight_floor)
        pair_weight = floor + (np.float32(1.0) - floor) * weights

    if not distributed.is_leader():
        callback = evaluate = None  # the leader evaluates and tells the others what to keep
    elif keep_best and evaluate is None:
        raise ValueError("keep_best needs an evaluate callback")
    torch.set_num_threads(distributed.threads_per_process(config.threads))
    rng = np.random.default_rng(config.seed)
    observed = ObservedPairs(user_idx, item_idx, n_items)
    data = (user_idx, item_idx, pair_weight, observed)
    played = PlayedItems(user_idx, item_idx, n_users, n_items) if config.user_history != "none" else None
    run = _Run(n_users, n_items, rng, [], callback, evaluate, keep_best, played)

    if config.model != "neumf":
        return _served(_train_stage(config.stage(config.model), data, run, None), run)
    init = None
    if config.pretrain:
        gmf = _train_stage(config.stage("gmf"), data, run, None)
        mlp = _train_stage(config.stage("mlp"), data, run, None)
        init = fuse_pretrained(gmf.weights, mlp.weights, config.alpha)
    return _served(_train_stage(config.stage("neumf"), data, run, init), run)


def _served(trained: TrainedNCF, run: _Run) -> TrainedNCF:
    """The trained weights as they are scored and stored (:meth:`NCFNet.serving_weights`)."""
    net = _network(trained.config, run)
    net.load_numpy_weights(trained.weights)
    return TrainedNCF(trained.config, net.serving_weights(), trained.history)


def _network(config: NCFConfig, run: _Run) -> NCFNet:
    return NCFNet(run.n_users, run.n_items, config, sparse=config.sparse, played=run.played)


def fuse_pretrained(gmf: dict[str, np.ndarray], mlp: dict[str, np.ndarray], alpha: float) -> dict[str, np.ndarray]:
    """NeuMF weights from trained GMF and MLP weights (He et al. 2017, section 3.4.1).

    The predict layer is ``[alpha * h_gmf ; (1 - alpha) * h_mlp]`` and the biases are blended the same
    way, so the fused model's logit starts as exactly ``alpha * gmf_logit + (1 - alpha) * mlp_logit``.
    """
    fused = {k: v.copy() for k, v in gmf.items() if k.startswith(("user_gmf", "item_gmf", "item_hist_gmf"))}
    fused.update(
        {k: v.copy() for k, v in mlp.items() if k.startswith(("user_mlp", "item_mlp", "item_hist_mlp", "mlp."))}
    )
    fused["predict.weight"] = np.concatenate(
        [alpha * gmf["predict.weight"], (1.0 - alpha) * mlp["predict.weight"]], axis=1
    ).astype(np.float32)
    fused["predict.bias"] = (alpha * gmf["predict.bias"] + (1.0 - alpha) * mlp["predict.bias"]).astype(np.float32)
    for name in ("user_bias.weight", "item_bias.weight"):
        if name in gmf:
            fused[name] = (alpha * gmf[name] + (1.0 - alpha) * mlp[name]).astype(np.float32)
    return fused


def build_optimizers(net: NCFNet, config: NCFConfig) -> list[torch.optim.Optimizer]:
    """One optimizer for the embedding tables (``config.optimizer``) and Adam for the dense layers.

    - ``sgd``: plain SGD whose step per occurrence of a row is ``lr`` (the loss is a batch mean, so
      the rate is scaled by the batch size), as per-example SGD; dense layers use Adam at ``dense_lr``.
    - ``adam``: ``SparseAdam`` (lazy Adam: only touched rows move) or, with ``sparse=False``, Adam.
    - ``adagrad``: Adagrad, which accepts sparse gradients.
    """
    embeddings = net.embedding_parameters()
    dense = net.dense_parameters()
    dense_lr = config.lr
    if config.optimizer == "sgd":
        tables: torch.optim.Optimizer | None = torch.optim.SGD(embeddings, lr=config.lr * config.batch_size)
        dense_lr = config.dense_lr
    elif config.optimizer == "adagrad":
        tables = torch.optim.Adagrad(embeddings, lr=config.lr)
    elif config.sparse:
        # Tables with dense gradients (item tables next to played-items bags) join plain Adam.
        sparse = net.sparse_parameters()
        sparse_ids = {id(p) for p in sparse}
        dense = [p for p in embeddings if id(p) not in sparse_ids] + dense
        tables = torch.optim.SparseAdam(sparse, lr=config.lr) if sparse else None
    else:
        tables = torch.optim.Adam(embeddings, lr=config.lr)
    optimizers = [tables] if tables is not None else []
    if dense:
        optimizers.append(torch.optim.Adam(dense, lr=dense_lr, weight_decay=config.weight_decay))
    return optimizers


@dataclass
class _Run:
    """What every stage of one ``train`` call shares."""

    n_users: int
    n_items: int
    rng: np.random.Generator
    history: list[EpochStats]
    callback: EpochCallback | None
    evaluate: EvalCallback | None
    keep_best: bool
    played: PlayedItems | None


def _train_stage(
    config: NCFConfig,
    data: tuple[np.ndarray, np.ndarray, np.ndarray | None, ObservedPairs],
    run: _Run,
    init: dict[str, np.ndarray] | None,
) -> TrainedNCF:
    user_idx, item_idx, pair_weight, observed = data
    # Seeding here (not once per run) makes each stage's initial weights independent of the others.
    torch.manual_seed(config.seed)
    net = _network(config, run)
    if init is not None:
        net.load_numpy_weights(init)
    optimizers = build_optimizers(net, config)
    forward = distributed.data_parallel(net)
    net.train()
    best_hr, best_weights, since_best = -1.0, None, 0
    for epoch in range(1, config.epochs + 1):
        if epoch > 1 and config.lr_decay != 1.0:
            for opt in optimizers:
                for group in opt.param_groups:
                    group["lr"] *= config.lr_decay
        started = time.perf_counter()
        loss, samples = train_epoch(forward, optimizers, config, user_idx, item_idx, pair_weight, observed, run.rng)
        seconds = time.perf_counter() - started
        hr, eval_seconds = None, 0.0
        if run.evaluate is not None:
            eval_started = time.perf_counter()
            hr = float(run.evaluate(TrainedNCF(config, net.serving_weights(copy=False))))
            eval_seconds = time.perf_counter() - eval_started
        stats = EpochStats(config.model, epoch, config.epochs, loss, seconds, samples, hr, eval_seconds)
        run.history.append(stats)
        if run.callback is not None:
            run.callback(stats)
        if run.keep_best:
            # The leader evaluated; every rank keeps (and stops at) the same epoch.
            improved = distributed.broadcast_object(hr is not None and hr > best_hr)
            if improved:
                best_hr, best_weights, since_best = (hr if hr is not None else best_hr), net.numpy_weights(), 0
            else:
                since_best += 1
                if config.patience is not None and since_best >= config.patience:
                    break
    weights = best_weights if best_weights is not None else net.numpy_weights()
    distributed.check_in_sync(weights)
    return TrainedNCF(config, weights, list(run.history))


def train_epoch(
    forward: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    optimizers: list[torch.optim.Optimizer],
    config: NCFConfig,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    pair_weight: np.ndarray | None,
    observed: ObservedPairs,
    rng: np.random.Generator,
) -> tuple[float, int]:
    """One pass over fresh samples; returns (mean weighted log loss, number of samples).

    ``forward(users, items) -> (logits, penalty)`` is ``NCFNet.forward_with_penalty`` or its DDP
    wrapper (:func:`recsys.ncf.distributed.data_parallel`). Under DDP each rank computes its share
    of every batch; the loss is scaled by the number of ranks because DDP averages the gradients,
    so a step is the step on the whole batch. A last batch smaller than the number of ranks is
    skipped (a rank without samples cannot take part in a sparse gradient reduction).
    """
    users, items, labels, sample_weight = epoch_samples(
        user_idx, item_idx, observed, config.negatives, rng, pair_weight, group_users=config.user_history != "none"
    )
    users_t, items_t = torch.from_numpy(users), torch.from_numpy(items)
    labels_t = torch.from_numpy(labels)
    weight_t = torch.from_numpy(sample_weight) if pair_weight is not None else None
    ranks = distributed.world_size()
    scale = ranks / config.batch_size
    total = 0.0
    n = users.shape[0]
    trained = 0
    for start in range(0, n, config.batch_size):
        stop = min(start + config.batch_size, n)
        if stop - start < ranks:
            continue
        lo, hi = distributed.share(start, stop)
        # A positive's item is left out of its user's played-items bag (used with user_history only).
        logits, penalty = forward(users_t[lo:hi], items_t[lo:hi], labels_t[lo:hi] > 0)
        batch_weight = weight_t[lo:hi] if weight_t is not None else None
        log_loss = F.binary_cross_entropy_with_logits(logits, labels_t[lo:hi], weight=batch_weight, reduction="sum")
        # Divided by the nominal batch size, so a short last batch weighs each sample the same.
        loss = (log_loss + config.reg * penalty) * scale
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        total += float(log_loss.detach())
        trained += stop - start
    return distributed.all_reduce_sum(total) / trained, trained
