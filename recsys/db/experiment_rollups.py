"""Experiments' outcomes rolled up from the log, refreshed incrementally, frozen once stopped.

Issue 22: with 10^7 logged items and 20 experiments, summing every experiment's lists, items,
feedback and play again on each read took more than 120 s. Migration 0014 keeps them
(docs/experiments.md):

- ``experiment_list_outcomes``: each list of an experiment, its items' outcomes summed, with the
  clicked items' seconds as an array (for each arm's median, and to count ``long_clicks`` again
  when the session threshold changes);
- ``experiment_player_outcomes``: the sums :class:`recsys.experiments.PlayerSums` holds, per
  player of an arm, summed from the player's list rows;
- ``experiment_rollups``: where each experiment stands.

How a read keeps them right:

- **Whole lists, recomputed.** A refresh finds the lists of the experiment that were created, or
  whose feedback was received or whose attributed sessions were updated, since the experiment's
  watermark (each through its own index on that column), recomputes each of those lists from the
  log (the reference query's CTEs, :data:`recsys.db.experiments.LISTS_AND_ITEMS`), then sums their
  players again from the list rows. A list recomputed twice gets the same row, so nothing is ever
  counted twice, and the sums equal the reference query's over the whole log (the tests check it
  player by player).
- **No change missed.** Those three columns are ``now()`` of the transaction that wrote them,
  which can commit long after its ``now()``. The new watermark is the earliest start of a
  transaction still open when the refresh looks (``pg_stat_activity``; at most the refresh's own
  clock): a change that a refresh could not see yet carries a time at or after it, so the next
  refresh reads it. No trigger on the online path's tables, which another engineer owns: the
  refresh reads them by index from the watermark instead.
- **One refresher at a time**: the experiment's ``experiment_rollups`` row is locked ``FOR
  UPDATE`` (a second API process waits, then starts from the first one's watermark). The analyst
  reads the three tables and can lock none.
- **Frozen.** :data:`SETTLE` after an experiment stopped, a last refresh folds in what came, and
  its statistics are stored (:class:`recsys.experiments.SummedSums` per arm, for the session
  threshold in force); from then on it is never read from the log again, and feedback or play that
  arrives later is not counted. Read with another session threshold, it is stored again for that
  one from the same rows.

The first read of an experiment fills its rollup from the log (the old cost, once).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import NamedTuple

import numpy as np
import sqlalchemy as sa

from recsys.experiments import SUM_NAMES, ArmOutcome, Experiment, PlayerSums, SummedSums

SETTLE = timedelta(days=1)
"""How long after its stop an experiment's outcomes may still change before they are frozen: a
session starts within the attribution window after a click (30 min by default), goes on up to the
late-session limit (3 h by default), and clients may send feedback late; a day covers the three."""

COLUMNS = SUM_NAMES
"""The sums ``experiment_player_outcomes`` stores per player."""

LIST_COLUMNS = ("suppressed", "reality_check", "items", "impressions", "clicks", "plays", "dismissals",
                "click_seconds")
"""What ``experiment_list_outcomes`` stores per list beside its experiment, arm and player."""

# The earliest time a change not yet visible to this refresh can carry: the start (``now()``) of
# the oldest transaction still open in this database, other than this one, or this refresh's clock.
_WATERMARK = """
SELECT least(clock_timestamp(), (
    SELECT min(xact_start) FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
))
"""

# The lists created, or whose feedback was received or attributed sessions updated, at or after
# :since, each through the index on its time column (feedback and sessions name their list; the
# lists of other experiments among them are left out when they are recomputed).
_CHANGED_LISTS = """
SELECT r.id FROM recommendations r WHERE r.created_at >= :since AND r.experiment_id = :e AND r.arm IS NOT NULL
UNION
SELECT f.recommendation_id FROM feedback f WHERE f.received_at >= :since
UNION
SELECT s.recommendation_id FROM play_sessions s WHERE s.updated_at >= :since AND s.recommendation_id IS NOT NULL
"""

# Each list in scope with its items' outcomes summed, written over its row; returns the players.
_LIST_UPSERT = """, by_item AS (
    SELECT list_id, count(*) AS items, count(*) FILTER (WHERE impressed) AS impressions,
           count(*) FILTER (WHERE clicked) AS clicks, count(*) FILTER (WHERE played) AS plays,
           count(*) FILTER (WHERE dismissed) AS dismissals,
           array_agg(click_seconds ORDER BY click_seconds) FILTER (WHERE clicked) AS click_seconds
    FROM items GROUP BY list_id
)
INSERT INTO experiment_list_outcomes (recommendation_id, experiment_id, arm, player_key, {columns})
SELECT l.id, :e, l.arm, l.player_key, l.suppressed, l.reality_check, coalesce(i.items, 0),
       coalesce(i.impressions, 0), coalesce(i.clicks, 0), coalesce(i.plays, 0), coalesce(i.dismissals, 0),
       coalesce(i.click_seconds, '{{}}')
