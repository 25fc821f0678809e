"""Experiments: start, stop, read, and the per-arm outcomes of their lists (``v_experiment_outcomes``).

Starting or stopping one sends ``NOTIFY recsys_experiments`` so every API replica reloads the
running experiment (and the versions its arms need) without a restart.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

from recsys.db import versions
from recsys.errors import InputError, NotFound, RecsysError
from recsys.experiments import Arm, ArmOutcome, Experiment

CHANNEL = "recsys_experiments"
SERVABLE = ("ready", "active", "retired")


class ExperimentError(RecsysError):
    """The experiment cannot do that now (another one runs, it is stopped, an arm's version is unusable)."""

    def __init__(self, name: str | None, message: str) -> None:
        self.name = name
        super().__init__(f"experiment {name!r}: {message}" if name else message)


class UnknownExperiment(NotFound):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__("experiment", name, f"experiment {name!r}: does not exist")


def _arms(conn: sa.Connection, experiment_ids: list[int]) -> dict[int, tuple[Arm, ...]]:
    rows = conn.execute(
        sa.text("SELECT experiment_id, name, version_id, weight FROM experiment_arms "
                "WHERE experiment_id = ANY(:ids) ORDER BY experiment_id, position"),
        {"ids": experiment_ids},
    ).all()
    out: dict[int, list[Arm]] = {}
    for r in rows:
        out.setdefault(r.experiment_id, []).append(Arm(r.name, r.version_id, r.weight))
    return {k: tuple(v) for k, v in out.items()}


def _select(conn: sa.Connection, where: str, params: dict, limit: int = 100) -> list[Experiment]:
    rows = conn.execute(
        sa.text(f"SELECT id, name, status, started_at, stopped_at, promoted_arm FROM experiments WHERE {where} "
                "ORDER BY id DESC LIMIT :limit"),
        {**params, "limit": limit},
    ).all()
    arms = _arms(conn, [r.id for r in rows])
    return [Experiment(r.id, r.name, r.status, arms.get(r.id, ()), r.started_at, r.stopped_at, r.promoted_arm)
            for r in rows]


def start(engine: sa.Engine, name: str, arms: tuple[Arm, ...]) -> Experiment:
    """Insert a running experiment and NOTIFY. Every arm's version must exist with its weights
    (ready, active or retired); only one experiment runs at a time."""
    with engine.begin() as conn:
        conn.execute(sa.text("LOCK TABLE experiments IN SHARE ROW EXCLUSIVE MODE"))
        running = _select(conn, "status = 'running'", {})
        if running:
            raise ExperimentError(name, f"experiment {running[0].name!r} is running; stop it first "
                                        "(one experiment at a time)")
        if _select(conn, "name = :name", {"name": name}):
            raise ExperimentError(name, "exists already; experiment names are never reused")
        wanted = sorted({a.version_id for a in arms if a.version_id is not None})
        found = dict(conn.execute(
            sa.text("SELECT id, status FROM model_versions WHERE id = ANY(:ids) AND weights IS NOT NULL"),
            {"ids": wanted},
        ).all())
        for arm in arms:
            if arm.version_id is None:
                continue
            status = found.get(arm.version_id)
            if status not in SERVABLE:
                raise ExperimentError(name, f"arm {arm.name!r}: model version {arm.version_id} "
                                            f"{'is ' + status if status else 'does not exist or has no weights'}; "
                                            "an arm needs a ready, active or retired version")
        experiment_id = conn.execute(
            sa.text("INSERT INTO experiments (name) VALUES (:name) RETURNING id"), {"name": name}
        ).scalar_one()
        conn.execute(
            sa.text("INSERT INTO experiment_arms (experiment_id, position, name, version_id, weight) "
                    "VALUES (:e, :p, :n, :v, :w)"),
            [{"e": experiment_id, "p": i, "n": a.name, "v": a.version_id, "w": a.weight} for i, a in enumerate(arms)],
        )
        conn.execute(sa.text("SELECT recsys_notify(:c, :p)"), {"c": CHANNEL, "p": name})
        return _select(conn, "id = :id", {"id": experiment_id})[0]


def stop(engine: sa.Engine, name: str, *, promote: str | None = None, force: bool = False) -> Experiment:
    """End the running experiment ``name`` and NOTIFY; with ``promote``, first activate that arm's
    version through the normal activation path (:func:`recsys.db.versions.activate`: a version the
    quality gate refused raises ``VersionError`` unless ``force``). A refused promotion leaves the
    experiment running."""
    experiment = get(engine, name)
    if experiment.status != "running":
        raise ExperimentError(name, "is not running")
    if promote is not None:
        arm = experiment.arm(promote)
        if arm is None:
            raise InputError("promote", f"experiment {name!r} has no arm {promote!r} "
                                        f"(arms: {', '.join(a.name for a in experiment.arms)})", field="promote")
        if arm.version_id is None:
            raise ExperimentError(name, f"arm {promote!r} serves popularity, which is no model version to activate")
        versions.activate(engine, arm.version_id, force=force)
    with engine.begin() as conn:
        updated = conn.execute(
            sa.text("UPDATE experiments SET status = 'stopped', stopped_at = now(), promoted_arm = :arm "
                    "WHERE id = :id AND status = 'running' RETURNING id"),
            {"id": experiment.id, "arm": promote},
        ).scalar()
        if updated is None:
            raise ExperimentError(name, "is not running")
        conn.execute(sa.text("SELECT recsys_notify(:c, :p)"), {"c": CHANNEL, "p": name})
        return _select(conn, "id = :id", {"id": updated})[0]


def get(engine: sa.Engine, name: str) -> Experiment:
    with engine.connect() as conn:
        found = _select(conn, "name = :name", {"name": name})
    if not found:
        raise UnknownExperiment(name)
    return found[0]


def running(engine: sa.Engine) -> Experiment | None:
    with engine.connect() as conn:
        found = _select(conn, "status = 'running'", {})
    return found[0] if found else None


def list_all(engine: sa.Engine, limit: int = 50) -> list[Experiment]:
    with engine.connect() as conn:
        return _select(conn, "true", {}, limit)


def outcomes(engine: sa.Engine, experiment: Experiment) -> list[ArmOutcome]:
    """Per arm, in the experiment's order: counts from ``v_experiment_outcomes`` and each click's
    minutes from ``v_experiment_items``."""
    with engine.connect() as conn:
        rows = {r.arm: r for r in conn.execute(
            sa.text("SELECT arm, players, lists, items, impressions, clicks, plays, dismissals "
                    "FROM v_experiment_outcomes WHERE experiment_id = :e"),
            {"e": experiment.id},
        )}
        minutes = dict(conn.execute(
            sa.text("SELECT arm, array_agg(seconds_after_click / 60.0) FROM v_experiment_items "
                    "WHERE experiment_id = :e AND clicked GROUP BY arm"),
            {"e": experiment.id},
        ).all())
    out = []
    for arm in experiment.arms:
        r = rows.get(arm.name)
        counts = (0,) * 7 if r is None else (r.players, r.lists, r.items, r.impressions, r.clicks, r.plays,
                                             r.dismissals)
        out.append(ArmOutcome(arm.name, arm.version_id, arm.weight, *(int(c) for c in counts),
                              np.asarray(minutes.get(arm.name) or [], dtype=np.float64)))
    return out

