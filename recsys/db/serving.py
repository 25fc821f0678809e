"""Every SQL statement the serving API runs: players, catalogue, exclusions, logging, pgvector, LISTEN.

The API keeps the slow-changing state in memory (the catalogue, play and feedback counts, the
version's vectors) and asks the database per request only what must be exact at that moment:

- :func:`find_player`: the player's protection fields, vector, recent slots and precomputed top-N
  (one query);
- :func:`vet_candidates`: which candidates are still active, offered in the market, and not played
  by the player (ever, or within N days): an anti-join on ``play_sessions`` (one query);
- :func:`log_recommendation`: the served list and its items (one statement, one transaction).

Functions return plain dataclasses and numpy arrays, never rows.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector

from recsys.db.engine import DatabaseUnavailable
from recsys.db.imports import ImportResult, upsert_frame
from recsys.db.schema import CONTROL_CHARACTERS, ID_LENGTH, players, slots
from recsys.db.versions import CHANNEL as VERSIONS_CHANNEL
from recsys.errors import RecsysError
from recsys.importing import format_of, validate_records
from recsys.policy import Catalogue, Protection, SlotInfo, SlotStats

log = logging.getLogger(__name__)

CATALOGUE_CHANNEL = "recsys_catalogue"
"""Sent by a trigger on ``slots`` after every changing statement (migration 0002)."""
CHANNELS = (VERSIONS_CHANNEL, CATALOGUE_CHANNEL)
RECENT_SLOTS = 5
"""Latest distinct slots of a player whose mean vector seeds candidates when there is no context."""


class NotFound(RecsysError):
    """A player, slot or model version the caller named does not exist."""

    def __init__(self, entity: str, identifier: object, detail: str | None = None) -> None:
        self.entity = entity
        self.identifier = identifier
        super().__init__(detail or f"no {entity} {identifier!r}")


def connection(engine: sa.Engine):
    """One pooled connection for one request, in autocommit: each statement is its own transaction,
    so reads cost no BEGIN/ROLLBACK round trips (the request path makes three statements in all)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


# --- players -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Player:
    key: int
    player_id: str
    market: str | None
    protection: Protection
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


def find_player(conn: sa.Connection, player_id: str, version_id: int | None) -> Player:
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
    return Player(
        key=row.id,
        player_id=player_id,
        market=row.market,
        protection=Protection(row.self_excluded_until, row.cooling_off_until, row.marketing_consent, row.risk_flag),
        towers=towers,
        recent_keys=np.asarray(row.recent or [], dtype=np.int64),
        top_n_keys=np.asarray(row.top_n or [], dtype=np.int64),
    )


# --- the catalogue and its statistics ------------------------------------------------------------


def load_catalogue(engine: sa.Engine) -> Catalogue:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, slot_id, provider, theme, volatility, active, markets FROM slots")
        ).all()
    return Catalogue.from_slots(
        [SlotInfo(r.id, r.slot_id, r.provider, r.theme, r.volatility, r.active, _tuple(r.markets)) for r in rows]
    )


def _tuple(markets: list[str] | None) -> tuple[str, ...] | None:
    return None if markets is None else tuple(markets)


def load_stats(engine: sa.Engine, popularity_days: int) -> SlotStats:
    """Distinct players per slot over the last ``popularity_days`` days; impressions and successes
    (distinct recommendations clicked or played) per slot over all feedback."""
    with engine.connect() as conn:
        played = conn.execute(
            sa.text(
                "SELECT slot_key, count(DISTINCT player_key) FROM play_sessions "
                "WHERE started_at >= now() - make_interval(days => :days) GROUP BY slot_key"
            ),
            {"days": popularity_days},
        ).all()
        feedback = conn.execute(
            sa.text(
                "SELECT slot_key, count(*) FILTER (WHERE action = 'impression'), "
                "count(DISTINCT recommendation_id) FILTER (WHERE action IN ('click', 'play')) "
                "FROM feedback GROUP BY slot_key"
            )
        ).all()
    return SlotStats(
        players=SlotStats.by_key({r[0]: r[1] for r in played}),
        impressions=SlotStats.by_key({r[0]: r[1] for r in feedback}),
        successes=SlotStats.by_key({r[0]: r[2] for r in feedback}),
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


# --- pgvector: the fallback search ------------------------------------------------------------------


def similar_by_pgvector(
    engine: sa.Engine, version_id: int, slot_key: int, k: int, market: str | None, *, every_market: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``k`` slots of a version closest to ``slot_key`` by cosine (``<=>``), the slot itself,
    disabled slots and slots outside ``market`` left out (``every_market``: no market filter).

    Returns ``(keys (m,) int64, cosines (m,) float32)``, best first, or None when the slot has no
    vector in the version.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                """
                WITH q AS (SELECT similarity FROM slot_embeddings WHERE version_id = :v AND slot_key = :key)
                SELECT e.slot_key, 1 - (e.similarity <=> q.similarity) AS cosine
                FROM q, slot_embeddings e JOIN slots s ON s.id = e.slot_key
                WHERE e.version_id = :v AND e.slot_key <> :key AND s.active
                  AND (:every OR s.markets IS NULL OR CAST(:market AS varchar) = ANY(s.markets))
                ORDER BY e.similarity <=> q.similarity, e.slot_key
                LIMIT :k
                """
            ),
            {"v": version_id, "key": slot_key, "k": k, "market": market, "every": every_market},
        ).all()
        if not rows and not conn.execute(
            sa.text("SELECT EXISTS (SELECT 1 FROM slot_embeddings WHERE version_id = :v AND slot_key = :key)"),
            {"v": version_id, "key": slot_key},
        ).scalar_one():
            return None
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float32)


