"""The daily pipeline: consolidate new play -> train (the worker evaluates, writes the version, gates
it, precomputes the offline top-N, activates it with NOTIFY and retires old versions) -> run report.

One orchestrator reading like the job's steps; SQL lives in ``recsys.db``. Guarantees
(docs/pipeline.md):

* **One at a time.** A session-level advisory lock (:func:`recsys.db.pipeline_runs.pipeline_lock`);
  a second pipeline raises :class:`~recsys.db.pipeline_runs.PipelineBusy` at once.
* **Idempotent.** A run records what it started from (the play sessions' count and latest update,
  the end day, a digest of the settings that decide its output). When the last run that trained to
  the end started from the same, the new run is ``skipped``: no consolidation, no version, no rows.
* **Resumable by redoing.** Consolidation is idempotent and all-or-nothing; a crashed training
  leaves its version ``failed``; a killed pipeline leaves its run ``running`` and its version
  ``training``, which the next pipeline (holding the lock, so sure that no one else is alive) marks
  ``failed`` before starting over. Only a finished version that passed the gate is ever active.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date
from pathlib import Path
from typing import Any

from recsys.db import pipeline_runs, retention, versions
from recsys.db.consolidation import consolidate
from recsys.db.pipeline_runs import PipelineBusy, PipelineRun
from recsys.errors import RecsysError
from recsys.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["PipelineBusy", "PipelineOutcome", "StageFailed", "run_pipeline"]

# Settings groups that decide what a run produces (consolidation and training); a change makes the
# next run train again even when no play arrived. Speed-only settings do not count.
OUTPUT_SETTING_GROUPS = ("scoring", "training", "gate")
SPEED_ONLY_SETTINGS = ("train_threads", "train_processes")

# How long torchrun may take to stop its workers after SIGTERM before it is killed.
TORCHRUN_STOP_SECONDS = 30


class StageFailed(RecsysError):
    """A stage of run ``run_id`` raised ``cause`` (chained as ``__cause__``)."""

    def __init__(self, run_id: int, stage: str, cause: BaseException) -> None:
        self.run_id = run_id
        self.stage = stage
        self.cause = cause
        super().__init__(f"pipeline run {run_id}: stage {stage} failed: {describe(cause)}")


@dataclass
class PipelineOutcome:
    """How a run ended: ``status`` is succeeded (the new version passed the gate: active, or ``ready``
    with ``activate=False``, as ``activated`` says), refused (the gate kept it inactive) or skipped
    (nothing new since run ``previous_run``)."""

    run_id: int
    status: str
    message: str
    version_id: int | None = None
    report_path: Path | None = None
    previous_run: int | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    activated: bool = False


def run_pipeline(
    engine, settings: Settings, *, end_day: date | None = None, force: bool = False, activate: bool = True
) -> PipelineOutcome:
    """Run the daily cycle once.

    Raises :class:`PipelineBusy` (nothing done) when another pipeline or a training run holds its
    lock, and :class:`StageFailed` when a stage raises; the run row is ``failed`` with the error.
    ``end_day`` ends the training window (default: the latest consolidated day); ``force`` trains
    even when nothing changed since the last completed run. ``activate=False`` (``--no-activate``)
    leaves a version that passes the gate ``ready`` (a candidate for an experiment), not active.
    """
    started = time.perf_counter()
    with pipeline_runs.pipeline_lock(engine):
        recovered = recover(engine)
        inputs = read_inputs(engine, settings, end_day)
        if not activate:
            # A candidate run and a normal run never count as each other's repeat (skip).
            inputs["activate"] = False
        run = pipeline_runs.start_run(engine, inputs=inputs, host=socket.gethostname(), pid=os.getpid())
        log.info("pipeline run %d started (run day %s)", run.id, run.run_day)
        stages = _Stages(engine, run.id)
        if recovered:
            pipeline_runs.record_stage(engine, run.id, "recover", recovered)
        try:
            outcome = _run_stages(
                engine, settings, run, inputs, stages, end_day=end_day, force=force, activate=activate
            )
        except BaseException as exc:
            error = str(exc) if isinstance(exc, StageFailed) else describe(exc)
            if stages.current is not None and not isinstance(exc, StageFailed):
                error = f"stage {stages.current}: {error}"
            pipeline_runs.finish_run(engine, run.id, "failed", version_id=stages.version_id, error=error)
            log.error("pipeline run %d failed: %s", run.id, error)
            raise
    outcome.seconds = time.perf_counter() - started
    outcome.stages = stages.figures
    log.info("pipeline run %d %s in %.1f s: %s", run.id, outcome.status, outcome.seconds, outcome.message)
    return outcome


def _run_stages(
    engine, settings: Settings, run: PipelineRun, inputs: dict, stages: _Stages, *, end_day, force, activate
) -> PipelineOutcome:
    previous_run = pipeline_runs.last_completed(engine, before=run.id)
    if not force and previous_run is not None and previous_run.inputs == inputs:
        return _skip(engine, run, previous_run)

    with stages.stage("consolidate") as figures:
        figures.update(consolidate_play(engine, settings))

    with stages.stage("retention") as figures:
        figures.update(keep_recent_logs(engine, settings))

    with stages.stage("train") as figures:
        previous = versions.active_version(engine)
        stages.newest_version_before = _newest_version_id(engine)
        outcome = _train(engine, settings, end_day, activate=activate)
        stages.version_id = outcome.version_id
        pipeline_runs.set_version(engine, run.id, outcome.version_id)
        figures.update(train_figures(outcome, previous))
        status = "succeeded" if outcome.passed else "refused"
        activated = outcome.activated
        gate = outcome.gate
        outcome.model = outcome.data = None  # the embeddings' memory is not needed any more

    with stages.stage("report") as figures:
        report_path = write_run_report(engine, settings, run, status, outcome.version_id, previous, gate, stages)
        figures["files"] = len(list(report_path.parent.iterdir()))

    pipeline_runs.finish_run(engine, run.id, status, version_id=outcome.version_id, report_path=str(report_path))
    if status == "refused":
        verdict = f"NOT activated ({gate.reason})"
    else:
        verdict = "active" if activated else "passed the gate: ready, NOT activated (--no-activate)"
    return PipelineOutcome(
        run_id=run.id,
        status=status,
        message=f"version {outcome.version_id} {verdict}; report {report_path}",
        version_id=outcome.version_id,
        report_path=report_path,
        previous_run=previous_run.id if previous_run else None,
        activated=activated,
    )


def recover(engine) -> dict[str, list[int]]:
    """Fail what a killed pipeline left behind: its ``running`` row and its ``training`` version.

    Call it holding the pipeline lock. Returns the ids it failed (empty lists are left out).
    """
    stale = pipeline_runs.fail_stale(engine)
    try:
        with versions.training_lock(engine):
            abandoned = [versions.get_version(engine, v) for v in versions.fail_abandoned(engine)]
    except versions.VersionError as exc:
        raise PipelineBusy("a training run (`recsys train`) is in progress; this pipeline exits") from exc
    for run in stale:
        own = [v.id for v in abandoned if v is not None and v.created_at >= run.started_at]
        if own and run.version_id is None:
            pipeline_runs.set_version(engine, run.id, own[0])
        log.warning(
            "run %d (started %s by pid %s on %s) ended without finishing: marked failed%s",
            run.id,
            f"{run.started_at:%Y-%m-%d %H:%M:%S %Z}",
            run.pid,
            run.host,
            f", with its version {own[0]}" if own else "",
        )
    if abandoned:
        log.warning("versions left training by a killed run marked failed: %s", [v.id for v in abandoned if v])
    recovered = {"failed_runs": [r.id for r in stale], "failed_versions": [v.id for v in abandoned if v]}
    return {k: v for k, v in recovered.items() if v}


def read_inputs(engine, settings: Settings, end_day: date | None) -> dict[str, Any]:
    """What a run starts from; two runs with equal inputs produce the same result."""
    sessions, updated_at = pipeline_runs.session_state(engine)
    return {
        "sessions": sessions,
        "sessions_updated_at": None if updated_at is None else updated_at.astimezone(UTC).isoformat(),
        "end_day": None if end_day is None else end_day.isoformat(),
        "settings": settings_digest(settings),
    }


def settings_digest(settings: Settings) -> str:
    """A short hash of the settings that decide what a run produces (see OUTPUT_SETTING_GROUPS)."""
    values = {
        name: value for name, value in settings.flat(*OUTPUT_SETTING_GROUPS).items() if name not in SPEED_ONLY_SETTINGS
    }
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def consolidate_play(engine, settings: Settings) -> dict[str, Any]:
    result = consolidate(engine, settings.scoring)
    return {
        "mode": "full" if result.full else "incremental",
        "players": result.players,
        "interactions": result.interactions,
        "first_day": result.first_day,
        "last_day": result.last_day,
    }


def keep_recent_logs(engine, settings: Settings) -> dict[str, Any]:
    """The recommendation logs' partitions for the coming months; months past the retention dropped."""
    result = retention.apply_retention(engine, settings.pipeline.retention_days)
    return {"partitions_created": len(result.created), "months_dropped": result.dropped_months,
            "default_rows_deleted": result.deleted_default_rows}


