"""The training worker: interactions -> NeuMF -> evaluated, gated, versioned embeddings in PostgreSQL.

One orchestrator, reading like the job's steps. The model and the evaluation know no SQL; this
module hands them arrays and hands their results to ``recsys.db``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from recsys.db import versions
from recsys.db.training_data import InteractionData, latest_day, load_interactions
from recsys.errors import RecsysError
from recsys.holdout import Holdout, split_latest
from recsys.settings import Gate, Settings, Training

log = logging.getLogger(__name__)

EPOCH_DAY = date(1970, 1, 1)

# The stages of a NeuMF run with pre-training that the worker trains, each with every training setting.
STAGES = ("gmf", "mlp")


class TrainingError(RecsysError):
    pass


def is_training_busy(exc: BaseException) -> bool:
    """Whether ``exc`` says another run holds the training lock (the only VersionError naming no version)."""
    return isinstance(exc, versions.VersionError) and exc.version_id is None


@dataclass
class TrainOutcome:
    version_id: int
    activated: bool
    gate: dict[str, Any]
    metrics: dict[str, Any]
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)  # the TrainedNCF, for callers that inspect it
    data: InteractionData | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        """Whether the quality gate passed the version (active, or ``ready`` with ``activate=False``)."""
        return bool(self.gate.get("passed"))

    @property
    def status(self) -> str:
        """``active``, ``ready`` (passed the gate, not activated: ``--no-activate``) or ``refused``."""
        return "active" if self.activated else "ready" if self.passed else "refused"


def ncf_config(training: Training, n_pairs: int):
    """The worker's NCFConfig: every field of ``training`` named like an ``NCFConfig`` field, for the
    model and for every stage the worker trains.

    So one optimizer, learning rate, penalty and epoch count hold for every stage: ``lr`` is also
    ``gmf_lr`` and ``mlp_lr``, ``reg`` also ``mlp_reg``, and so on. With ``pretrain`` (the default) a
    ``neumf`` run trains GMF and MLP for ``epochs`` each and fuses them (``NCFConfig.alpha``) without
    fine-tuning (``NCFConfig.finetune_epochs`` is 0); the model's other hyperparameters are
    ``NCFConfig``'s own. A player's vector is built from the slots they played (``user_history``,
    FISM by default). The batch is ``batch_size`` at most, and smaller when the data would give an
    epoch fewer than ``min_steps`` steps: a demo casino's 50,000 pairs make 245,000 samples, 30
    steps of 8,192, too few for Adam to get anywhere in a few epochs (docs/training.md)."""
    from recsys.ncf.config import NCFConfig

    model_fields = {f.name for f in dataclasses.fields(NCFConfig)}
    shared = {f.name: getattr(training, f.name) for f in dataclasses.fields(training) if f.name in model_fields}
    samples = n_pairs * (1 + training.negatives)
    shared["batch_size"] = max(64, min(training.batch_size, samples // training.min_steps))
    stages = {
        f"{kind}_{name}": value
        for kind in STAGES
        for name, value in shared.items()
        if f"{kind}_{name}" in model_fields
    }
    return NCFConfig(**shared, **stages, extra={"pairs": n_pairs})


def run_training(
    engine, settings: Settings, *, end_day: date | None = None, activate: bool = True
) -> TrainOutcome:
    """Train, evaluate, write a version, gate it and activate it when it passes.

    With ``activate=False`` (``--no-activate``) a version that passes the gate ends ``ready``, with
    its offline top-N written but no activation, NOTIFY or retirement: a candidate for an experiment
    (docs/experiments.md) that serves no one until an experiment or an activation says so.

    A crash at any step leaves the version ``failed`` (or ``training`` if the process was killed,
    which the next run marks failed); only a finished version passing the gate becomes active.

    Under ``torchrun`` this runs on rank 0 (the leader) only, and the other ranks run
    :func:`follow_training`: the leader hands them the training pairs and they train in step (DDP).
    """
    started = time.perf_counter()
    stages: dict[str, float] = {}
    with _Followers() as followers, versions.training_lock(engine):
        abandoned = versions.fail_abandoned(engine)
        if abandoned:
            log.warning("marked abandoned training versions as failed: %s", abandoned)

        end_day = end_day or latest_day(engine)
        if end_day is None:
            raise TrainingError("no interactions to train on: run `recsys consolidate` after loading sessions")
        start_day = end_day - timedelta(days=settings.training.window_days - 1)
        holdout_start = end_day - timedelta(days=settings.training.holdout_days - 1)

        t = time.perf_counter()
        data = load_interactions(engine, start_day, end_day)
        stages["load"] = time.perf_counter() - t
        log.info(
            "loaded %s pairs of %s players x %s slots (%s .. %s) in %.1f s",
            f"{data.n_pairs:,}",
            f"{len(data.player_keys):,}",
            f"{len(data.slot_keys):,}",
            start_day,
            end_day,
            stages["load"],
        )
        holdout = time_holdout(data, settings.training)
        if holdout.test_player_idx.size == 0:
            raise TrainingError(f"no player discovered a new slot in the holdout days {holdout_start} .. {end_day}")
        config = ncf_config(settings.training, data.n_pairs)
        version_id = versions.create_version(
            engine,
            config.model,
            config.to_dict(),
            data_start=start_day,
            data_end=end_day,
            holdout_start=holdout_start,
        )
        log.info(
            "version %d: training %s on %s pairs, %d test players",
            version_id,
            config.model,
            f"{int(holdout.train.sum()):,}",
            holdout.test_player_idx.size,
        )
        try:
            outcome = _train_and_publish(
                engine, settings, config, data, holdout, version_id, stages, followers, activate=activate
            )
        except BaseException as exc:
            versions.fail_version(engine, version_id, f"{type(exc).__name__}: {exc}")
            raise
    outcome.seconds = time.perf_counter() - started
    outcome.stage_seconds = stages
    return outcome


def follow_training() -> bool:
    """A torchrun rank other than the leader: receive the leader's pairs and train alongside it.

    Returns False when the leader stopped before training (its own error says why).
    """
    from recsys.ncf import distributed
    from recsys.ncf.config import NCFConfig
    from recsys.ncf.training import train

    job = distributed.broadcast_object()
    if job is None:
        distributed.shutdown()
        return False
    arrays = distributed.broadcast_arrays()
    train(
        NCFConfig.from_dict(job["config"]),
        arrays["user_idx"],
        arrays["item_idx"],
        job["n_players"],
        job["n_slots"],
        weights=arrays["weights"],
        keep_best=job["keep_best"],
    )
    distributed.shutdown()
    return True


class _Followers:
    """The other torchrun ranks, waiting in :func:`follow_training` (nothing in a single process).

    :meth:`hand_over` sends them the training job; leaving the ``with`` block without having done so
    (no data, lock held, an error) tells them there is none, so they exit instead of waiting.
    """

    def __init__(self) -> None:
        from recsys.ncf import distributed  # torch: imported when training, not with this module

        self.distributed = distributed
        self.waiting = distributed.active()

    def __enter__(self) -> _Followers:
        return self

    def hand_over(
        self, config, n_players: int, n_slots: int, keep_best: bool, arrays: dict[str, np.ndarray | None]
    ) -> None:
        if not self.waiting:
            return
        self.waiting = False
        job = {"config": config.to_dict(), "n_players": n_players, "n_slots": n_slots, "keep_best": keep_best}
        self.distributed.broadcast_object(job)
        self.distributed.broadcast_arrays(arrays)

    def trained(self) -> int:
        """Training is over: leave the process group with the followers; returns how many processes trained."""
        processes = self.distributed.world_size()
        self.distributed.shutdown()
        return processes

    def __exit__(self, *exc_info) -> None:
        if self.waiting:
            self.waiting = False
            self.distributed.broadcast_object(None)
            self.distributed.shutdown()


def time_holdout(data: InteractionData, training: Training) -> Holdout:
    """The worker's holdout: each player's latest slot discovered in the last ``holdout_days`` of
    ``data``'s window (at most ``eval_max_players``, with enough unplayed slots to rank against)."""
    holdout_start = data.end - timedelta(days=training.holdout_days - 1)
    return split_latest(
        data.player_idx,
        data.slot_idx,
        data.first_day,
        (holdout_start - EPOCH_DAY).days,
        max_cases=training.eval_max_players,
        seed=training.seed,
        n_slots=len(data.slot_keys),
        min_unplayed=holdout_negatives(len(data.slot_keys)),
    )


