"""The session tracker: a batch of play events in, the long-session triggers it fires out.

One batch, one transaction (:func:`track` on a blocking connection, :func:`track_async` on the
event loop: the same flow of statements, ``recsys.db.engine.Statement``):

1. validate the whole batch: one bad event rejects it, and nothing is written;
2. store the events (``recsys.db.events.store_flow``: idempotent by ``event_id``, tolerant of
   order, sessions recomputed in event time), which claims the trigger of every session whose
   continuous play reached the threshold, exactly once, under the session's row lock;
3. attribute the batch's sessions to the recommendations they followed (``recsys.db.feedback``;
   ``store_flow`` runs it in the round trip that stores the events);
4. decide what each claimed trigger gets (:func:`decide`): games, or, past the maximum session
   length or in the night hours, a reality check or silence;
5. make each claimed trigger's list with ``recsys.serving.lists.list_flow``, the flow every
   list goes through (gate, candidates around the slot being played, SQL exclusions, ranking,
   log, metrics), on the batch's connection;
6. ``NOTIFY`` the lists the player should see (``recsys.db.push``);
7. commit: the events, the claim, the list and the notification become visible together or not
   at all. A list is therefore logged and announced exactly once per session; a failure anywhere
   rolls the whole batch back, and the client's retry fires the trigger again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from recsys.db import push
from recsys.db.engine import Flow, run
from recsys.db.events import TriggeredSession, store_flow
from recsys.events import PlayEvent, TimeBounds, validate_events
from recsys.serving.lists import SESSION_THRESHOLD, Suppression, TriggeredList, list_flow
from recsys.serving.state import ServingState, Snapshot
from recsys.settings import RealTime

if TYPE_CHECKING:
    from recsys.db.pool import AsyncPool

TRIGGERED_K = 10
"""Slots in a triggered list (the frontend's overlay shows a handful)."""


@dataclass(frozen=True)
class Decision:
    """What a claimed trigger gets. ``late_reason`` None: games. Otherwise no games, and ``action``
    says what instead: ``reality_check``, or None (silent: logged, never pushed)."""

    late_reason: str | None = None  # session_limit or night_hours
    action: str | None = None


GAMES = Decision()


def decide(session: TriggeredSession, config: RealTime) -> Decision:
    """Games, unless the session's continuous play reached ``max_seconds`` (``session_limit``) or
    its latest event lies in the night hours (``night_hours``; event time, like the threshold)."""
    if session.continuous_seconds >= config.max_seconds:
        reason = "session_limit"
    elif in_night_hours(session.last_event_at, config.night_window):
        reason = "night_hours"
    else:
        return GAMES
    return Decision(reason, "reality_check" if config.late_action == "reality_check" else None)


def in_night_hours(ts: datetime, window: tuple[int, int] | None) -> bool:
    """Whether ``ts`` falls in the UTC hours ``[start, end)``; a window with start > end wraps midnight."""
    if window is None:
        return False
    start, end = window
    hour = ts.astimezone(UTC).hour
    return start <= hour < end if start < end else hour >= start or hour < end


@dataclass(frozen=True)
class Answer:
    """The list one trigger got (already logged in the batch's transaction)."""

    recommendation_id: uuid.UUID
    player_id: str
    pushed: bool  # announce it to the player's streams: games or a reality check
    body: TriggeredList


@dataclass(frozen=True)
class TrackedBatch:
    accepted: int
    duplicates: int
    attributed_sessions: int
    recommendations: list[TriggeredList]  # the list of each trigger the batch fired
    pushed: list[uuid.UUID]  # the recommendations announced on ``recsys.db.push.CHANNEL``


def track(
    serving: ServingState,
    events: list[PlayEvent],
    config: RealTime,
    *,
    source: str = "events",
) -> TrackedBatch:
    """Run one batch through the steps of the module docstring on a blocking connection of the
    engine's; returns after the commit.

    Raises ``InputError`` (``index`` = 0-based position in the batch, ``field``) before anything is
    written, and whatever making a list raises (the batch is then rolled back).
    """
    validate(events, config, source)
    with serving.engine.begin() as conn:
        return run(conn, _flow(serving, serving.snapshot, events, config, source))


async def track_async(
    serving: ServingState,
    pool: AsyncPool,
    events: list[PlayEvent],
    config: RealTime,
    *,
    source: str = "events",
) -> TrackedBatch | None:
    """:func:`track` on the event loop, in one transaction on ``pool``'s connection; None, before
    anything is written, when the active version is not in memory (a triggered list would then need
    the blocking pgvector reads: :func:`track` serves it)."""
    snap = serving.snapshot
    if snap.model is None:
        return None
    validate(events, config, source)
    return await pool.run(lambda: _flow(serving, snap, events, config, source), transaction=True)


def validate(events: list[PlayEvent], config: RealTime, source: str) -> None:
    """Step 1: the whole batch, against the time window accepted now; raises ``InputError``."""
    bounds = TimeBounds(
        max_future=timedelta(seconds=config.event_max_future_seconds),
        max_age=timedelta(seconds=config.event_max_age_seconds),
    )
    validate_events(events, source, window=bounds.window(datetime.now(UTC)))


def _flow(serving: ServingState, snap: Snapshot, events: list[PlayEvent], config: RealTime,
          source: str) -> Flow[TrackedBatch]:
    """Steps 2 to 6 as one flow (``recsys.db.engine.Statement``); the caller's transaction commits."""
    stored = yield from store_flow(
        events, pause_seconds=config.pause_seconds, threshold_seconds=config.threshold_seconds,
        attribution_seconds=config.attribution_window_seconds, source=source,
    )
    answers = []
    for session in stored.triggered:
        answers.append((yield from respond(serving, snap, session, decide(session, config))))
    # Announced in id order: a stream's replay orders lists of one transaction (same created_at) by id too.
    pushed = sorted((a for a in answers if a.pushed), key=lambda a: a.recommendation_id)
    if pushed:
        yield push.notify_statement([push.Notice(a.recommendation_id, a.player_id) for a in pushed])
    return TrackedBatch(stored.accepted, stored.duplicates, stored.attributed_sessions, [a.body for a in answers],
                        [a.recommendation_id for a in pushed])


def respond(serving: ServingState, snap: Snapshot, session: TriggeredSession, decision: Decision) -> Flow[Answer]:
    """The list of one claimed trigger, made in the batch's transaction.

    The gate comes first and fails closed (a stopped player gets nothing, and nothing is pushed);
    then the late-session decision (no games: a reality check, pushed, or silence); else a list
    around the slot being played, the played slots excluded by SQL (this session's too). The log
    waits for the WAL flush: it commits with the events, whose durability it must keep.
    """
    made = yield from list_flow(
        serving, snap, session.player_id, k=TRIGGERED_K, trigger=SESSION_THRESHOLD, context_key=session.slot_key,
        session_key=session.session_key, continuous_seconds=session.continuous_seconds,
        late_reason=decision.late_reason, action=decision.action, synchronous_commit=True,
    )
    body = TriggeredList(
        made.recommendation_id, session.player_id, session.session_id, session.slot_id, made.version_id,
        SESSION_THRESHOLD, made.action, made.items, None if made.suppressed is None else Suppression(made.suppressed),
    )
    pushed = made.gate is None and (made.suppressed is None or made.action is not None)
    return Answer(made.recommendation_id, session.player_id, pushed, body)
