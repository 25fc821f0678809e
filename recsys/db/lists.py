"""The statements one served list makes: the player, the exclusions, the log.

The serving process keeps the slow-changing state in memory (``recsys.serving.state``) and asks
the database per list only what must be exact at that moment:

- :func:`find_player`: the player's protection fields, vector, recent slots and precomputed top-N
  (one query);
- :func:`vet_candidates`: which candidates are still active, offered in the market, and not played
  by the player (ever, or within N days): an anti-join on ``play_sessions`` (one query);
- :func:`log_recommendation`: the served list and its items (one statement, one transaction).

Functions return rows as plain dataclasses and numpy arrays; ``recsys.serving`` builds its objects
from them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector

from recsys.errors import NotFound

RECENT_SLOTS = 5
"""Latest distinct slots of a player whose mean vector seeds candidates when there is no context."""


# --- the player ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlayerRow:
    key: int
    player_id: str
    market: str | None
    self_excluded_until: datetime | None
    cooling_off_until: datetime | None
    marketing_consent: bool | None
    risk_flag: bool | None
    towers: dict[str, np.ndarray] | None  # the version's vectors: {"gmf": (f,), "mlp": (f',)}; None: none
    recent_keys: np.ndarray  # (r,) int64, latest first
    top_n_keys: np.ndarray  # (n,) int64, the version's precomputed list, best first


_PLAYER = sa.text(
    """
    SELECT p.id, p.market, p.self_excluded_until, p.cooling_off_until, p.marketing_consent, p.risk_flag,
           e.gmf, e.mlp, e.player_key IS NOT NULL AS has_vector, o.slot_keys AS top_n,
           ARRAY(
               SELECT ps.slot_key FROM play_sessions ps WHERE ps.player_key = p.id
               GROUP BY ps.slot_key ORDER BY max(ps.started_at) DESC LIMIT :recent
           ) AS recent
    FROM players p
    LEFT JOIN player_embeddings e ON e.version_id = :version AND e.player_key = p.id
    LEFT JOIN offline_recommendations o ON o.version_id = :version AND o.player_key = p.id
    WHERE p.player_id = :player_id
    """
).columns(gmf=Vector(), mlp=Vector())


def find_player(conn: sa.Connection, player_id: str, version_id: int | None) -> PlayerRow:
    """The player with what one list needs; raises :class:`NotFound` for an unknown ``player_id``."""
    row = conn.execute(_PLAYER, {"player_id": player_id, "version": version_id, "recent": RECENT_SLOTS}).first()
    if row is None:
        raise NotFound("player", player_id)
    towers = None
    if row.has_vector:
        towers = {
            name: np.asarray(value, dtype=np.float32)
            for name, value in (("gmf", row.gmf), ("mlp", row.mlp))
            if value is not None
        }
    return PlayerRow(
        key=row.id,
        player_id=player_id,
        market=row.market,
        self_excluded_until=row.self_excluded_until,
        cooling_off_until=row.cooling_off_until,
        marketing_consent=row.marketing_consent,
        risk_flag=row.risk_flag,
        towers=towers,
        recent_keys=np.asarray(row.recent or [], dtype=np.int64),
        top_n_keys=np.asarray(row.top_n or [], dtype=np.int64),
    )


# --- the per-request exclusions --------------------------------------------------------------------


def vet_candidates(
    conn: sa.Connection, player_key: int, keys: np.ndarray, market: str | None, played_days: int | None
) -> np.ndarray:
    """Mask of ``keys`` that may be shown: the slot is active, offered in ``market`` (a slot with a
    market list needs a market it lists), and the player has not played it (ever, or within
    ``played_days`` days): an anti-join of the candidates with the player's ``play_sessions``.
    Shape (len(keys),), bool.
    """
    keys = np.asarray(keys, dtype=np.int64)
    if keys.size == 0:
        return np.zeros(0, dtype=bool)
    # The keys travel as one array literal and come back as one array: per-element adaptation in
    # the driver cost more than the query itself (measured with cProfile).
    params = {"keys": "{" + ",".join(map(str, keys.tolist())) + "}", "market": market, "player": player_key}
    if played_days is None:
        allowed = conn.execute(_VET, params).scalar_one()
    else:
        allowed = conn.execute(_VET_WINDOW, {**params, "days": played_days}).scalar_one()
    return np.isin(keys, np.asarray(allowed or [], dtype=np.int64))


_VET_SQL = """
    SELECT array_agg(s.id) FROM slots s
    WHERE s.id = ANY(CAST(:keys AS integer[])) AND s.active
      AND (s.markets IS NULL OR CAST(:market AS varchar) = ANY(s.markets))
      AND NOT EXISTS (
          SELECT 1 FROM play_sessions ps WHERE ps.player_key = :player AND ps.slot_key = s.id{window}
      )
