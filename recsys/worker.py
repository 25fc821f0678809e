"""The training worker: interactions -> NeuMF -> evaluated, gated, versioned embeddings in PostgreSQL.

The run reads top to bottom: :func:`run_training` loads the window and cuts the holdout, then
:func:`_train_and_publish` fits the model (with the DDP followers, ``recsys.followers``), measures it
and the baselines on the same cases (``recsys.run_baselines``), writes the version, asks the quality
gate (``recsys.quality_gate``) and, when it passes, precomputes the offline lists and activates it.
The model and the evaluation know no SQL; this module hands them arrays and hands their results to
``recsys.db``. The figures are a :class:`recsys.metrics.VersionMetrics`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from recsys.db import versions
from recsys.db.training_data import InteractionData, latest_day, load_interactions
from recsys.errors import RecsysError
from recsys.followers import Followers
from recsys.holdout import Holdout
from recsys.holdout_cases import evaluation_cases, time_holdout
from recsys.metrics import EASE, IALS, ITEMKNN, POPULARITY, Figures, GateDecision, VersionMetrics
from recsys.settings import Settings, Training

log = logging.getLogger(__name__)

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
    gate: GateDecision
    metrics: VersionMetrics
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)  # the TrainedNCF, for callers that inspect it
    data: InteractionData | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        """Whether the quality gate passed the version (active, or ``ready`` with ``activate=False``)."""
        return self.gate.passed

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
    with Followers() as followers, versions.training_lock(engine):
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


def _train_and_publish(
    engine, settings: Settings, config, data: InteractionData, holdout: Holdout, version_id: int,
    stages: dict[str, float], followers: Followers, *, activate: bool = True,
) -> TrainOutcome:
    """The run's steps once the version row exists: fit, measure, write, gate, publish."""
    n_players, n_slots = len(data.player_keys), len(data.slot_keys)
    train_u, train_i, test_cases, validation_cases = evaluation_cases(data, holdout, settings.training)
    holdout = Holdout(holdout.train, test_cases[0], test_cases[1])

    t = time.perf_counter()
    model, processes = _fit(settings, config, data, holdout, train_u, train_i, test_cases, validation_cases,
                            followers)
    stages["train"] = time.perf_counter() - t

    metrics = _measure(model, settings.training, train_u, train_i, n_players, n_slots, test_cases,
                       validation_cases, stages)
    metrics = dataclasses.replace(metrics, train_seconds=round(stages["train"], 2), train_processes=processes)
    _log_figures(version_id, metrics, stages)

    t = time.perf_counter()
    _write_version(engine, settings, config, version_id, model, metrics, train_u, train_i, data)
    stages["write"] = time.perf_counter() - t

    t = time.perf_counter()
    metrics = dataclasses.replace(metrics, replay=_replay(engine, settings, version_id, data, holdout))
    versions.set_metrics(engine, version_id, metrics.to_json())
    stages["replay"] = time.perf_counter() - t

    from recsys.quality_gate import quality_gate

    gate = quality_gate(engine, settings.gate, model, data, holdout, test_cases[2], metrics)
    metrics = dataclasses.replace(metrics, gate=gate)
    versions.set_metrics(engine, version_id, {"gate": gate.to_json()})
    if not gate.passed:
        log.warning("version %d refused by the quality gate: %s", version_id, gate.reason)
        return TrainOutcome(version_id, False, gate, metrics, 0.0, model=model, data=data)

    t = time.perf_counter()
    _publish(engine, settings, version_id, model, data, activate=activate)
    stages["offline"] = time.perf_counter() - t
    return TrainOutcome(version_id, activate, gate, metrics, 0.0, model=model, data=data)


def _fit(settings: Settings, config, data: InteractionData, holdout: Holdout, train_u, train_i, test_cases,
         validation_cases, followers: Followers):
    """Train the model on the training pairs (the followers in step under torchrun); returns
    ``(model, processes that trained)``. With a validation half, each stage keeps its best epoch there."""
    from recsys.epoch_log import EpochLog
    from recsys.evaluation import hit_ratio_callback
    from recsys.ncf.training import train

    n_players, n_slots = len(data.player_keys), len(data.slot_keys)
    keep_best = validation_cases is not None
    # The per-epoch HR@10 of the log and the curve: on the validation cases when they pick the epochs.
    watched = validation_cases if keep_best else test_cases
    weights = data.weight[holdout.train] if settings.training.weighted else None
    followers.hand_over(
        config, n_players, n_slots, keep_best, {"user_idx": train_u, "item_idx": train_i, "weights": weights}
    )
    model = train(
        config,
        train_u,
        train_i,
        n_players,
        n_slots,
        weights=weights,
        callback=EpochLog(config),
        evaluate=hit_ratio_callback(*watched),
        keep_best=keep_best,
    )
    return model, followers.trained()


