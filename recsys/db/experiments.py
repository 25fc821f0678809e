"""Experiments: start, stop, read, and the per-player outcomes of their lists.

Starting or stopping one sends ``NOTIFY recsys_experiments`` so every API replica reloads the
running experiment (and the versions its arms need) without a restart.
"""

from __future__ import annotations

import logging

import numpy as np
import sqlalchemy as sa

from recsys.db import versions
from recsys.errors import InputError, NotFound, RecsysError
from recsys.experiments import (
    DEFAULT_MIN_EFFECT,
    MODEL,
    SUM_NAMES,
    Arm,
    ArmOutcome,
    Experiment,
    PlayerSums,
    results,
)

log = logging.getLogger(__name__)

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
        sa.text("SELECT experiment_id, name, version_id, weight, strategy FROM experiment_arms "
                "WHERE experiment_id = ANY(:ids) ORDER BY experiment_id, position"),
        {"ids": experiment_ids},
    ).all()
    out: dict[int, list[Arm]] = {}
    for r in rows:
        out.setdefault(r.experiment_id, []).append(Arm(r.name, r.version_id, r.weight, r.strategy or MODEL))
    return {k: tuple(v) for k, v in out.items()}


def _select(conn: sa.Connection, where: str, params: dict, limit: int = 100) -> list[Experiment]:
    rows = conn.execute(
        sa.text(f"SELECT id, name, status, started_at, stopped_at, promoted_arm, min_effect FROM experiments "
                f"WHERE {where} ORDER BY id DESC LIMIT :limit"),
        {**params, "limit": limit},
    ).all()
    arms = _arms(conn, [r.id for r in rows])
    return [Experiment(r.id, r.name, r.status, arms.get(r.id, ()), r.started_at, r.stopped_at, r.promoted_arm,
                       r.min_effect) for r in rows]


def start(engine: sa.Engine, name: str, arms: tuple[Arm, ...], *, min_effect: float = DEFAULT_MIN_EFFECT,
          force: bool = False) -> Experiment:
    """Insert a running experiment and NOTIFY. Every arm's version must exist with its weights
    (ready, active or retired), and one the quality gate refused serves an arm only with ``force``
    (as for activation; logged). Only one experiment runs at a time. ``min_effect``: the relative
    lift in clicks per impression its sample is sized for (``recsys.experiments.SamplePlan``)."""
    with engine.begin() as conn:
        conn.execute(sa.text("LOCK TABLE experiments IN SHARE ROW EXCLUSIVE MODE"))
        running = _select(conn, "status = 'running'", {})
        if running:
            raise ExperimentError(name, f"experiment {running[0].name!r} is running; stop it first "
                                        "(one experiment at a time)")
        if _select(conn, "name = :name", {"name": name}):
            raise ExperimentError(name, "exists already; experiment names are never reused")
        wanted = sorted({a.version_id for a in arms if a.version_id is not None})
        found = {r.id: r for r in conn.execute(
            sa.text("SELECT id, status, metrics -> 'gate' ->> 'passed' AS passed, metrics -> 'gate' ->> 'reason' "
                    "AS reason FROM model_versions WHERE id = ANY(:ids) AND weights IS NOT NULL"),
            {"ids": wanted},
        )}
        for arm in arms:
            if arm.version_id is None:
                continue
            row = found.get(arm.version_id)
            if row is None or row.status not in SERVABLE:
                raise ExperimentError(name, f"arm {arm.name!r}: model version {arm.version_id} "
                                            f"{'is ' + row.status if row else 'does not exist or has no weights'}; "
                                            "an arm needs a ready, active or retired version")
            if row.passed == "false" and row.status != "active":
                if not force:
                    raise ExperimentError(name, f"arm {arm.name!r}: the quality gate refused model version "
                                                f"{arm.version_id} ({row.reason}); force serves it in an arm anyway")
                log.warning("experiment %r: arm %r serves model version %d, which the quality gate refused (%s), "
                            "by force", name, arm.name, arm.version_id, row.reason)
        experiment_id = conn.execute(
            sa.text("INSERT INTO experiments (name, min_effect) VALUES (:name, :m) RETURNING id"),
            {"name": name, "m": min_effect},
        ).scalar_one()
        conn.execute(
            sa.text("INSERT INTO experiment_arms (experiment_id, position, name, version_id, weight, strategy) "
                    "VALUES (:e, :p, :n, :v, :w, :s)"),
            [{"e": experiment_id, "p": i, "n": a.name, "v": a.version_id, "w": a.weight,
              "s": None if a.version_id is not None else a.strategy} for i, a in enumerate(arms)],
        )
        conn.execute(sa.text("SELECT recsys_notify(:c, :p)"), {"c": CHANNEL, "p": name})
        return _select(conn, "id = :id", {"id": experiment_id})[0]


