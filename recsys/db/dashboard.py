"""What the operator dashboard reads and its sign-in sessions (api/dashboard.py draws it).

A session is a random token in an ``HttpOnly`` cookie; only its SHA-256 is stored, next to the API
key it signed in with and a CSRF token. Every request re-reads the key, so a revoked key ends its
sessions at once, on every replica.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from recsys.db.apikeys import ApiKey


@dataclass(frozen=True)
class DashboardSession:
    key: ApiKey
    csrf_token: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(engine: sa.Engine, key: ApiKey, lifetime: timedelta, *,
                   max_sessions: int | None = None) -> tuple[str, DashboardSession]:
    """A new session for ``key``: ``(cookie token, session)``. Expired sessions are purged on the way,
    and past ``max_sessions`` of ``key`` its oldest are ended (the new one counted)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM dashboard_sessions WHERE expires_at < now()"))
        # One sign-in of a key at a time, so two at once cannot both keep max_sessions others.
        conn.execute(sa.text("SELECT 1 FROM api_keys WHERE id = :k FOR UPDATE"), {"k": key.id})
        expires_at = conn.execute(
            sa.text("INSERT INTO dashboard_sessions (token_hash, api_key_id, csrf_token, expires_at) "
                    "VALUES (:h, :k, :c, now() + :life) RETURNING expires_at"),
            {"h": _digest(token), "k": key.id, "c": csrf, "life": lifetime},
        ).scalar_one()
        if max_sessions is not None:
            conn.execute(_END_OLDEST, {"k": key.id, "h": _digest(token), "keep": max_sessions - 1})
    return token, DashboardSession(key, csrf, expires_at)


# The key's sessions but the new one (``h``), newest first; those after the first ``keep`` end.
_END_OLDEST = sa.text("""
    DELETE FROM dashboard_sessions WHERE token_hash IN (
        SELECT token_hash FROM dashboard_sessions
        WHERE api_key_id = :k AND token_hash <> :h
        ORDER BY created_at DESC, expires_at DESC, token_hash
        OFFSET :keep)
""")


def find_session(engine: sa.Engine, token: str) -> DashboardSession | None:
    """The live session of a cookie token: not expired, its key not revoked; else None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT k.id, k.prefix, k.scopes, k.name, k.created_at, k.revoked_at, s.csrf_token, s.expires_at "
                    "FROM dashboard_sessions s JOIN api_keys k ON k.id = s.api_key_id "
                    "WHERE s.token_hash = :h AND s.expires_at > now() AND k.revoked_at IS NULL"),
            {"h": _digest(token)},
        ).first()
    if row is None:
        return None
    key = ApiKey(row.id, row.prefix, tuple(row.scopes), row.name, row.created_at, row.revoked_at)
    return DashboardSession(key, row.csrf_token, row.expires_at)


def end_session(engine: sa.Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM dashboard_sessions WHERE token_hash = :h"), {"h": _digest(token)})


@dataclass(frozen=True)
class HourlyLists:
    hour: datetime  # start of the UTC hour
    served: int  # lists the gate allowed, API and trigger
    triggered: int  # of those, made by the long-session trigger
    suppressed: dict[str, int]  # reason -> lists withheld


HOURLY_LISTS = """
SELECT date_trunc('hour', created_at) AS hour, suppressed_reason, trigger, count(*) AS n
FROM recommendations
WHERE created_at >= date_trunc('hour', now()) - make_interval(hours => :h - 1)
GROUP BY 1, 2, 3
"""


def hourly_lists(conn: sa.Connection, hours: int = 24) -> list[HourlyLists]:
    """Lists per UTC hour over the last ``hours`` (every hour present, empty ones as zeros), oldest first."""
    first = conn.execute(sa.text("SELECT date_trunc('hour', now()) - make_interval(hours => :h - 1)"),
                         {"h": hours}).scalar_one()
    out = {first + timedelta(hours=n): HourlyLists(first + timedelta(hours=n), 0, 0, {}) for n in range(hours)}
    for hour, reason, trigger, n in conn.execute(sa.text(HOURLY_LISTS), {"h": hours}):
        entry = out.get(hour)
        if entry is None:  # a list stamped in the future (a clock ahead): not in the chart's hours
            continue
        if reason is not None:
            entry.suppressed[reason] = entry.suppressed.get(reason, 0) + n
        else:
            out[hour] = HourlyLists(hour, entry.served + n, entry.triggered + (n if trigger != "api" else 0),
                                    entry.suppressed)
    return list(out.values())


FUNNEL = """
WITH answered AS (
    -- Feedback on a list arrives after the list (its id is known only once the list is logged), so
    -- the feedback received since the window opened holds all the feedback on the window's items:
    -- a tenth of them, read through ix_feedback_received_at instead of probing every item.
    SELECT f.recommendation_id, f.slot_key, bool_or(f.action = 'impression') AS impressed,
           bool_or(f.action = 'click') AS clicked, bool_or(f.action = 'dismiss') AS dismissed
    FROM feedback f
    WHERE f.received_at >= now() - make_interval(hours => :h)
    GROUP BY f.recommendation_id, f.slot_key
), window_items AS (
    -- Late feedback on an older list is left out: each answered item's list is probed by its key,
    -- and the item must be in its slots. OFFSET 0 keeps the EXISTS a probe per answered item: as a
    -- semi join the planner hashed every item of the window (610 of the 1,220 ms at 330k items).
    SELECT a.*
    FROM answered a
    WHERE EXISTS (SELECT 1 FROM recommendations r
                  WHERE r.id = a.recommendation_id AND a.slot_key = ANY(r.slot_keys)
                    AND r.created_at >= now() - make_interval(hours => :h)
                  OFFSET 0)
)
SELECT (SELECT coalesce(sum(cardinality(slot_keys)), 0) FROM recommendations
        WHERE created_at >= now() - make_interval(hours => :h)) AS served,
       count(*) FILTER (WHERE impressed) AS impressions,
       count(*) FILTER (WHERE clicked) AS clicks,
       -- A session is attributed to a list only through feedback on that slot, so played items
       -- are answered ones (recsys.db.feedback.attribution).
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM play_sessions s WHERE s.recommendation_id = w.recommendation_id
                                                                       AND s.slot_key = w.slot_key)) AS plays,
       count(*) FILTER (WHERE dismissed) AS dismissals
