"""Feedback on served recommendations, and attribution of play sessions to recommendations.

Feedback is idempotent by ``(recommendation_id, slot, action)``: the first report of an action
counts and repeats change nothing. A play session is **attributed** to a recommendation when it
starts on one of the recommended slots within ``window_seconds`` after a ``play``, ``click`` or
``impression`` on it (preferring play over click over impression, then the latest). Attribution
runs from both sides: when a session is created and when feedback arrives, so the order in which
the two streams reach the service does not matter.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from recsys.db.bulk import array_literal, unquoted_literal
from recsys.db.engine import Statement, driver
from recsys.db.schema import FEEDBACK_ACTIONS
from recsys.errors import InputError


@dataclass(frozen=True)
class Feedback:
    recommendation_id: str
    slot_id: str
    action: str
    ts: datetime | None = None


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    duplicates: int
    attributed_sessions: int


def store_feedback(
    conn: sa.Connection, items: list[Feedback], *, window_seconds: float, source: str = "feedback"
) -> FeedbackResult:
    """Validate and store a batch in ``conn``'s transaction; the first bad item rejects it whole."""
    if not items:
        raise InputError(source, "the batch holds no feedback")
    rec_ids = []
    for index, item in enumerate(items):
        try:
            rec_ids.append(uuid.UUID(item.recommendation_id))
        except (ValueError, AttributeError, TypeError):
            raise InputError(source, "is not a UUID", index=index, field="recommendation_id") from None
        if item.action not in FEEDBACK_ACTIONS:
            raise InputError(source, f"must be one of {', '.join(FEEDBACK_ACTIONS)}", index=index, field="action")
        if item.ts is not None and item.ts.tzinfo is None:
            raise InputError(source, "needs a time zone (RFC 3339)", index=index, field="ts")
    known = {
        (row.recommendation_id, row.slot_id): row.slot_key
        for row in conn.execute(
            sa.text(
                "SELECT i.recommendation_id, s.slot_id, i.slot_key FROM recommendation_items i "
                "JOIN slots s ON s.id = i.slot_key WHERE i.recommendation_id = ANY(:ids)"
            ),
            {"ids": rec_ids},
        )
    }
    recommendations = {rec for rec, _ in known}
    for index, (item, rec) in enumerate(zip(items, rec_ids, strict=True)):
        if (rec, item.slot_id) not in known:
            if rec not in recommendations:
                raise InputError(source, f"unknown recommendation {rec}", index=index, field="recommendation_id")
            raise InputError(
                source, f"slot {item.slot_id!r} was not in recommendation {rec}", index=index, field="slot_id"
            )
    inserted = (
        conn.execute(
            sa.text(
                "INSERT INTO feedback (recommendation_id, slot_key, action, ts) "
                "SELECT r, s, a, coalesce(t, now()) FROM unnest(CAST(:recs AS uuid[]), CAST(:slots AS int[]), "
                "CAST(:actions AS text[]), CAST(:ts AS timestamptz[])) AS x(r, s, a, t) "
                "ON CONFLICT (recommendation_id, slot_key, action) DO NOTHING RETURNING recommendation_id"
            ),
            {
                "recs": rec_ids,
                "slots": [known[(rec, item.slot_id)] for item, rec in zip(items, rec_ids, strict=True)],
                "actions": [item.action for item in items],
                "ts": [item.ts for item in items],
            },
        )
        .scalars()
        .all()
    )
    attributed = attribute_sessions(conn, window_seconds=window_seconds, recommendation_ids=sorted(set(rec_ids)))
    return FeedbackResult(accepted=len(inserted), duplicates=len(items) - len(inserted), attributed_sessions=attributed)


def attribute_sessions(
    conn: sa.Connection,
    *,
    window_seconds: float,
    session_keys: list[int] | None = None,
    session_ids: list[str] | None = None,
    recommendation_ids: list[uuid.UUID] | None = None,
) -> int:
    """Attribute unattributed sessions (those given by key or by ``session_id``, or those matching
    the given recommendations); returns how many were attributed."""
    statement = attribution(window_seconds=window_seconds, session_keys=session_keys, session_ids=session_ids,
                            recommendation_ids=recommendation_ids)
    with driver(conn) as raw:
        return raw.execute(statement.sql, statement.params, prepare=True).rowcount


def attribution(
    *,
    window_seconds: float,
    session_keys: list[int] | None = None,
    session_ids: list[str] | None = None,
    recommendation_ids: list[uuid.UUID] | None = None,
    guard: str | None = None,
) -> Statement:
    """The prepared statement of :func:`attribute_sessions` (its row count: the sessions attributed),
    for a caller that runs it in a pipeline; ``guard``: an SQL condition that must also hold (the
    session tracker's: the batch stored an event)."""
    if session_keys is not None:
        scope, keys = "s.id = ANY(CAST(%(keys)s AS bigint[]))", unquoted_literal(str(int(k)) for k in session_keys)
    elif session_ids is not None:
        scope, keys = "s.session_id = ANY(CAST(%(keys)s AS text[]))", array_literal(session_ids)
    elif recommendation_ids is not None:
        scope = "f.recommendation_id = ANY(CAST(%(keys)s AS uuid[]))"
        keys = unquoted_literal(map(str, recommendation_ids))
    else:
        raise ValueError("name the sessions or the recommendations to attribute")
    if guard is not None:
        scope = f"{scope} AND {guard}"
    return Statement(_ATTRIBUTE.format(scope=scope), {"keys": keys, "window": float(window_seconds)}, fetch=False)


_ATTRIBUTE = """
UPDATE play_sessions AS target SET recommendation_id = pick.recommendation_id, updated_at = now()
FROM (
    SELECT DISTINCT ON (s.id) s.id, f.recommendation_id
    FROM play_sessions s
    JOIN recommendations r ON r.player_key = s.player_key
    JOIN feedback f ON f.recommendation_id = r.id AND f.slot_key = s.slot_key
    WHERE {scope} AND s.recommendation_id IS NULL
      AND f.action IN ('play', 'click', 'impression')
      AND s.started_at >= f.ts AND s.started_at <= f.ts + make_interval(secs => %(window)s)
    ORDER BY s.id, array_position(ARRAY['play', 'click', 'impression'], f.action::text), f.ts DESC
) pick
WHERE target.id = pick.id
"""
