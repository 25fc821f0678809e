"""``POST /v1/events``: play events in; the long-session triggers they fire, logged and pushed, out.

The handler runs the session tracker on the event loop (``recsys.tracker.track``), which makes a
triggered list with the code ``GET .../recommendations`` uses (``recsys.serving.lists``) inside the
transaction that stores the events: the list, the claim of the trigger and the push notification
commit together.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import post
from litestar.datastructures import State
from litestar.params import RawBody

from api.auth import INGEST
from api.bodies import Amount, Id, Timestamp, decode, documented, one_of
from recsys.constants import EVENT_TYPES
from recsys.errors import InputError
from recsys.events import PlayEvent
from recsys.serving.lists import TriggeredList, triggered
from recsys.serving.state import ServingState
from recsys.tracker import track

MAX_EVENTS = 1_000
"""Events per request: a batch is one transaction, and its sessions stay locked until it commits."""
SOURCE = "POST /v1/events"


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """One play event (docs/api.md): ``ts`` is RFC 3339 event time with a zone."""

    event_id: Id
    type: Annotated[str, one_of(*EVENT_TYPES)]
    session_id: Id
    player_id: Id
    slot_id: Id
    ts: Timestamp
    bet: Amount | None = None
    win: Amount | None = None
    bonus: bool | None = None


class EventBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[EventIn], msgspec.Meta(extra_json_schema={"minItems": 1, "maxItems": MAX_EVENTS})]


class EventsResult(msgspec.Struct):
    accepted: int
    duplicates: int
    recommendations: list[TriggeredList]


@post("/v1/events", guards=[INGEST], status_code=200, tags=["events"])
async def post_events(state: State, body: RawBody) -> EventsResult:
    """Store a batch of play events (idempotent by ``event_id``); answer after the commit with the
    lists that sessions crossing the long-session threshold produced."""
    serving: ServingState = state.serving
    events, config = play_events(body), serving.settings.realtime
    tracked = await track(serving, state.pool, events, config, source=SOURCE)
    return EventsResult(tracked.accepted, tracked.duplicates, [triggered(served) for served in tracked.lists])


documented("post_events", "A batch of play events (at most 1,000).", EventBatch)


def play_events(body: bytes) -> list[PlayEvent]:
    """The request's events; raises ``InputError`` for a body that is not a batch of at most
    :data:`MAX_EVENTS` well-formed events."""
    batch = decode(body, EventBatch, SOURCE, key="events")
    if len(batch.events) > MAX_EVENTS:
        raise InputError(SOURCE, f"{len(batch.events):,} events; at most {MAX_EVENTS:,} per request")
    return [
        PlayEvent(e.event_id, e.type, e.session_id, e.player_id, e.slot_id, e.ts, e.bet, e.win, e.bonus)
        for e in batch.events
    ]


ROUTES = [post_events]
