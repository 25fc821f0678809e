"""``POST /v1/events``: play events in; the long-session triggers they fire, logged and pushed, out.

The handler runs the session tracker (``recsys.tracker.track``) with :func:`respond`, which builds
a triggered list the way ``GET .../recommendations`` builds one (gate, candidates around the slot
being played, SQL exclusions, ranking) but on the tracker's connection, inside the transaction that
stores the events: the list, the claim of the trigger and the push notification commit together.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import partial

import msgspec
from litestar import post
from litestar.datastructures import State
from litestar.params import RawBody

from api.auth import INGEST
from api.bodies import decode, documented
from api.errors import NotReady
from api.recommendations import RecommendedItem, Suppression, active_version_id, list_filters, ranked_items
from api.state import ServingState
from recsys.db import serving as db
from recsys.db.events import TriggeredSession
from recsys.errors import InputError
from recsys.events import PlayEvent
from recsys.policy import protection_gate
from recsys.tracker import Answer, Decision, track

MAX_EVENTS = 1_000
"""Events per request: a batch is one transaction, and its sessions stay locked until it commits."""
TRIGGERED_K = 10
"""Slots in a triggered list (the frontend's overlay shows a handful)."""
TRIGGER = "session_threshold"
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


class TriggeredList(msgspec.Struct):
    """A list the long-session trigger produced: in the events answer and on the player's stream."""

    recommendation_id: uuid.UUID
    player_id: str
    session_id: str | None
    context_slot: str | None  # the slot being played
    model_version: int | None
    trigger: str
    action: str | None  # reality_check: show that instead of games
    items: list[RecommendedItem]
    suppressed: Suppression | None  # why no games: a gate reason, session_limit or night_hours


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
    tracked = track(serving.engine, events, serving.settings.realtime, partial(respond, serving),
                    source=SOURCE)
    return EventsResult(tracked.accepted, tracked.duplicates, tracked.recommendations)


def respond(serving: ServingState, conn, session: TriggeredSession, decision: Decision) -> Answer:
    """Gate, build and log the list of one claimed trigger on the tracker's ``conn``.

    The gate comes first and fails closed (a stopped player gets nothing, and nothing is pushed);
    then the late-session decision (no games: a reality check, pushed, or silence); else a list
    around the slot being played, the played slots excluded by SQL (this session's too).
    """
    snap = serving.snapshot
    if not snap.catalogue_loaded:
        raise NotReady("the slot catalogue is not loaded yet")
    model = snap.model
    version_id = model.version_id if model is not None else active_version_id(serving)
    player = db.find_player(conn, session.player_id, version_id)
    market = player.market
    gate = protection_gate(player.protection, datetime.now(UTC))
    items, action = [], None
    if gate is not None:
        suppressed = gate
        filters = list_filters(serving.settings, TRIGGERED_K, market, gate=gate)
    elif decision.late_reason is not None:
        suppressed, action = decision.late_reason, decision.action
        filters = list_filters(serving.settings, TRIGGERED_K, market, gate="allowed")
    else:
        suppressed = None
        # A slot added a moment ago may not be in this process's catalogue yet: then the player's
        # recent slots seed the list instead.
        context_key = session.slot_key if session.slot_key in snap.catalogue.slots else None
        items, filters = ranked_items(serving, snap, conn, player, version_id, context_key, market, TRIGGERED_K)
    filters["continuous_seconds"] = session.continuous_seconds
    recommendation_id = uuid.uuid4()
    served = db.ServedList(
        recommendation_id, player.key, version_id, TRIGGER, session.slot_key, market, suppressed, filters,
        tuple(db.ServedItem(i.slot_key, i.score, i.reason, i.explored) for i in items),
        session_key=session.session_key, action=action,
    )
    # In the events' transaction: waiting for the WAL flush keeps the events' own durability.
    db.log_recommendation(conn, served, synchronous_commit=True)
    if suppressed is not None:
        serving.metrics.suppressed(suppressed)
    else:
        serving.metrics.served(filters["candidate_source"])
    slots = snap.catalogue.slots
    body = TriggeredList(
        recommendation_id,
        session.player_id,
        session.session_id,
        session.slot_id,
        version_id,
        TRIGGER,
        action,
        [RecommendedItem(slots[i.slot_key].slot_id, round(i.score, 6), i.reason) for i in items],
        None if suppressed is None else Suppression(suppressed),
    )
    pushed = gate is None and (suppressed is None or action is not None)
    return Answer(recommendation_id, session.player_id, pushed, body)


ROUTES = [post_events]