def ping(engine: sa.Engine) -> bool:
    """Whether the database answers."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (sa.exc.DBAPIError, DatabaseUnavailable):
        return False
    return True


# --- PUT: partial records through the import's validation and upsert ----------------------------------

_TABLES = {"players": players, "slots": slots}
_CONTROL = re.compile(CONTROL_CHARACTERS)
# What a new row gets for a field the request leaves out (the schema's defaults).
_NEW_ROW_DEFAULTS = {"marketing_consent": False, "risk_flag": False, "active": True}


def put_records(engine: sa.Engine, kind: str, records: list[dict[str, Any]], source: str) -> ImportResult:
    """Create or update players or slots from records that may carry only the fields they change.

    A field that a record leaves out keeps its stored value (a new row takes the schema default;
    a new slot must give every required field). The merged records go through the import's own
    validation (``recsys.importing.validate_records``) and upsert (``recsys.db.imports``) in one
    transaction, with the stored rows locked, so a bad record writes nothing.
    """
    fmt = format_of(kind)
    if kind not in _TABLES:
        raise ValueError(f"put_records handles players and slots, not {kind!r}")
    given = {name for record in records for name in record}
    required = {c.name for c in fmt.columns if c.required}
    fields = [name for name in fmt.names if name in given | required] + sorted(given - set(fmt.names))
    table = _TABLES[kind]
    ids = [record.get(fmt.key) for record in records]
    with engine.begin() as conn:
        stored_columns = [name for name in fields if name in table.c]
        stored = {
            row[0]: dict(zip(stored_columns, row, strict=True))
            for row in conn.execute(
                sa.text(
                    f"SELECT {', '.join(stored_columns)} FROM {table.name} "
                    f"WHERE {fmt.key} = ANY(:ids) ORDER BY id FOR UPDATE"
                ),
                # Ids the validation below refuses are not looked up (PostgreSQL refuses NUL in text).
                {"ids": [i for i in ids if isinstance(i, str) and 0 < len(i) <= ID_LENGTH and not _CONTROL.search(i)]},
            )
        }
        merged = [_merge(record, stored.get(record.get(fmt.key)), fields) for record in records]
        frame = validate_records(merged, kind, source)
        return upsert_frame(conn, kind, frame, source=source)


def _merge(record: dict[str, Any], stored: dict[str, Any] | None, fields: list[str]) -> dict[str, Any]:
    out = {}
    for name in fields:
        if name in record:
            out[name] = record[name]
        elif stored is not None and name in stored:
            value = stored[name]
            out[name] = float(value) if isinstance(value, Decimal) else value
        else:
            out[name] = _NEW_ROW_DEFAULTS.get(name)
    return out


# --- LISTEN ---------------------------------------------------------------------------------------------


def listen(
    url: str,
    *,
    on_connect: Callable[[], None],
    on_notify: Callable[[set[str]], None],
    on_idle: Callable[[], None],
    stop: threading.Event,
    idle_seconds: float,
    channels: Iterable[str] = CHANNELS,
) -> None:
    """LISTEN on ``channels`` until ``stop`` is set, reconnecting after a lost connection.

    ``on_connect`` runs after every (re)connection (notifications may have been missed meanwhile),
    ``on_notify`` with the set of channels heard in a burst (notifications arriving within 50 ms are
    handled together), ``on_idle`` every ``idle_seconds``. Meant for a thread of its own.
    """
    delay = 0.5
    while not stop.is_set():
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                for channel in channels:
                    conn.execute(f"LISTEN {channel}")
                delay = 0.5
                _supervised(on_connect)
                idle_at = time.monotonic() + idle_seconds
                while not stop.is_set():
                    heard = {n.channel for n in conn.notifies(timeout=0.25, stop_after=1)}
                    if heard:
                        heard |= {n.channel for n in conn.notifies(timeout=0.05)}
                        _supervised(lambda heard=heard: on_notify(heard))
                    if time.monotonic() >= idle_at:
                        _supervised(on_idle)
                        idle_at = time.monotonic() + idle_seconds
        except Exception as exc:  # any error: a listener that dies leaves the replica stale for good
            log.warning("LISTEN connection lost (%s); reconnecting in %.1f s", exc, delay,
                        exc_info=not isinstance(exc, psycopg.OperationalError))
            stop.wait(delay)
            delay = min(delay * 2, 10.0)


def _supervised(callback: Callable[[], None]) -> None:
    # The listener outlives any one reload: a failed reload is logged with its traceback and the
    # old state keeps serving; the next notification or idle tick tries again.
    try:
        callback()
    except Exception:
        log.exception("reload after a notification failed; serving the previous state")