def _train(engine, settings: Settings, end_day: date | None, *, activate: bool = True):
    if settings.training.processes > 1:
        return train_under_torchrun(engine, settings, end_day, activate=activate)
    from recsys.worker import is_training_busy, run_training  # imports torch: only when a run trains

    try:
        return run_training(engine, settings, end_day=end_day, activate=activate)
    except versions.VersionError as exc:
        if is_training_busy(exc):  # a `recsys train` took the lock since recover() checked it
            raise PipelineBusy(f"{exc}; this pipeline exits") from exc
        raise


class TorchrunFailed(RecsysError):
    """``recsys train`` under torchrun ended without a version that finished (the message says why)."""


def train_under_torchrun(engine, settings: Settings, end_day: date | None, *, activate: bool = True):
    """Run ``torchrun --standalone --nproc-per-node N -m recsys train`` (N = ``train_processes``; with
    ``--no-activate`` unless ``activate``) with ``settings`` and return its
    :class:`~recsys.worker.TrainOutcome` as the version row tells it.

    torchrun exits 1 whatever code a failing worker returned (3 for a refused version included), so
    the outcome comes from the leader's ``--outcome-file`` and the version row, not from the exit
    code. The training lock taken by another run raises :class:`PipelineBusy` (exit code 4).
    """
    from recsys.metrics import GateDecision, VersionMetrics
    from recsys.worker import TrainOutcome

    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
        str(settings.training.processes), "-m", "recsys", "train",
    ]  # fmt: skip
    if end_day is not None:
        command += ["--end-day", end_day.isoformat()]
    if not activate:
        command.append("--no-activate")
    newest_before = _newest_version_id(engine)
    with tempfile.TemporaryDirectory(prefix="recsys-train-") as folder:
        path = Path(folder) / "outcome.json"
        log.info("training under torchrun with %d processes", settings.training.processes)
        # The workers' stdout (the worker's summary lines) joins the log on stderr.
        process = subprocess.Popen([*command, "--outcome-file", str(path)], env=settings_environment(settings),
                                   stdout=2)
        try:
            code = process.wait()
        except BaseException:
            _stop(process)  # Ctrl-C / SIGTERM: torchrun passes SIGTERM on to its workers
            raise
        result = json.loads(path.read_text()) if path.exists() else None
    if result is not None and "version_id" in result:
        version = versions.get_version(engine, result["version_id"])
        if version is None:
            raise TorchrunFailed(f"torchrun reported version {result['version_id']}, which does not exist")
        metrics = VersionMetrics.from_json(version.metrics)
        return TrainOutcome(
            version_id=version.id,
            activated=version.status == "active",
            gate=metrics.gate or GateDecision(passed=False, reason="the gate did not decide"),
            metrics=metrics,
            seconds=float(result["seconds"]),
            stage_seconds=dict(result["stage_seconds"]),
        )
    if result is not None and result.get("busy"):
        raise PipelineBusy(f"{result['error']}; this pipeline exits")
    if result is not None:
        raise TorchrunFailed(f"recsys train under torchrun: {result['error']}")
    newest = versions.list_versions(engine, limit=1)
    if newest and newest[0].id > newest_before and newest[0].error:
        raise TorchrunFailed(f"recsys train under torchrun: version {newest[0].id} failed: {newest[0].error}")
    raise TorchrunFailed(f"torchrun exited with code {code} and no outcome (its log above says why)")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=TORCHRUN_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def settings_environment(settings: Settings) -> dict[str, str]:
    """This process's environment with every ``RECSYS_*`` variable set so that ``Settings.from_env()``
    in a child process equals ``settings`` (overrides made in code included)."""
    return {**os.environ, **settings.environment()}