FROM lists l LEFT JOIN by_item i ON i.list_id = l.id
ON CONFLICT (recommendation_id) DO UPDATE SET {updates}
RETURNING arm, player_key
""".format(columns=", ".join(LIST_COLUMNS), updates=", ".join(f"{c} = excluded.{c}" for c in LIST_COLUMNS))

# The players in scope summed again from their list rows, ``long_clicks`` against :threshold.
_PLAYER_UPSERT = """
INSERT INTO experiment_player_outcomes (experiment_id, arm, player_key, {columns})
SELECT :e, l.arm, l.player_key, count(*), count(*) FILTER (WHERE l.suppressed),
       count(*) FILTER (WHERE l.reality_check), sum(l.items), sum(l.impressions), sum(l.clicks), sum(l.plays),
       sum(l.dismissals), coalesce(sum(c.seconds), 0) / 60.0, coalesce(sum(c.long_clicks), 0)
FROM experiment_list_outcomes l
CROSS JOIN LATERAL (
    SELECT sum(x) AS seconds, count(*) FILTER (WHERE x >= :threshold) AS long_clicks FROM unnest(l.click_seconds) x
) c
WHERE l.experiment_id = :e AND {{scope}}
GROUP BY l.arm, l.player_key
ON CONFLICT (experiment_id, arm, player_key) DO UPDATE SET {updates}
""".format(columns=", ".join(COLUMNS), updates=", ".join(f"{c} = excluded.{c}" for c in COLUMNS))

# Per arm, each sum as one array of big-endian float8 in the players' order, for numpy to read as it
# is (19,000 players' ten sums as PostgreSQL arrays took 85 ms to parse in Python, as text 30 ms).
_READ = """
SELECT arm, {arrays} FROM experiment_player_outcomes WHERE experiment_id = :e GROUP BY arm
""".format(arrays=", ".join(f"string_agg(float8send({c}::float8), ''::bytea ORDER BY player_key) AS {c}"
                            for c in COLUMNS))

# Per arm, the median minutes of continuous play after a click (the reference's percentile_cont,
# over the same values), kept in experiment_rollups.medians while the rows stay as they are.
_MEDIANS = """
SELECT coalesce(jsonb_object_agg(arm, median), '{}') FROM (
    SELECT arm, percentile_cont(0.5) WITHIN GROUP (ORDER BY x) / 60.0 AS median
    FROM experiment_list_outcomes, unnest(click_seconds) x WHERE experiment_id = :e GROUP BY arm
) m
"""


def roll_up(conn: sa.Connection, experiment_id: int, lists: list | None, threshold_seconds: float) -> int:
    """Recompute ``lists`` (recommendation ids; None: every list of the experiment) from the log into
    ``experiment_list_outcomes``, then their players into ``experiment_player_outcomes``
    (``long_clicks`` against ``threshold_seconds``); returns how many lists were written."""
    from recsys.db.experiments import LISTS_AND_ITEMS

    scope = "true" if lists is None else "r.id = ANY(CAST(:lists AS uuid[]))"
    written = conn.execute(sa.text(LISTS_AND_ITEMS.format(scope=scope) + _LIST_UPSERT),
                           {"e": experiment_id, "lists": lists or []}).all()
    if written:
        players = None if lists is None else sorted(set(written))
        sum_players(conn, experiment_id, players, threshold_seconds)
    return len(written)


def sum_players(conn: sa.Connection, experiment_id: int, players: list[tuple[str, int]] | None,
                threshold_seconds: float) -> None:
    """Sum ``players`` (``(arm, player_key)``; None: all) of the experiment again from their list rows."""
    scope = "true" if players is None else \
        "(l.arm, l.player_key) IN (SELECT * FROM unnest(CAST(:arms AS text[]), CAST(:players AS bigint[])))"
    conn.execute(sa.text(_PLAYER_UPSERT.format(scope=scope)),
                 {"e": experiment_id, "threshold": threshold_seconds,
                  "arms": [a for a, _ in players or []], "players": [p for _, p in players or []]})


class State(NamedTuple):
    frozen: dict | None  # the frozen statistics, or None
    medians: dict[str, float]  # arm -> median minutes after a click (arms without clicks left out)


def refresh(conn: sa.Connection, experiment_id: int, threshold_seconds: float) -> State:
    """Fold into the rollup what changed in the log since the experiment's watermark, in ``conn``'s
    transaction, holding its ``experiment_rollups`` row until the caller commits; ``long_clicks``
    against ``threshold_seconds`` (recounted from ``click_seconds`` if it changed). A frozen
    experiment's log is not read."""
    conn.execute(sa.text("INSERT INTO experiment_rollups (experiment_id) VALUES (:e) ON CONFLICT DO NOTHING"),
                 {"e": experiment_id})
    state = conn.execute(sa.text("SELECT watermark, threshold_seconds, frozen, medians FROM experiment_rollups "
                                 "WHERE experiment_id = :e FOR UPDATE"), {"e": experiment_id}).one()
    params = {"e": experiment_id, "threshold": threshold_seconds}
    if state.watermark is not None and state.threshold_seconds != threshold_seconds:
        sum_players(conn, experiment_id, None, threshold_seconds)  # long_clicks from the lists' seconds
    medians = state.medians
    if state.frozen is None:
        watermark = conn.execute(sa.text(_WATERMARK)).scalar_one()  # before any read of the log
        written = 0
        if state.watermark is None:
            written = roll_up(conn, experiment_id, None, threshold_seconds)
        else:
            changed = conn.execute(sa.text(_CHANGED_LISTS), {"e": experiment_id, "since": state.watermark})
            lists = sorted(changed.scalars())
            if lists:
                written = roll_up(conn, experiment_id, lists, threshold_seconds)
        if written or medians is None:
            medians = conn.execute(sa.text(_MEDIANS), params).scalar_one()
        conn.execute(sa.text("UPDATE experiment_rollups SET watermark = :w, medians = :m, refreshed_at = now() "
                             "WHERE experiment_id = :e"), {**params, "w": watermark, "m": json.dumps(medians)})
    conn.execute(sa.text("UPDATE experiment_rollups SET threshold_seconds = :threshold WHERE experiment_id = :e "
                         "AND threshold_seconds IS DISTINCT FROM :threshold"), params)
    return State(state.frozen, medians or {})


