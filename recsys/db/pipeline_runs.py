"""The daily pipeline's bookkeeping: ``pipeline_runs`` rows, the lock that keeps one pipeline running,
and the few facts the run report reads (data volumes, slot attributes).

A run is inserted ``running`` and committed at once; it ends ``succeeded``, ``refused`` (the quality
gate kept the new version inactive), ``skipped`` (nothing new since the last completed run) or
``failed``. A process that is killed leaves its row ``running``: the next pipeline, holding the lock
and therefore sure that no one else is alive, marks it failed (:func:`fail_stale`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from recsys.db.engine import DatabaseUnavailable
from recsys.errors import RecsysError

log = logging.getLogger(__name__)

# Session-level advisory lock held by a pipeline for its whole life; PostgreSQL releases it when the
# connection ends, so a killed pipeline never blocks the next one. (Consolidation is 0x5EC5_0001,
# training 0x5EC5_0002.)
PIPELINE_LOCK = 0x5EC5_0003
STALE_ERROR = "the pipeline ended without finishing (killed?); marked failed by the next run"


class PipelineBusy(RecsysError):
    """Another pipeline (or a training run) holds the lock. ``run`` is the running row, when known."""

    def __init__(self, message: str, run: PipelineRun | None = None) -> None:
        self.run = run
        super().__init__(message)


@dataclass(frozen=True)
class PipelineRun:
    id: int
    run_day: date
    status: str
    stage: str | None
    started_at: datetime
    finished_at: datetime | None
    stages: dict[str, Any]
    inputs: dict[str, Any]
    version_id: int | None
    error: str | None
    report_path: str | None
    host: str | None
    pid: int | None


@dataclass(frozen=True)
class DataVolumes:
    """Row counts of the casino's tables and the span of the consolidated days."""

    sessions: int
    interactions: int
    players: int
    slots: int
    active_slots: int
    first_day: date | None
    last_day: date | None


@dataclass(frozen=True)
class SlotAttributes:
    """Catalogue attributes of slots, row ``i`` for ``slot_keys[i]`` (the order asked for)."""

    slot_keys: np.ndarray  # (n,) int64
    slot_ids: np.ndarray  # (n,) object (str), the casino's ids
    providers: np.ndarray  # (n,) object (str)
    themes: np.ndarray  # (n,) object (str)


_COLUMNS = (
    "id, run_day, status, stage, started_at, finished_at, stages, inputs, version_id, error, report_path, host, pid"
)


def _run(row) -> PipelineRun:
    return PipelineRun(*row)


@contextmanager
def pipeline_lock(engine: sa.Engine) -> Iterator[None]:
    """Hold the pipeline lock; raise :class:`PipelineBusy` at once (no waiting) when it is taken."""
    with engine.connect() as conn:
        taken = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": PIPELINE_LOCK}).scalar_one()
        conn.commit()
        if not taken:
            holder = running_run(engine)
            where = "" if holder is None else (
                f" (run {holder.id}, started {holder.started_at:%Y-%m-%d %H:%M:%S %Z} by pid {holder.pid} "
                f"on {holder.host})"
            )
            raise PipelineBusy(f"another pipeline is running{where}; this one exits", holder)
        try:
            yield
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": PIPELINE_LOCK})
                conn.commit()
            except (sa.exc.DBAPIError, DatabaseUnavailable) as exc:
                # The connection is gone (server restart): so is the lock.
                log.warning("could not release the pipeline lock (%s); the server released it with the session", exc)


def fail_stale(engine: sa.Engine) -> list[PipelineRun]:
    """Mark ``running`` rows ``failed``. Call it holding :func:`pipeline_lock`: no other pipeline is
    alive then, so a row still ``running`` belongs to one that died."""
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text(
                "UPDATE pipeline_runs SET status = 'failed', finished_at = now(), "
                f"error = coalesce(error, :error) WHERE status = 'running' RETURNING {_COLUMNS}"
            ),
            {"error": STALE_ERROR},
        ).all()
    return [_run(r) for r in rows]


def start_run(engine: sa.Engine, *, inputs: dict[str, Any], host: str, pid: int) -> PipelineRun:
    """Insert a ``running`` row (run day: today in UTC) and commit it."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "INSERT INTO pipeline_runs (run_day, status, inputs, host, pid) "
                "VALUES ((now() AT TIME ZONE 'UTC')::date, 'running', CAST(:inputs AS jsonb), :host, :pid) "
                f"RETURNING {_COLUMNS}"
            ),
            {"inputs": json.dumps(inputs), "host": host, "pid": pid},
        ).one()
    return _run(row)


def enter_stage(engine: sa.Engine, run_id: int, stage: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE pipeline_runs SET stage = :stage WHERE id = :id"), {"id": run_id, "stage": stage})


def record_stage(engine: sa.Engine, run_id: int, stage: str, figures: dict[str, Any]) -> None:
    """Store one stage's figures (seconds, row counts) under ``stages -> stage``."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE pipeline_runs SET stages = stages || jsonb_build_object(CAST(:stage AS text), "
                "CAST(:f AS jsonb)) WHERE id = :id"
            ),
            {"id": run_id, "stage": stage, "f": json.dumps(figures, default=str)},
        )


