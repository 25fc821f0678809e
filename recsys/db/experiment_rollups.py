"""Experiments' per-player sums rolled up from the log, refreshed incrementally, frozen once stopped.

Issue 22: with 10^7 logged items and 20 experiments, summing every experiment's lists, items,
feedback and play again on each read took more than 120 s. ``experiment_player_outcomes`` keeps
the sums :class:`recsys.experiments.PlayerSums` holds, per player of an arm (the clicked items'
seconds as an array, so that the session threshold and the median are applied on read), and
``experiment_rollups`` where each experiment stands (migration 0014, docs/experiments.md):

- **Whole players, recomputed.** A refresh finds the players whose lists were created, whose
  feedback was received or whose attributed sessions were updated since the experiment's watermark
  (each through its own index on that column), and recomputes each of them from the log with the
  reference query (:data:`recsys.db.experiments.PER_PLAYER`) restricted to them. A player
  recomputed twice gets the same row, so nothing is ever counted twice, and the sums equal the
  reference query's over the whole log.
- **No change missed.** Those three columns are ``now()`` of the transaction that wrote them,
  which can commit long after its ``now()``. The new watermark is the earliest start of a
  transaction still open when the refresh looks (``pg_stat_activity``; at most the refresh's own
  clock): a change that a refresh could not see yet carries a time at or after it, so the next
  refresh reads it. No trigger on the online path's tables, which another engineer owns: the
  refresh reads them by index from the watermark instead.
- **One refresher at a time**: the experiment's ``experiment_rollups`` row is locked ``FOR
  UPDATE`` (a second API process waits, then starts from the first one's watermark). The analyst
  reads both tables and can lock neither.
- **Frozen.** :data:`SETTLE` after an experiment stopped, a last refresh folds in what came, and
  its statistics are stored (:class:`recsys.experiments.SummedSums` per arm, for the session
  threshold in force); from then on it is never read from the log again, and feedback or play that
  arrives later is not counted.

The first read of an experiment fills its rollup from the log (the old cost, once).
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import sqlalchemy as sa

from recsys.experiments import SUM_NAMES, ArmOutcome, Experiment, PlayerSums, SummedSums

SETTLE = timedelta(days=1)
"""How long after its stop an experiment's outcomes may still change before they are frozen: a
session starts within the attribution window after a click (30 min by default), goes on up to the
late-session limit (3 h by default), and clients may send feedback late; a day covers the three."""

COUNTS = ("lists", "suppressed", "reality_checks", "items", "impressions", "clicks", "plays", "dismissals")
"""The integer columns of ``experiment_player_outcomes``, in order."""

# The earliest time a change not yet visible to this refresh can carry: the start (``now()``) of
# the oldest transaction still open in this database, other than this one, or this refresh's clock.
_WATERMARK = """
SELECT least(clock_timestamp(), (
    SELECT min(xact_start) FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
))
"""

# The players of experiment :e with a list, feedback or attributed session written at or after
# :since; each branch goes through the index on its time column, then the list by its key.
_CHANGED_PLAYERS = """
SELECT DISTINCT player_key FROM (
    SELECT r.player_key FROM recommendations r
    WHERE r.created_at >= :since AND r.experiment_id = :e AND r.arm IS NOT NULL
    UNION ALL
    SELECT r.player_key FROM feedback f JOIN recommendations r ON r.id = f.recommendation_id
    WHERE f.received_at >= :since AND r.experiment_id = :e AND r.arm IS NOT NULL
    UNION ALL
    SELECT r.player_key FROM play_sessions s JOIN recommendations r ON r.id = s.recommendation_id
    WHERE s.updated_at >= :since AND s.recommendation_id IS NOT NULL AND r.experiment_id = :e AND r.arm IS NOT NULL
) changed
"""

_UPSERT = """
INSERT INTO experiment_player_outcomes (experiment_id, arm, player_key, {counts}, click_seconds)
SELECT :e, arm, player_key, {counts}, click_seconds FROM per_player
ON CONFLICT (experiment_id, arm, player_key) DO UPDATE SET
    {updates}, click_seconds = excluded.click_seconds
""".format(counts=", ".join(COUNTS), updates=", ".join(f"{c} = excluded.{c}" for c in COUNTS))

# Per arm, in the rollup's rows ordered by player: each sum as an array, the session threshold and
# the minutes applied to the clicked items' seconds, and the median minutes after a click.
_READ = """
SELECT o.arm, {arrays},
       array_agg((SELECT coalesce(sum(x), 0) FROM unnest(o.click_seconds) x) / 60.0 ORDER BY o.player_key)
           AS click_minutes,
       array_agg((SELECT count(*) FROM unnest(o.click_seconds) x WHERE x >= :threshold) ORDER BY o.player_key)
           AS long_clicks,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM experiment_player_outcomes m,
               unnest(m.click_seconds) x WHERE m.experiment_id = :e AND m.arm = o.arm) / 60.0 AS median_click_minutes
