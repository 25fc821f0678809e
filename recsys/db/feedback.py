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

from psycopg import AsyncConnection

from recsys.db.bulk import unquoted_literal
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


async def store_feedback(
    conn: AsyncConnection, items: list[Feedback], *, window_seconds: float, source: str = "feedback"
) -> FeedbackResult:
    """Validate and store a batch in ``conn``'s transaction (the caller's: ``conn.transaction()``);
    the first bad item rejects it whole. Then attribute the sessions that these recommendations'
    plays, clicks and impressions lead to."""
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
    recommendations = unquoted_literal(str(r) for r in sorted(set(rec_ids)))
    cursor = await conn.execute(_RECOMMENDED, {"ids": recommendations})
    known = {(rec, slot_id): slot_key for rec, slot_id, slot_key in await cursor.fetchall()}
    found = {rec for rec, _ in known}
    for index, (item, rec) in enumerate(zip(items, rec_ids, strict=True)):
        if (rec, item.slot_id) not in known:
            if rec not in found:
                raise InputError(source, f"unknown recommendation {rec}", index=index, field="recommendation_id")
            raise InputError(
                source, f"slot {item.slot_id!r} was not in recommendation {rec}", index=index, field="slot_id"
            )
    async with conn.pipeline():
        inserted = await conn.execute(_INSERT, {
            "recs": rec_ids,
            "slots": [known[(rec, item.slot_id)] for item, rec in zip(items, rec_ids, strict=True)],
            "actions": [item.action for item in items],
            "ts": [item.ts for item in items],
        })
        attributed = await conn.execute(_ATTRIBUTE_RECOMMENDED, {"ids": recommendations,
                                                                 "window": float(window_seconds)})
    accepted = inserted.rowcount
    return FeedbackResult(accepted, len(items) - accepted, attributed.rowcount)


_RECOMMENDED = """
SELECT r.id AS recommendation_id, s.slot_id, s.id AS slot_key
FROM recommendations r JOIN slots s ON s.id = ANY(r.slot_keys)
WHERE r.id = ANY(CAST(%(ids)s AS uuid[]))
"""

_INSERT = """
INSERT INTO feedback (recommendation_id, slot_key, action, ts)
SELECT r, s, a, coalesce(t, now())
FROM unnest(CAST(%(recs)s AS uuid[]), CAST(%(slots)s AS int[]), CAST(%(actions)s AS text[]),
            CAST(%(ts)s AS timestamptz[])) AS x(r, s, a, t)
ON CONFLICT (recommendation_id, slot_key, action) DO NOTHING
"""

# Attribution: each unattributed session in scope gets the recommendation whose play, click or
# impression on the session's slot came at most ``window`` seconds before the session started
# (play before click before impression, then the latest). Its scope: the sessions given by key
# (a batch of events) or those that the given recommendations may have led to (a batch of feedback).
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
ATTRIBUTE_SESSIONS = _ATTRIBUTE.format(scope="s.id = ANY(CAST(%(sessions)s AS bigint[]))")
"""Attribution of the sessions ``%(sessions)s`` (their keys), in a ``%(window)s``-second window."""
_ATTRIBUTE_RECOMMENDED = _ATTRIBUTE.format(scope="f.recommendation_id = ANY(CAST(%(ids)s AS uuid[]))")