def set_version(engine: sa.Engine, run_id: int, version_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE pipeline_runs SET version_id = :v WHERE id = :id"), {"id": run_id, "v": version_id}
        )


def finish_run(
    engine: sa.Engine,
    run_id: int,
    status: str,
    *,
    version_id: int | None = None,
    error: str | None = None,
    report_path: str | None = None,
) -> PipelineRun:
    """End a run with ``status`` (succeeded, refused, skipped or failed)."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "UPDATE pipeline_runs SET status = :status, finished_at = now(), "
                "version_id = coalesce(:version, version_id), error = :error, report_path = :report "
                f"WHERE id = :id RETURNING {_COLUMNS}"
            ),
            {
                "id": run_id,
                "status": status,
                "version": version_id,
                "error": None if error is None else error[:4000],
                "report": report_path,
            },
        ).one()
    return _run(row)


def get_run(engine: sa.Engine, run_id: int) -> PipelineRun | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM pipeline_runs WHERE id = :id"), {"id": run_id}
        ).one_or_none()
    return None if row is None else _run(row)


def list_runs(engine: sa.Engine, limit: int = 50) -> list[PipelineRun]:
    """Newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM pipeline_runs ORDER BY id DESC LIMIT :limit"), {"limit": limit}
        ).all()
    return [_run(r) for r in rows]


def running_run(engine: sa.Engine) -> PipelineRun | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM pipeline_runs WHERE status = 'running' ORDER BY id DESC LIMIT 1")
        ).one_or_none()
    return None if row is None else _run(row)


def last_completed(engine: sa.Engine, *, before: int | None = None) -> PipelineRun | None:
    """The newest run that trained to the end (``succeeded`` or ``refused``), older than run ``before``."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                f"SELECT {_COLUMNS} FROM pipeline_runs WHERE status IN ('succeeded', 'refused') "
                "AND (CAST(:before AS integer) IS NULL OR id < :before) ORDER BY id DESC LIMIT 1"
            ),
            {"before": before},
        ).one_or_none()
    return None if row is None else _run(row)


def session_state(engine: sa.Engine) -> tuple[int, datetime | None]:
    """``(number of play sessions, their latest updated_at)``: what consolidation would read.

    Every write path of ``play_sessions`` stamps ``updated_at = now()``, so new or changed play moves
    the maximum and an insert or a delete moves the count.
    """
    with engine.connect() as conn:
        count, latest = conn.execute(sa.text("SELECT count(*), max(updated_at) FROM play_sessions")).one()
    return int(count), latest


def data_volumes(engine: sa.Engine) -> DataVolumes:
    with engine.connect() as conn:
        sessions = conn.execute(sa.text("SELECT count(*) FROM play_sessions")).scalar_one()
        interactions, first_day, last_day = conn.execute(
            sa.text("SELECT count(*), min(day), max(day) FROM interactions")
        ).one()
        players = conn.execute(sa.text("SELECT count(*) FROM players")).scalar_one()
        slots, active = conn.execute(sa.text("SELECT count(*), count(*) FILTER (WHERE active) FROM slots")).one()
    return DataVolumes(
        sessions=int(sessions),
        interactions=int(interactions),
        players=int(players),
        slots=int(slots),
        active_slots=int(active),
        first_day=first_day,
        last_day=last_day,
    )


def slot_attributes(engine: sa.Engine, slot_keys: np.ndarray) -> SlotAttributes:
    """Provider and theme of each of ``slot_keys`` (database keys), in that order.

    A key the catalogue no longer holds gets empty strings.
    """
    keys = np.asarray(slot_keys, dtype=np.int64)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, slot_id, provider, theme FROM slots WHERE id = ANY(:keys)"),
            {"keys": keys.tolist()},
        ).all()
    found = {int(r[0]): r[1:] for r in rows}
    missing = ("", "", "")
    columns = [found.get(int(k), missing) for k in keys]
    return SlotAttributes(
        slot_keys=keys,
        slot_ids=np.array([c[0] for c in columns], dtype=object),
        providers=np.array([c[1] for c in columns], dtype=object),
        themes=np.array([c[2] for c in columns], dtype=object),
    )