def stop(engine: sa.Engine, name: str, *, promote: str | None = None, force: bool = False,
         threshold_seconds: float = 3600.0) -> Experiment:
    """End the running experiment ``name`` and NOTIFY; with ``promote``, first activate that arm's
    version through the normal activation path (:func:`recsys.db.versions.activate`: a version the
    quality gate refused raises ``VersionError`` unless ``force``). An arm worse than the control
    on a protection guardrail (``recsys.experiments.GUARDRAILS``, continuous play measured against
    ``threshold_seconds``) is refused too unless ``force``, which is logged. A refused promotion
    leaves the experiment running."""
    experiment = get(engine, name)
    if experiment.status != "running":
        raise ExperimentError(name, "is not running")
    if promote is not None:
        arm = experiment.arm(promote)
        if arm is None:
            raise InputError("promote", f"experiment {name!r} has no arm {promote!r} "
                                        f"(arms: {', '.join(a.name for a in experiment.arms)})", field="promote")
        if arm.version_id is None:
            raise ExperimentError(name, f"arm {promote!r} serves {arm.strategy}, which is no model version to activate")
        if arm is not experiment.control:
            flags = next(r for r in results(outcomes(engine, experiment, threshold_seconds), experiment.min_effect)
                         if r.outcome.arm == arm.name).guardrail_flags()
            if flags and not force:
                raise ExperimentError(name, f"not promoting arm {promote!r}: {'; '.join(flags)}; "
                                            "force promotes it anyway")
            if flags:
                log.warning("experiment %r: promoting arm %r by force although %s", name, promote, "; ".join(flags))
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


# Per player of an experiment's arms (those in {scope}), the sums recsys.experiments.PlayerSums
# holds; every table is reached from the experiment's own lists (the partial index on
# recommendations by experiment, then each list's items from its row, their feedback and attributed
# sessions by their recommendation_id indexes), so the cost follows the experiment's size, not the log's
# (docs/benchmarks.md, EXPLAIN). The reference the rollup is checked against.
LISTS_AND_ITEMS = """
WITH lists AS (
    SELECT r.id, r.created_at, r.player_key, r.arm, r.suppressed_reason IS NOT NULL AS suppressed,
           coalesce(r.action = 'reality_check', false) AS reality_check, r.slot_keys
    FROM recommendations r WHERE r.experiment_id = :e AND r.arm IS NOT NULL AND {scope}
), items AS MATERIALIZED (
    SELECT l.id AS list_id, l.arm, l.player_key, f.impressed, f.clicked, f.dismissed, p.seconds IS NOT NULL AS played,
           CASE WHEN f.clicked THEN coalesce(p.seconds, 0) END AS click_seconds
    FROM lists l
    -- Each list's items (its row's array), their feedback and play, read through their indexes,
    -- never by scanning (or hashing) the whole log: the aggregates keep these subqueries from being
    -- pulled up into joins the planner could run as a scan of every table, however large.
    CROSS JOIN LATERAL unnest(l.slot_keys) AS i(slot_key)
    CROSS JOIN LATERAL (
        SELECT coalesce(bool_or(fb.action = 'impression'), false) AS impressed,
               coalesce(bool_or(fb.action = 'click'), false) AS clicked,
               coalesce(bool_or(fb.action = 'dismiss'), false) AS dismissed
        FROM feedback fb WHERE fb.recommendation_id = l.id AND fb.slot_key = i.slot_key
    ) f
    CROSS JOIN LATERAL (
        SELECT sum(s.seconds) AS seconds FROM play_sessions s
        WHERE s.recommendation_id = l.id AND s.slot_key = i.slot_key
    ) p
)"""
"""The experiment's lists in ``{scope}`` and their items with each one's outcome (the CTEs ``lists``
and ``items``), as the reference and the rollup (recsys.db.experiment_rollups) both read them."""

