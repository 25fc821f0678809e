"""``POST /v1/feedback``: impressions, clicks, plays and dismissals of recommended slots.

Stored by ``recsys.db.feedback.store_feedback`` in one transaction (idempotent by recommendation,
slot and action), which also attributes play sessions that started on a recommended slot within
``RECSYS_ATTRIBUTION_WINDOW_SECONDS`` after its play, click or impression.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
from litestar import post
from litestar.datastructures import State
from litestar.params import RawBody

from api.auth import INGEST
from api.bodies import Id, Timestamp, Uuid, decode, documented, one_of, validation_error
from recsys.constants import FEEDBACK_ACTIONS
from recsys.db.feedback import Feedback, store_feedback
from recsys.db.pool import OnlinePool
from recsys.errors import InputError
from recsys.events import TimeBounds, time_problem
from recsys.serving.state import ServingState

MAX_FEEDBACK = 1_000
SOURCE = "POST /v1/feedback"


class FeedbackIn(msgspec.Struct, forbid_unknown_fields=True):
    recommendation_id: Uuid
    slot_id: Id
    action: Annotated[str, one_of(*FEEDBACK_ACTIONS)]
    ts: Timestamp | None = None  # RFC 3339 with a zone; default: when it is received


class FeedbackBatch(msgspec.Struct, forbid_unknown_fields=True):
    feedback: Annotated[list[FeedbackIn], msgspec.Meta(extra_json_schema={"minItems": 1, "maxItems": MAX_FEEDBACK})]


class FeedbackResult(msgspec.Struct):
    accepted: int
    duplicates: int
    attributed_sessions: int


@post("/v1/feedback", guards=[INGEST], status_code=200, tags=["events"])
async def post_feedback(state: State, body: RawBody) -> FeedbackResult:
    """Store feedback on served lists: ``{"feedback": [...]}`` or one object; all or nothing."""
    return await record_feedback(state.serving, state.pool, body)


documented("post_feedback", "A batch of feedback, or one item (at most 1,000).", FeedbackBatch, FeedbackIn)


async def record_feedback(serving: ServingState, pool: OnlinePool, body: bytes) -> FeedbackResult:
    items = [Feedback(f.recommendation_id, f.slot_id, f.action, f.ts) for f in _decode(body).feedback]
    if len(items) > MAX_FEEDBACK:
        raise InputError(SOURCE, f"{len(items):,} items; at most {MAX_FEEDBACK:,} per request")
    config = serving.settings.realtime
    _check_times(items, TimeBounds(timedelta(seconds=config.event_max_future_seconds),
                                   timedelta(seconds=config.event_max_age_seconds)))
    async with pool.connection() as conn, conn.transaction():
        result = await store_feedback(conn, items, window_seconds=config.attribution_window_seconds, source=SOURCE)
    return FeedbackResult(result.accepted, result.duplicates, result.attributed_sessions)


def _check_times(items: list[Feedback], bounds: TimeBounds) -> None:
    """A ``ts`` is an event time like a play event's, with the same window (docs/api.md; issue 22:
    years 0001 and 9999 were stored, and an offset past 15:59 was a 500)."""
    window = bounds.window(datetime.now(UTC))
    for index, item in enumerate(items):
        problem = None if item.ts is None else time_problem(item.ts, window, "feedback times")
        if problem is not None:
            raise InputError(SOURCE, problem, index=index, field="ts")


def _decode(body: bytes) -> FeedbackBatch:
    """A batch, or one object read as a batch of one (its errors name row 0)."""
    raw = decode(body, object, SOURCE)
    if isinstance(raw, dict) and "feedback" not in raw:
        raw = {"feedback": [raw]}
    try:
        return msgspec.convert(raw, FeedbackBatch, strict=True)
    except msgspec.ValidationError as exc:
        raise validation_error(exc, "feedback", SOURCE) from exc


ROUTES = [post_feedback]