def train_figures(outcome, previous: versions.ModelVersion | None) -> dict[str, Any]:
    """The train stage's figures (the run row's ``stages.train``): the version, its HR@10 / NDCG@10,
    each measured baseline's HR@10 (``<key>_hr@10``, ``recsys.metrics.BASELINES``) and the gate's reason."""
    from recsys.metrics import BASELINES

    m = outcome.metrics
    figures: dict[str, Any] = {
        "version": outcome.version_id,
        "activated": outcome.activated,
        "previous_version": None if previous is None else previous.id,
        "pairs": outcome.data.n_pairs if outcome.data is not None else m.train_pairs,
        "players": m.players,
        "slots": m.slots,
        "epochs": m.epochs,
        "hr@10": round(m.model.hr, 4),
        "ndcg@10": round(m.model.ndcg, 4),
        **{f"{b.key}_hr@10": round(m.baselines[b.key].hr, 4) for b in BASELINES if b.key in m.baselines},
        "gate": outcome.gate.reason,
    }
    figures.update({f"{name}_seconds": round(s, 2) for name, s in outcome.stage_seconds.items()})
    return figures


def write_run_report(
    engine,
    settings: Settings,
    run: PipelineRun,
    status: str,
    version_id: int,
    previous: versions.ModelVersion | None,
    gate,
    stages: _Stages,
) -> Path:
    """Gather the report's facts from the database and write ``<data_dir>/runs/pipeline-<id>/``."""
    from recsys import report

    version = versions.get_version(engine, version_id)
    volumes = pipeline_runs.data_volumes(engine)
    slot_vectors = versions.load_slot_vectors(engine, version_id)
    attributes = pipeline_runs.slot_attributes(engine, slot_vectors.slot_keys)
    facts = report.RunFacts(
        run_id=run.id,
        run_day=run.run_day,
        status=status,
        started_at=run.started_at,
        version=_facts(version),
        previous=None if previous is None else _facts(versions.get_version(engine, previous.id) or previous),
        volumes={
            "play sessions": volumes.sessions,
            "interactions (player x slot x day)": volumes.interactions,
            "days consolidated": f"{volumes.first_day} .. {volumes.last_day}",
            "players": volumes.players,
            "slots (active)": f"{volumes.slots:,} ({volumes.active_slots:,})",
            "players in the version": version.n_players,
            "slots in the version": version.n_slots,
        },
        stages=dict(stages.figures),
        gate=gate,
    )
    slot_map = report.SlotMap(
        vectors=slot_vectors.similarity,
        providers=attributes.providers,
        themes=attributes.themes,
        top_providers=settings.pipeline.report_top_providers,
    )
    folder = Path(settings.database.data_dir) / "runs" / f"pipeline-{run.id}"
    return report.write_report(folder, facts, slot_map).resolve()