def _measure(model, training: Training, train_u, train_i, n_players: int, n_slots: int, test_cases,
             validation_cases, stages: dict[str, float]) -> VersionMetrics:
    """The model's figures on the test cases (sampled and full catalogue) and the baselines' on the same."""
    from recsys.epoch_log import kept_epochs
    from recsys.evaluation import evaluate_full, evaluate_sampled
    from recsys.run_baselines import measure_baselines

    test_u, test_i, negatives = test_cases
    t = time.perf_counter()
    sampled = evaluate_sampled(model, test_u, test_i, negatives)
    full_cases = slice(0, min(2000, test_u.size))
    full = evaluate_full(model, test_u[full_cases], test_i[full_cases], train_u, train_i, n_slots)
    stages["evaluate"] = time.perf_counter() - t
    t = time.perf_counter()
    baselines = measure_baselines(
        train_u, train_i, n_players, n_slots, test_cases, validation_cases,
        ials=ials_wanted(training, n_players), seed=training.seed,
    )
    stages["baselines"] = time.perf_counter() - t
    return VersionMetrics(
        model=Figures(sampled.hit_ratio, sampled.ndcg),
        full=Figures(full.hit_ratio, full.ndcg),
        baselines=baselines,
        kept_epochs=kept_epochs(model.history) if validation_cases is not None else None,
        test_players=int(test_u.size),
        validation_players=0 if validation_cases is None else int(validation_cases[0].size),
        train_pairs=int(train_u.size),
        players=n_players,
        slots=n_slots,
        epochs=len(model.history),
        baseline_seconds=round(stages["baselines"], 2),
    )


def ials_wanted(training: Training, n_players: int) -> bool:
    """Whether this run measures iALS: with fewer than ``ials_player_limit`` players (0: never). Its seven
    fits cost 90-380 s each at 10^6 players x 5,000 slots on one core (docs/training.md)."""
    return n_players < training.ials_player_limit


def _log_figures(version_id: int, m: VersionMetrics, stages: dict[str, float]) -> None:
    def pair(figures) -> str:
        return "not measured" if figures is None else f"{figures.hr:.3f} / {figures.ndcg:.3f}"

    ease, ials = m.baseline(EASE), m.baseline(IALS)
    log.info(
        "version %d: HR@10 %.3f NDCG@10 %.3f, full-catalogue HR@10 %.3f; on the same %d cases popularity %s,"
        " item-kNN %s, EASE (lambda %g) %s, iALS%s %s (baselines in %.1f s)",
        version_id,
        m.model.hr,
        m.model.ndcg,
        m.full.hr,
        m.test_players,
        pair(m.baseline(POPULARITY)),
        pair(m.baseline(ITEMKNN)),
        ease.params["lambda"],
        pair(ease),
        "" if ials is None else f" ({ials.params['factors']} factors, reg {ials.params['reg']:g})",
        pair(ials),
        stages["baselines"],
    )


def _write_version(engine, settings: Settings, config, version_id: int, model, metrics: VersionMetrics,
                   train_u, train_i, data: InteractionData) -> None:
    """The embeddings, the similarity vectors, the training curve and the metrics: the version is ``ready``."""
    from recsys.ncf.plots import plot_training_curve

    n_players, n_slots = len(data.player_keys), len(data.slot_keys)
    state = model.state()
    vector_kind, similarity = slot_similarity_vectors(model, settings.training, train_u, train_i, n_players, n_slots)
    versions.write_embeddings(
        engine, version_id, data.player_keys, model.user_factors, data.slot_keys, model.item_factors, similarity
    )
    curve = Path(settings.database.data_dir) / "runs" / f"version-{version_id}" / "training-curve.png"
    curve.parent.mkdir(parents=True, exist_ok=True)
    fused = config.model == "neumf" and config.pretrain and config.finetune_epochs == 0
    plot_training_curve(model.history, curve, fused_hr=metrics.model.hr if fused else None)
    versions.finish_version(
        engine,
        version_id,
        state=state,
        metrics=metrics.to_json(),
        similarity_vector=vector_kind,
        curve_path=str(curve.resolve()),
    )


def _replay(engine, settings: Settings, version_id: int, data: InteractionData, holdout: Holdout):
    """The trigger's list replayed on the test half's long sessions (``recsys.replay_run``); None when
    the holdout days hold no long session with a new slot after it."""
    from recsys.replay_run import run_replay

    figures = run_replay(engine, settings, version_id, data, holdout.test_player_idx, holdout.train)
    if figures.sessions == 0:
        log.info("version %d: no long session in the holdout days was followed by a new slot; no replay", version_id)
        return None
    log.info("version %d: the trigger's list replayed on %d long sessions, HR@10 / NDCG@10: %s", version_id,
             figures.sessions, ", ".join(f"{p} {f.hr:.3f} / {f.ndcg:.3f}" for p, f in figures.policies.items()))
    return figures


def _publish(engine, settings: Settings, version_id: int, model, data: InteractionData, *, activate: bool) -> None:
    """Precompute the offline top-N lists, then (``activate``) activate the version and drop old
    versions' embeddings."""
    from recsys.offline import top_n

    slots, scores = top_n(model, data.player_idx, data.slot_idx, settings.training.offline_top_n)
    versions.write_offline(engine, version_id, data.player_keys, data.slot_keys, slots, scores)
    if not activate:
        log.info("version %d passed the gate and is ready, not activated (--no-activate)", version_id)
        return
    versions.activate(engine, version_id)
    retired = versions.retire_old(engine, settings.training.keep_versions)
    if retired:
        log.info("version %d active; embeddings of older versions %s dropped", version_id,
                 ", ".join(str(v) for v in retired))
    else:
        log.info("version %d active; no older version's embeddings to drop", version_id)


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