def _train_and_publish(
    engine, settings, config, data: InteractionData, holdout: Holdout, version_id, stages, followers: _Followers,
    *, activate: bool = True,
):
    from recsys.evaluation import evaluate_full, evaluate_sampled, hit_ratio_callback
    from recsys.ncf.plots import plot_training_curve
    from recsys.ncf.training import train
    from recsys.offline import top_n

    n_players, n_slots = len(data.player_keys), len(data.slot_keys)
    train_u, train_i, test_cases, validation_cases = evaluation_cases(data, holdout, settings.training)
    holdout = Holdout(holdout.train, test_cases[0], test_cases[1])
    test_u, test_i, negatives = test_cases
    keep_best = validation_cases is not None
    # The per-epoch HR@10 of the log and the curve: on the validation cases when they pick the epochs.
    watched = validation_cases if keep_best else test_cases

    t = time.perf_counter()
    weights = data.weight[holdout.train] if settings.training.weighted else None
    followers.hand_over(
        config, n_players, n_slots, keep_best, {"user_idx": train_u, "item_idx": train_i, "weights": weights}
    )
    progress = _EpochLog(config)
    model = train(
        config,
        train_u,
        train_i,
        n_players,
        n_slots,
        weights=weights,
        callback=progress,
        evaluate=hit_ratio_callback(*watched),
        keep_best=keep_best,
    )
    stages["train"] = time.perf_counter() - t
    processes = followers.trained()

    t = time.perf_counter()
    sampled = evaluate_sampled(model, test_u, test_i, negatives)
    full_cases = slice(0, min(2000, test_u.size))
    full = evaluate_full(model, test_u[full_cases], test_i[full_cases], train_u, train_i, n_slots)
    stages["evaluate"] = time.perf_counter() - t
    t = time.perf_counter()
    baselines = baseline_metrics(
        train_u, train_i, n_players, n_slots, (test_u, test_i, negatives),
        validation_cases,
    )
    stages["baselines"] = time.perf_counter() - t
    metrics: dict[str, Any] = {
        "hr@10": sampled.hit_ratio,
        "ndcg@10": sampled.ndcg,
        "full_hr@10": full.hit_ratio,
        "full_ndcg@10": full.ndcg,
        **baselines,
        "test_players": int(test_u.size),
        "validation_players": 0 if validation_cases is None else int(validation_cases[0].size),
        "kept_epochs": _kept_epochs(model.history) if keep_best else None,
        "train_pairs": int(train_u.size),
        "players": n_players,
        "slots": n_slots,
        "epochs": len(model.history),
        "train_seconds": round(stages["train"], 2),
        "train_processes": processes,
        "baseline_seconds": round(stages["baselines"], 2),
    }
    log.info(
        "version %d: HR@10 %.3f NDCG@10 %.3f, full-catalogue HR@10 %.3f; on the same %d cases popularity %.3f / %.3f,"
        " item-kNN %.3f / %.3f, EASE (lambda %g) %.3f / %.3f (baselines in %.1f s)",
        version_id,
        sampled.hit_ratio,
        sampled.ndcg,
        full.hit_ratio,
        test_u.size,
        baselines["popularity_hr@10"],
        baselines["popularity_ndcg@10"],
        baselines["itemknn_hr@10"],
        baselines["itemknn_ndcg@10"],
        baselines["ease_lambda"],
        baselines["ease_hr@10"],
        baselines["ease_ndcg@10"],
        stages["baselines"],
    )

    t = time.perf_counter()
    state = model.state()
    vector_kind, similarity = slot_similarity_vectors(model, settings.training, train_u, train_i, n_players, n_slots)
    versions.write_embeddings(
        engine, version_id, data.player_keys, model.user_factors, data.slot_keys, model.item_factors, similarity
    )
    curve = Path(settings.database.data_dir) / "runs" / f"version-{version_id}" / "training-curve.png"
    curve.parent.mkdir(parents=True, exist_ok=True)
    fused = config.model == "neumf" and config.pretrain and config.finetune_epochs == 0
    plot_training_curve(model.history, curve, fused_hr=sampled.hit_ratio if fused else None)
    versions.finish_version(
        engine,
        version_id,
        state=state,
        metrics=metrics,
        similarity_vector=vector_kind,
        curve_path=str(curve.resolve()),
    )
    stages["write"] = time.perf_counter() - t

    gate = _quality_gate(engine, settings.gate, model, data, holdout, negatives, metrics)
    versions.set_metrics(engine, version_id, {"gate": gate})
    if not gate["passed"]:
        log.warning("version %d refused by the quality gate: %s", version_id, gate["reason"])
        return TrainOutcome(version_id, False, gate, metrics, 0.0, model=model, data=data)

    t = time.perf_counter()
    seen_u, seen_i = data.player_idx, data.slot_idx
    slots, scores = top_n(model, seen_u, seen_i, settings.training.offline_top_n)
    versions.write_offline(engine, version_id, data.player_keys, data.slot_keys, slots, scores)
    stages["offline"] = time.perf_counter() - t

    if not activate:
        log.info("version %d passed the gate and is ready, not activated (--no-activate)", version_id)
        return TrainOutcome(version_id, False, gate, metrics, 0.0, model=model, data=data)
    versions.activate(engine, version_id)
    retired = versions.retire_old(engine, settings.training.keep_versions)
    if retired:
        log.info("version %d active; embeddings of older versions %s dropped", version_id,
                 ", ".join(str(v) for v in retired))
    else:
        log.info("version %d active; no older version's embeddings to drop", version_id)
    return TrainOutcome(version_id, True, gate, metrics, 0.0, model=model, data=data)