def outcomes(engine: sa.Engine, experiment: Experiment, threshold_seconds: float) -> list[ArmOutcome]:
    """:func:`recsys.db.experiments.outcomes` from the rollup: refreshed first, then read; a stopped
    experiment :data:`SETTLE` past its stop is frozen by this read and read from what it stored."""
    with engine.begin() as conn:
        frozen = conn.execute(sa.text("SELECT frozen FROM experiment_rollups WHERE experiment_id = :e"),
                              {"e": experiment.id}).scalar()
        if frozen is not None and frozen["threshold_seconds"] == threshold_seconds:
            return _from_frozen(experiment, frozen)  # no lock, no write
        frozen, medians = refresh(conn, experiment.id, threshold_seconds)
        params = {"e": experiment.id}
        rows = {r.arm: r for r in conn.execute(sa.text(_READ), params)}
        found = [_outcome(arm, rows.get(arm.name), medians.get(arm.name)) for arm in experiment.arms]
        if frozen is not None or conn.execute(
                sa.text("SELECT stopped_at < now() - :settle FROM experiments WHERE id = :e"),
                {**params, "settle": SETTLE}).scalar():
            # Frozen now, or frozen before for another session threshold: stored for this one.
            conn.execute(
                sa.text("UPDATE experiment_rollups SET frozen = :f, frozen_at = coalesce(frozen_at, now()) "
                        "WHERE experiment_id = :e"),
                {**params, "f": json.dumps(_frozen(found, threshold_seconds))})
        return found


def _outcome(arm, row, median: float | None) -> ArmOutcome:
    if row is None:
        return ArmOutcome(arm.name, arm.version_id, arm.weight, PlayerSums.of(**{n: np.zeros(0) for n in SUM_NAMES}))
    sums = PlayerSums.of(**{name: np.frombuffer(getattr(row, name), dtype=">f8").astype(np.float64)
                            for name in SUM_NAMES})
    return ArmOutcome(arm.name, arm.version_id, arm.weight, sums, None if median is None else float(median))


def _frozen(found: list[ArmOutcome], threshold_seconds: float) -> dict:
    return {"threshold_seconds": threshold_seconds,
            "arms": {o.arm: {"sums": SummedSums.of(o.sums).to_json(), "median_click_minutes": o.median_click_minutes}
                     for o in found}}


def _from_frozen(experiment: Experiment, frozen: dict) -> list[ArmOutcome]:
    out = []
    for arm in experiment.arms:
        stored = frozen["arms"].get(arm.name)
        if stored is None:
            out.append(_outcome(arm, None, None))
            continue
        out.append(ArmOutcome(arm.name, arm.version_id, arm.weight, SummedSums.from_json(stored["sums"]),
                              stored["median_click_minutes"]))
    return out