PER_PLAYER = LISTS_AND_ITEMS + """, by_list AS (
    SELECT arm, player_key, count(*) AS lists, count(*) FILTER (WHERE suppressed) AS suppressed,
           count(*) FILTER (WHERE reality_check) AS reality_checks
    FROM lists GROUP BY arm, player_key
), by_item AS (
    SELECT arm, player_key, count(*) AS items, count(*) FILTER (WHERE impressed) AS impressions,
           count(*) FILTER (WHERE clicked) AS clicks, count(*) FILTER (WHERE played) AS plays,
           count(*) FILTER (WHERE dismissed) AS dismissals, coalesce(sum(click_seconds), 0) / 60.0 AS click_minutes,
           count(*) FILTER (WHERE click_seconds >= :threshold) AS long_clicks
    FROM items GROUP BY arm, player_key
), per_player AS (
    SELECT l.arm, l.player_key, l.lists, l.suppressed, l.reality_checks, coalesce(i.items, 0) AS items,
           coalesce(i.impressions, 0) AS impressions, coalesce(i.clicks, 0) AS clicks, coalesce(i.plays, 0) AS plays,
           coalesce(i.dismissals, 0) AS dismissals, coalesce(i.click_minutes, 0) AS click_minutes,
           coalesce(i.long_clicks, 0) AS long_clicks
    FROM by_list l LEFT JOIN by_item i ON i.arm = l.arm AND i.player_key = l.player_key
)"""

# The whole experiment from the log, and one more row per arm (player_key NULL) with the median
# minutes of continuous play after a click.
_FROM_LOG = PER_PLAYER.format(scope="true") + """
SELECT arm, player_key, lists, suppressed, reality_checks, items, impressions, clicks, plays, dismissals,
       click_minutes, long_clicks, NULL::float8 AS median_click_minutes
FROM per_player
UNION ALL
SELECT arm, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, percentile_cont(0.5) WITHIN GROUP (ORDER BY click_seconds) / 60.0
FROM items WHERE clicked GROUP BY arm
"""


def outcomes(engine: sa.Engine, experiment: Experiment, threshold_seconds: float = 3600.0) -> list[ArmOutcome]:
    """Per arm, in the experiment's order: the per-player sums of its lists (an arm with no list has
    no players) and the median minutes after a click. ``threshold_seconds``: the session threshold
    (``RECSYS_SESSION_THRESHOLD_SECONDS``) that ``long_clicks`` counts against. Read from the
    experiment's rollup, refreshed first (:mod:`recsys.db.experiment_rollups`): the same sums as
    :func:`outcomes_from_log`, at a cost that follows what changed since the last read; a frozen
    experiment's sums come as :class:`recsys.experiments.SummedSums`."""
    from recsys.db import experiment_rollups

    return experiment_rollups.outcomes(engine, experiment, threshold_seconds)


def outcomes_from_log(engine: sa.Engine, experiment: Experiment, threshold_seconds: float = 3600.0) -> list[ArmOutcome]:
    """:func:`outcomes` summed from the log on every call (the reference; players in key order)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(_FROM_LOG), {"e": experiment.id, "threshold": threshold_seconds}).all()
    columns: dict[str, dict[str, list[float]]] = {}
    medians: dict[str, float] = {}
    for r in sorted(rows, key=lambda r: (r.player_key is None, r.player_key or 0)):
        if r.player_key is None:
            medians[r.arm] = float(r.median_click_minutes)
            continue
        arm = columns.setdefault(r.arm, {name: [] for name in SUM_NAMES})
        for name in SUM_NAMES:
            arm[name].append(float(getattr(r, name)))
    empty = {name: np.zeros(0) for name in SUM_NAMES}
    return [ArmOutcome(arm.name, arm.version_id, arm.weight, PlayerSums.of(**columns.get(arm.name, empty)),
                       medians.get(arm.name)) for arm in experiment.arms]