def _facts(version: versions.ModelVersion):
    from recsys.metrics import VersionMetrics
    from recsys.report import VersionFacts

    return VersionFacts(
        id=version.id,
        status=version.status,
        model=version.model,
        metrics=VersionMetrics.from_json(version.metrics),
        data_start=version.data_start,
        data_end=version.data_end,
        curve_path=version.curve_path,
    )


def _skip(engine, run: PipelineRun, previous_run: PipelineRun) -> PipelineOutcome:
    active = versions.active_version(engine)
    inputs = run.inputs
    message = (
        f"nothing new since run {previous_run.id} ({previous_run.status}, {previous_run.started_at:%Y-%m-%d %H:%M %Z}):"
        f" {inputs['sessions']:,} play sessions, last updated {inputs['sessions_updated_at']}, same settings; "
        f"active version {active.id if active else 'none'}; --force trains anyway"
    )
    pipeline_runs.finish_run(engine, run.id, "skipped", version_id=previous_run.version_id)
    return PipelineOutcome(
        run_id=run.id,
        status="skipped",
        message=message,
        version_id=previous_run.version_id,
        report_path=Path(previous_run.report_path) if previous_run.report_path else None,
        previous_run=previous_run.id,
    )


def _newest_version_id(engine) -> int:
    newest = versions.list_versions(engine, limit=1)
    return newest[0].id if newest else 0


def describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C or SIGTERM)"
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, RecsysError) else str(exc)


class _Stages:
    """Times each stage, keeps the run row's ``stage`` and ``stages`` up to date, logs one line each."""

    def __init__(self, engine, run_id: int) -> None:
        self.engine = engine
        self.run_id = run_id
        self.current: str | None = None
        self.figures: dict[str, dict[str, Any]] = {}
        self.version_id: int | None = None
        self.newest_version_before = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        self.current = name
        pipeline_runs.enter_stage(self.engine, self.run_id, name)
        log.info("%s ...", name)
        figures: dict[str, Any] = {}
        started = time.perf_counter()
        try:
            yield figures
        except BaseException as exc:
            if name == "train" and self.version_id is None:
                self.version_id = self._version_of_failed_training()
            if isinstance(exc, Exception) and not isinstance(exc, PipelineBusy):
                raise StageFailed(self.run_id, name, exc) from exc
            raise
        figures["seconds"] = round(time.perf_counter() - started, 2)
        self.figures[name] = figures
        pipeline_runs.record_stage(self.engine, self.run_id, name, figures)
        details = ", ".join(f"{k} {_show(v)}" for k, v in figures.items() if k != "seconds")
        log.info("%s done in %.1f s: %s", name, figures["seconds"], details)

    def _version_of_failed_training(self) -> int | None:
        newest = _newest_version_id(self.engine)
        return newest if newest > self.newest_version_before else None


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)