def baseline_metrics(
    train_u: np.ndarray,
    train_i: np.ndarray,
    n_players: int,
    n_slots: int,
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> dict[str, Any]:
    """HR@10 / NDCG@10 of popularity, item-kNN and EASE fitted on the training pairs and ranked on the
    ``test`` cases ``(player_idx, slot_idx, negatives)``, the model's own.

    EASE's L2 penalty is the best of ``EASE_L2_GRID`` by HR@10 (then NDCG@10) on the ``validation``
    cases, or ``EASE_DEFAULT_L2`` without them. Item-kNN keeps ``ItemKNN``'s defaults (50
    neighbours, shrink 10), as measured on ML-1M. Returns the version's flat metric keys, plus
    ``ease_lambda`` and ``ease_lambda_grid`` (validation HR@10 per penalty tried).
    """
    from recsys.baselines import EASE, EASE_DEFAULT_L2, EASE_L2_GRID, ItemKNN, Popularity, ease_on_grid
    from recsys.evaluation import evaluate_sampled

    figures: dict[str, Any] = {}
    pop = evaluate_sampled(Popularity(train_u, train_i, n_slots), *test)
    figures.update({"popularity_hr@10": pop.hit_ratio, "popularity_ndcg@10": pop.ndcg})
    knn = ItemKNN(train_u, train_i, n_players, n_slots)
    ranked = evaluate_sampled(knn, *test)
    figures.update({"itemknn_hr@10": ranked.hit_ratio, "itemknn_ndcg@10": ranked.ndcg})
    del knn  # an n_slots x n_slots matrix: free it before EASE makes its own
    if validation is None:
        ease = EASE(train_u, train_i, n_players, n_slots, l2=EASE_DEFAULT_L2)
        grid = {}
    else:

        def judge(model: EASE) -> tuple[float, float]:
            picked = evaluate_sampled(model, *validation)
            return picked.hit_ratio, picked.ndcg

        ease, judged = ease_on_grid(train_u, train_i, n_players, n_slots, judge)
        grid = {f"{l2:g}": round(hr, 4) for l2, (hr, _) in judged.items()}
        if ease.l2 == max(EASE_L2_GRID):
            log.warning("EASE's best L2 penalty is the largest tried (%g): a larger one might do better", ease.l2)
    ranked = evaluate_sampled(ease, *test)
    figures.update(
        {"ease_hr@10": ranked.hit_ratio, "ease_ndcg@10": ranked.ndcg, "ease_lambda": ease.l2, "ease_lambda_grid": grid}
    )
    return figures


def _quality_gate(engine, gate_settings: Gate, model, data, holdout, negatives, metrics) -> dict[str, Any]:
    """Absolute floor; not below the baselines (:func:`baseline_refusal`); then no more than
    ``max_drop`` below the active version on the same cases."""
    from recsys.evaluation import evaluate_sampled

    hit_ratio = metrics["hr@10"]
    gate: dict[str, Any] = {
        "min_hr": gate_settings.min_hr,
        "max_drop": gate_settings.max_drop,
        "popularity_margin": gate_settings.popularity_margin,
        "itemknn_margin": gate_settings.itemknn_margin if gate_settings.beat_itemknn else None,
        "hr@10": hit_ratio,
    }
    if hit_ratio < gate_settings.min_hr:
        return {**gate, "passed": False, "reason": f"HR@10 {hit_ratio:.3f} is below the floor {gate_settings.min_hr}"}
    refusal = baseline_refusal(gate_settings, metrics)
    if refusal is not None:
        return {**gate, "passed": False, "reason": refusal}
    active = versions.active_version(engine)
    if active is None:
        return {**gate, "passed": True, "reason": "no active version to compare with"}
    previous = _VersionScorer.load(engine, active.id, data, holdout.test_player_idx)
    known = previous.knows(holdout.test_player_idx, holdout.test_slot_idx)
    gate["compared_with"] = active.id
    gate["common_cases"] = int(known.sum())
    if not known.any():
        return {**gate, "passed": True, "reason": f"version {active.id} knows none of the holdout players"}
    cases = (holdout.test_player_idx[known], holdout.test_slot_idx[known], negatives[known])
    new_hr = evaluate_sampled(model, *cases).hit_ratio
    old_hr = evaluate_sampled(previous, *cases).hit_ratio
    gate.update({"new_hr@10_common": new_hr, "active_hr@10_common": old_hr})
    if new_hr < old_hr - gate_settings.max_drop:
        return {
            **gate,
            "passed": False,
            "reason": f"HR@10 {new_hr:.3f} vs {old_hr:.3f} of version {active.id} on the same cases",
        }
    return {**gate, "passed": True, "reason": f"HR@10 {new_hr:.3f} vs {old_hr:.3f} of version {active.id}"}


def baseline_refusal(gate: Gate, metrics: dict[str, Any]) -> str | None:
    """Why the gate refuses a version whose ``hr@10`` loses to a baseline's on the same cases, or None.

    Popularity always counts (``popularity_margin``); item-kNN with ``beat_itemknn``
    (``itemknn_margin``). A version exactly level with a baseline passes.
    """
    hit_ratio = metrics["hr@10"]
    checks = [("popularity", metrics["popularity_hr@10"], gate.popularity_margin)]
    if gate.beat_itemknn:
        checks.append(("item-kNN", metrics["itemknn_hr@10"], gate.itemknn_margin))
    for name, baseline, margin in checks:
        if hit_ratio < baseline - margin:
            return (
                f"HR@10 {hit_ratio:.3f} is below {name}'s {baseline:.3f} on the same cases"
                + (f" by more than the margin {margin:g}" if margin else "")
            )
    return None


def slot_similarity_vectors(model, training: Training, train_u, train_i, n_players: int, n_slots: int):
    """The slot vectors a version indexes for similar slots: ``(kind, vectors)``, unit-norm rows.

    ``cooc``: the co-occurrence vectors of the training pairs (``recsys.baselines.spectral_item_vectors``);
    any other kind: that vector of the trained model (``recsys.ncf.vectors``; a model lacking the
    tower falls back to its own).
    """
    if training.similarity_vector == "cooc":
        from recsys.baselines import spectral_item_vectors

        return "cooc", spectral_item_vectors(train_u, train_i, n_players, n_slots)
    from recsys.ncf.vectors import item_vectors, usable_kind

    kind = usable_kind(model, training.similarity_vector)
    return kind, item_vectors(model, kind)


def evaluation_cases(data: InteractionData, holdout: Holdout, training: Training):
    """The training pairs and the cases a version is measured on, cut from ``holdout``.

    Each holdout player's test slot gets its sampled negatives (seeded by ``seed``); with early
    stopping the cases split into a validation half, which picks epochs (and EASE's penalty), and a
    test half, which alone gives the metrics and the gate. A case tuple is
    ``(player_idx, slot_idx, negatives)``.

    Returns
    -------
    train_u, train_i : np.ndarray, shape (t,)
    test_cases : tuple of np.ndarray
    validation_cases : tuple of np.ndarray, or None without a validation half
    """
    from recsys.evaluation import sample_test_negatives

    n_slots = len(data.slot_keys)
    train_u, train_i = data.player_idx[holdout.train], data.slot_idx[holdout.train]
    negatives = sample_test_negatives(
        train_u, train_i, holdout.test_player_idx, holdout.test_slot_idx, n_slots, holdout_negatives(n_slots),
        seed=training.seed,
    )
    cases = (holdout.test_player_idx, holdout.test_slot_idx, negatives)
    validation, test = _validation_split(cases[0].size, training)
    validation_cases = None if validation is None else tuple(c[validation] for c in cases)
    return train_u, train_i, tuple(c[test] for c in cases), validation_cases


def _validation_split(n_cases: int, training: Training) -> tuple[np.ndarray | None, np.ndarray]:
    """With ``early_stopping``, half the holdout cases (a seeded draw) for picking epochs and
    the rest for the metrics; too few cases (under 20) leave early stopping off."""
    everything = np.arange(n_cases)
    if not training.early_stopping or n_cases < 20:
        return None, everything
    shuffled = np.random.default_rng(training.seed).permutation(n_cases)
    return np.sort(shuffled[: n_cases // 2]), np.sort(shuffled[n_cases // 2 :])


def _kept_epochs(history) -> dict[str, int]:
    """Each stage's best epoch by its validation HR@10 (the first of equals), as early stopping kept it."""
    kept: dict[str, tuple[float, int]] = {}
    for stats in history:
        if stats.hr_at_10 is not None and stats.hr_at_10 > kept.get(stats.stage, (-1.0, 0))[0]:
            kept[stats.stage] = (stats.hr_at_10, stats.epoch)
    return {stage: epoch for stage, (_, epoch) in kept.items()}


def holdout_negatives(n_slots: int) -> int:
    """Sampled negatives per test case: the protocol's 99, fewer for a catalogue under 200 slots."""
    return min(99, n_slots // 2)


class _EpochLog:
    """Per-epoch log lines: the epoch within its stage and within the whole run
    (``epoch 1/10 (mlp; 31/40 of the run)``), loss, HR@10, rate, and an ETA over every stage's epochs."""

    def __init__(self, config) -> None:
        self.total = config.total_epochs
        self.done = 0
        self.started = time.perf_counter()

    def __call__(self, stats) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        log.info("%s", self.line(stats, eta))

    def line(self, stats, eta: float) -> str:
        hr = "" if stats.hr_at_10 is None else f" HR@10 {stats.hr_at_10:.3f}"
        return (
            f"epoch {stats.epoch}/{stats.epochs} ({stats.stage}; {self.done}/{self.total} of the run): "
            f"loss {stats.loss:.4f}{hr}, {stats.samples_per_second:,.0f} samples/s, ETA {eta:.0f} s"
        )


class _VersionScorer:
    """A stored version scoring this run's ``(player_idx, slot_idx)`` pairs through the keys both share.

    Pairs whose player or slot the stored version does not know score ``-inf`` (ranked last).
    """

    def __init__(self, model, player_map: np.ndarray, slot_map: np.ndarray) -> None:
        self.model = model
        self.player_map = player_map  # this run's player_idx -> the version's row, or -1
        self.slot_map = slot_map

    @classmethod
    def load(cls, engine, version_id: int, data: InteractionData, player_idx: np.ndarray) -> _VersionScorer:
        """Load the version's slot side and the rows of the players ``player_idx`` (this run's rows)."""
        from recsys.ncf.scoring import TrainedNCF

        state = versions.load_weights(engine, version_id)
        slots = versions.load_slot_vectors(engine, version_id)
        player_keys, player_towers = versions.load_player_vectors(engine, version_id, data.player_keys[player_idx])
        weights = dict(state["weights"])
        for tower, table in slots.towers.items():
            weights[f"item_{tower}.weight"] = table
        for tower, table in player_towers.items():
            weights[f"user_{tower}.weight"] = table
        model = TrainedNCF.from_state({"config": state["config"], "weights": weights})
        return cls(model, _positions(data.player_keys, player_keys), _positions(data.slot_keys, slots.slot_keys))

    def knows(self, player_idx: np.ndarray, slot_idx: np.ndarray) -> np.ndarray:
        return (self.player_map[player_idx] >= 0) & (self.slot_map[slot_idx] >= 0)

    def score(self, player_idx: np.ndarray, slot_idx: np.ndarray) -> np.ndarray:
        known = self.knows(player_idx, slot_idx)
        out = np.full(player_idx.shape[0], -np.inf, dtype=np.float32)
        out[known] = self.model.score(self.player_map[player_idx[known]], self.slot_map[slot_idx[known]])
        return out


def _positions(keys: np.ndarray, stored_keys: np.ndarray) -> np.ndarray:
    """For each of ``keys``, its row in ``stored_keys`` (any order), or -1."""
    out = np.full(len(keys), -1, dtype=np.int64)
    if len(stored_keys) == 0:
        return out
    order = np.argsort(stored_keys)
    ordered = stored_keys[order]
    found = np.clip(np.searchsorted(ordered, keys), 0, len(ordered) - 1)
    hit = ordered[found] == keys
    out[hit] = order[found[hit]]
    return out
