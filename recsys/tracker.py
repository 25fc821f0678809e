"""The session tracker: a batch of play events in, the long-session triggers it fires out.

One batch, one transaction (:func:`track`):

1. validate the whole batch: one bad event rejects it, and nothing is written;
2. store the events (``recsys.db.events.store_events``: idempotent by ``event_id``, tolerant of
   order, sessions recomputed in event time), which claims the trigger of every session whose
   continuous play reached the threshold, exactly once, under the session's row lock;
3. attribute the batch's sessions to the recommendations they followed (``recsys.db.feedback``;
   ``store_events`` runs it in the round trip that stores the events);
4. decide what each claimed trigger gets (:func:`decide`): games, or, past the maximum session
   length or in the night hours, a reality check or silence;
5. make each claimed trigger's list with ``recsys.serving.lists.make_list``, the function every
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
from recsys.db.events import TriggeredSession, store_events
from recsys.events import PlayEvent, TimeBounds, validate_events
from recsys.serving.lists import SESSION_THRESHOLD, Suppression, TriggeredList, make_list
from recsys.serving.state import ServingState
from recsys.settings import RealTime

if TYPE_CHECKING:
    import sqlalchemy as sa

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
    """Run one batch through the steps of the module docstring; returns after the commit.

    Raises ``InputError`` (``index`` = 0-based position in the batch, ``field``) before anything is
    written, and whatever making a list raises (the batch is then rolled back).
    """
    bounds = TimeBounds(
        max_future=timedelta(seconds=config.event_max_future_seconds),
        max_age=timedelta(seconds=config.event_max_age_seconds),
    )
    window = bounds.window(datetime.now(UTC))
    validate_events(events, source, window=window)
    with serving.engine.begin() as conn:
        return _track(serving, conn, events, config, source)


def _track(serving: ServingState, conn: sa.Connection, events: list[PlayEvent], config: RealTime,
           source: str) -> TrackedBatch:
    stored = store_events(
        conn, events, pause_seconds=config.pause_seconds, threshold_seconds=config.threshold_seconds,
        attribution_seconds=config.attribution_window_seconds, source=source,
    )
    answers = [respond(serving, conn, session, decide(session, config)) for session in stored.triggered]
    # Announced in id order: a stream's replay orders lists of one transaction (same created_at) by id too.
    pushed = sorted((a for a in answers if a.pushed), key=lambda a: a.recommendation_id)
    push.notify(conn, [push.Notice(a.recommendation_id, a.player_id) for a in pushed])
    return TrackedBatch(stored.accepted, stored.duplicates, stored.attributed_sessions, [a.body for a in answers],
                        [a.recommendation_id for a in pushed])


def respond(serving: ServingState, conn: sa.Connection, session: TriggeredSession, decision: Decision) -> Answer:
    """The list of one claimed trigger, made on the batch's ``conn``.

    The gate comes first and fails closed (a stopped player gets nothing, and nothing is pushed);
    then the late-session decision (no games: a reality check, pushed, or silence); else a list
    around the slot being played, the played slots excluded by SQL (this session's too). The log
    waits for the WAL flush: it commits with the events, whose durability it must keep.
    """
    made = make_list(
        serving, conn, session.player_id, k=TRIGGERED_K, trigger=SESSION_THRESHOLD, context_key=session.slot_key,
        session_key=session.session_key, continuous_seconds=session.continuous_seconds,
        late_reason=decision.late_reason, action=decision.action, synchronous_commit=True,
    )
    body = TriggeredList(
        made.recommendation_id, session.player_id, session.session_id, session.slot_id, made.version_id,
        SESSION_THRESHOLD, made.action, made.items, None if made.suppressed is None else Suppression(made.suppressed),
    )
    pushed = made.gate is None and (made.suppressed is None or made.action is not None)
    return Answer(made.recommendation_id, session.player_id, pushed, body)