"""
_VET = sa.text(_VET_SQL.format(window=""))
_VET_WINDOW = sa.text(_VET_SQL.format(window=" AND ps.started_at >= now() - make_interval(days => :days)"))


# --- logging what was served ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServedItem:
    slot_key: int
    score: float
    reason: str
    explored: bool


@dataclass(frozen=True)
class ServedList:
    """One served (or suppressed) list, as ``recommendations`` + ``recommendation_items`` store it."""

    id: uuid.UUID
    player_key: int
    version_id: int | None
    trigger: str
    context_slot_key: int | None
    market: str | None
    suppressed_reason: str | None
    filters: Mapping[str, Any]
    items: tuple[ServedItem, ...]
    session_key: int | None = None  # the play session whose long-session trigger produced it
    action: str | None = None  # e.g. ``reality_check``: what the frontend shows instead of games


# One statement, so one implicit transaction and one round trip. ``set_config(..., true)`` sets
# ``synchronous_commit`` for this transaction only; the first INSERT reads the CTE, which makes
# PostgreSQL evaluate it before anything is written.
_LOG = sa.text(
    """
    WITH commit_mode AS MATERIALIZED (SELECT set_config('synchronous_commit', :commit_mode, true) AS mode),
    served AS (
        INSERT INTO recommendations
            (id, player_key, version_id, trigger, context_slot_key, market, suppressed_reason, filters,
             session_key, action)
        SELECT :id, :player, :version, :trigger, :context, :market, :suppressed, CAST(:filters AS jsonb),
               :session, :action
        FROM commit_mode
        RETURNING id, created_at
    )
    INSERT INTO recommendation_items (recommendation_id, rank, slot_key, score, reason, explored, created_at)
    SELECT served.id, i.rank, i.slot_key, i.score, i.reason, i.explored, served.created_at
    FROM served, unnest(
        CAST(:ranks AS smallint[]), CAST(:keys AS integer[]), CAST(:scores AS float8[]),
        CAST(:reasons AS varchar[]), CAST(:explored AS boolean[])
    ) AS i(rank, slot_key, score, reason, explored)
    """
)


def log_recommendation(conn: sa.Connection, served: ServedList, *, synchronous_commit: bool = False) -> None:
    """Write the list and its items in one statement (one transaction): both or neither.

    ``conn`` is in autocommit (:func:`connection`), or in a transaction of the caller's (the session
    tracker logs a triggered list with the events that fired it): then the setting applies to that
    whole transaction, so such a caller passes ``synchronous_commit=True``. ``synchronous_commit=False`` commits
    without waiting for the WAL flush (``synchronous_commit = off`` for this transaction only):
    the write is atomic and survives a crash of the API, but a crash of PostgreSQL itself may lose
    the last ~0.6 s of lists (3 x ``wal_writer_delay``). Waiting for the flush costs an fsync per
    request, 4 ms at p50 on the benchmark machine's disk (bench/bench_api.py).
    """
    items = served.items
    conn.execute(
        _LOG,
        {
            "commit_mode": "on" if synchronous_commit else "off",
            "id": served.id,
            "player": served.player_key,
            "version": served.version_id,
            "trigger": served.trigger,
            "context": served.context_slot_key,
            "market": served.market,
            "suppressed": served.suppressed_reason,
            "filters": json.dumps(served.filters),
            "session": served.session_key,
            "action": served.action,
            "ranks": list(range(1, len(items) + 1)),
            "keys": [i.slot_key for i in items],
            "scores": [i.score for i in items],
            "reasons": [i.reason for i in items],
            "explored": [i.explored for i in items],
        },
    )
