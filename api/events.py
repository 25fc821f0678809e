"""``POST /v1/events``: play events in; the long-session triggers they fire, logged and pushed, out.

The handler runs the session tracker (``recsys.tracker.track``), which makes a triggered list
with the function ``GET .../recommendations`` uses (``recsys.serving.lists.make_list``), on its
own connection, inside the transaction that stores the events: the list, the claim of the trigger
and the push notification commit together.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import post
from litestar.datastructures import State
from litestar.params import RawBody

from api.auth import INGEST
from api.bodies import decode, documented
from recsys.errors import InputError
from recsys.events import PlayEvent
from recsys.serving.lists import TriggeredList
from recsys.serving.state import ServingState
from recsys.tracker import track

MAX_EVENTS = 1_000
"""Events per request: a batch is one transaction, and its sessions stay locked until it commits."""
SOURCE = "POST /v1/events"


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """One play event (docs/api.md): ``ts`` is RFC 3339 event time with a zone."""

    event_id: str
    type: str  # start, heartbeat, spin, end
    session_id: str
    player_id: str
    slot_id: str
    ts: datetime
    bet: float | None = None
    win: float | None = None
    bonus: bool | None = None


class EventBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[EventIn]


class EventsResult(msgspec.Struct):
    accepted: int
    duplicates: int
    recommendations: list[TriggeredList]


@post("/v1/events", guards=[INGEST], sync_to_thread=True, status_code=200, tags=["events"])
def post_events(state: State, body: RawBody) -> EventsResult:
    """Store a batch of play events (idempotent by ``event_id``); answer after the commit with the
    lists that sessions crossing the long-session threshold produced."""
    return ingest_events(state.serving, body)


documented("post_events", "A batch of play events (at most 1,000).", EventBatch)


def ingest_events(serving: ServingState, body: bytes) -> EventsResult:
    batch = decode(body, EventBatch, SOURCE, key="events")
    if len(batch.events) > MAX_EVENTS:
        raise InputError(SOURCE, f"{len(batch.events):,} events; at most {MAX_EVENTS:,} per request")
    events = [
        PlayEvent(e.event_id, e.type, e.session_id, e.player_id, e.slot_id, e.ts, e.bet, e.win, e.bonus)
        for e in batch.events
    ]
    tracked = track(serving, events, serving.settings.realtime, source=SOURCE)
    return EventsResult(tracked.accepted, tracked.duplicates, tracked.recommendations)


ROUTES = [post_events]