FROM experiment_player_outcomes o WHERE o.experiment_id = :e GROUP BY o.arm
""".format(arrays=", ".join(f"array_agg(o.{c} ORDER BY o.player_key) AS {c}" for c in COUNTS))


def roll_up(conn: sa.Connection, experiment_id: int, players: list[int] | None) -> int:
    """Recompute ``players`` (player keys; None: every player of the experiment) from the log into
    ``experiment_player_outcomes``; returns how many rows were written."""
    from recsys.db.experiments import PER_PLAYER

    scope = "true" if players is None else "r.player_key = ANY(CAST(:players AS bigint[]))"
    sql = PER_PLAYER.format(scope=scope) + _UPSERT
    # :threshold only sets long_clicks, which the rollup leaves to the read (from click_seconds).
    return conn.execute(sa.text(sql), {"e": experiment_id, "players": players or [], "threshold": 0.0}).rowcount


def refresh(conn: sa.Connection, experiment_id: int) -> dict | None:
    """Fold into the rollup what changed in the log since the experiment's watermark, in ``conn``'s
    transaction, holding its ``experiment_rollups`` row until the caller commits. Returns the
    frozen statistics (nothing is refreshed then) or None."""
    conn.execute(sa.text("INSERT INTO experiment_rollups (experiment_id) VALUES (:e) ON CONFLICT DO NOTHING"),
                 {"e": experiment_id})
    state = conn.execute(sa.text("SELECT watermark, frozen FROM experiment_rollups WHERE experiment_id = :e "
                                 "FOR UPDATE"), {"e": experiment_id}).one()
    if state.frozen is not None:
        return state.frozen
    watermark = conn.execute(sa.text(_WATERMARK)).scalar_one()  # before any read of the log
    if state.watermark is None:
        roll_up(conn, experiment_id, None)
    else:
        changed = conn.execute(sa.text(_CHANGED_PLAYERS), {"e": experiment_id, "since": state.watermark}).scalars()
        players = sorted(changed)
        if players:
            roll_up(conn, experiment_id, players)
    conn.execute(sa.text("UPDATE experiment_rollups SET watermark = :w, refreshed_at = now() WHERE experiment_id = :e"),
                 {"e": experiment_id, "w": watermark})
    return None


def outcomes(engine: sa.Engine, experiment: Experiment, threshold_seconds: float) -> list[ArmOutcome]:
    """:func:`recsys.db.experiments.outcomes` from the rollup: refreshed first, then read; a stopped
    experiment :data:`SETTLE` past its stop is frozen by this read and read from what it stored."""
    with engine.begin() as conn:
        frozen = refresh(conn, experiment.id)
        if frozen is not None and frozen["threshold_seconds"] == threshold_seconds:
            return _from_frozen(experiment, frozen)
        rows = {r.arm: r for r in conn.execute(sa.text(_READ), {"e": experiment.id, "threshold": threshold_seconds})}
        found = [_outcome(arm, rows.get(arm.name)) for arm in experiment.arms]
        if frozen is None and conn.execute(
                sa.text("SELECT stopped_at < now() - :settle FROM experiments WHERE id = :e"),
                {"e": experiment.id, "settle": SETTLE}).scalar():
            conn.execute(
                sa.text("UPDATE experiment_rollups SET frozen = :f, frozen_at = now() WHERE experiment_id = :e"),
                {"e": experiment.id, "f": json.dumps(_frozen(found, threshold_seconds))})
        return found


def _outcome(arm, row) -> ArmOutcome:
    if row is None:
        sums = PlayerSums.of(**{name: np.zeros(0) for name in SUM_NAMES})
        return ArmOutcome(arm.name, arm.version_id, arm.weight, sums, None)
    sums = PlayerSums.of(**{name: np.asarray(getattr(row, name), dtype=np.float64) for name in SUM_NAMES})
    median = None if row.median_click_minutes is None else float(row.median_click_minutes)
    return ArmOutcome(arm.name, arm.version_id, arm.weight, sums, median)


def _frozen(found: list[ArmOutcome], threshold_seconds: float) -> dict:
    return {"threshold_seconds": threshold_seconds,
            "arms": {o.arm: {"sums": SummedSums.of(o.sums).to_json(), "median_click_minutes": o.median_click_minutes}
                     for o in found}}


def _from_frozen(experiment: Experiment, frozen: dict) -> list[ArmOutcome]:
    out = []
    for arm in experiment.arms:
        stored = frozen["arms"].get(arm.name)
        if stored is None:
            out.append(_outcome(arm, None))
            continue
        out.append(ArmOutcome(arm.name, arm.version_id, arm.weight, SummedSums.from_json(stored["sums"]),
                              stored["median_click_minutes"]))
    return out