FROM window_items w
"""


def funnel(conn: sa.Connection, hours: int = 24) -> dict[str, int]:
    """Items of the lists served in the last ``hours``: served, impressed, clicked, played, dismissed.

    Each item counts once per stage however many feedback rows or sessions it has. The cost grows with
    the window's feedback and an index-only count of its items (docs/benchmarks.md, "Operator views").
    """
    return dict(conn.execute(sa.text(FUNNEL), {"h": hours}).one()._mapping)


def overview_counts(engine: sa.Engine, hours: int = 24) -> tuple[list[HourlyLists], dict[str, int]]:
    """:func:`hourly_lists` and :func:`funnel` of the last ``hours``, read in one snapshot on one core.

    Parallel workers are turned off for these reads: on a small machine a parallel scan takes every
    core from the requests serving lists, and the dashboard can wait where a player cannot.
    """
    with (engine.connect().execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True) as conn,
          conn.begin()):
        conn.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
        return hourly_lists(conn, hours), funnel(conn, hours)


@dataclass(frozen=True)
class LoggedItem:
    rank: int
    slot_id: str
    name: str
    provider: str
    score: float
    reason: str
    explored: bool


@dataclass(frozen=True)
class LoggedList:
    recommendation_id: str
    created_at: datetime
    trigger: str
    version_id: int | None
    experiment: str | None
    arm: str | None
    market: str | None
    suppressed_reason: str | None
    action: str | None
    context_slot_id: str | None
    filters: dict[str, Any]
    items: tuple[LoggedItem, ...]


def player_lists(engine: sa.Engine, player_id: str, limit: int = 10) -> list[LoggedList] | None:
    """The player's last ``limit`` lists from the audit log, newest first; None for an unknown player."""
    with engine.connect() as conn:
        player = conn.execute(sa.text("SELECT id FROM players WHERE player_id = :p"), {"p": player_id}).scalar()
        if player is None:
            return None
        lists = conn.execute(
            sa.text("SELECT r.id, r.created_at, r.trigger, r.version_id, e.name AS experiment, r.arm, r.market, "
                    "r.suppressed_reason, r.action, c.slot_id AS context, r.filters "
                    "FROM recommendations r LEFT JOIN experiments e ON e.id = r.experiment_id "
                    "LEFT JOIN slots c ON c.id = r.context_slot_key "
                    "WHERE r.player_key = :p ORDER BY r.created_at DESC LIMIT :limit"),
            {"p": player, "limit": limit},
        ).all()
        items = conn.execute(
            sa.text("SELECT i.recommendation_id, i.rank, s.slot_id, s.name, s.provider, i.score, i.reason, i.explored "
                    "FROM recommendation_items i JOIN slots s ON s.id = i.slot_key "
                    "WHERE i.recommendation_id = ANY(:ids) ORDER BY i.recommendation_id, i.rank"),
            {"ids": [r.id for r in lists]},
        ).all()
    by_list: dict[Any, list[LoggedItem]] = {}
    for i in items:
        by_list.setdefault(i.recommendation_id, []).append(
            LoggedItem(i.rank, i.slot_id, i.name, i.provider, i.score, i.reason, i.explored))
    return [LoggedList(str(r.id), r.created_at, r.trigger, r.version_id, r.experiment, r.arm, r.market,
                       r.suppressed_reason, r.action, r.context, r.filters, tuple(by_list.get(r.id, ())))
            for r in lists]
