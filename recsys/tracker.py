"""The session tracker: a batch of play events in, the long-session triggers it fires out.

One batch, one transaction on one connection (:func:`track`):

1. validate the whole batch: one bad event rejects it, and nothing is written;
2. store the events (``recsys.db.events.store_events``: idempotent by ``event_id``, tolerant of
   order, sessions recomputed in event time), which claims the trigger of every session whose
   continuous play reached the threshold, exactly once, under the session's row lock;
3. attribute the batch's sessions to the recommendations they followed (``recsys.db.feedback``;
   ``store_events`` runs it in the round trip that stores the events);
4. decide what each claimed trigger gets (:func:`decide`): games, or, past the maximum session
   length or in the night hours, a reality check or silence;
5. make each claimed trigger's list with ``recsys.serving.lists.make_list``, the code every
   list goes through (gate, candidates around the slot being played, SQL exclusions, ranking,
   log, metrics), on the batch's connection;
6. ``NOTIFY`` the lists the player should see (``recsys.db.push``);
7. commit: the events, the claim, the list and the notification become visible together or not
   at all. A list is therefore logged and announced exactly once per session; a failure anywhere
   rolls the whole batch back, and the client's retry fires the trigger again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from recsys.db import push
from recsys.db.events import TriggeredSession, store_events
from recsys.db.pool import begun
from recsys.events import PlayEvent, TimeBounds, validate_events
from recsys.served import ServedList
from recsys.serving.lists import SESSION_THRESHOLD, make_list
from recsys.serving.state import ServingState, Snapshot
from recsys.settings import RealTime

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from recsys.db.pool import OnlinePool

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
class TrackedBatch:
    accepted: int
    duplicates: int
    attributed_sessions: int
    lists: list[ServedList]  # the list of each trigger the batch fired (logged; ``pushed`` ones announced)


async def track(
    serving: ServingState,
    pool: OnlinePool,
    events: list[PlayEvent],
    config: RealTime,
    *,
    source: str = "events",
) -> TrackedBatch:
    """Run one batch through the steps of the module docstring in one transaction on a connection of
    ``pool``'s; returns after the commit.

    Raises ``InputError`` (``index`` = 0-based position in the batch, ``field``) before anything is
    written, and whatever making a list raises (the batch is then rolled back).
    """
    validate(events, config, source)
    snap = serving.snapshot
    async with pool.connection() as conn, begun(conn):
        return await track_on(conn, serving, snap, events, config, source, begin=True)


def validate(events: list[PlayEvent], config: RealTime, source: str) -> None:
    """Step 1: the whole batch, against the time window accepted now; raises ``InputError``."""
    bounds = TimeBounds(
        max_future=timedelta(seconds=config.event_max_future_seconds),
        max_age=timedelta(seconds=config.event_max_age_seconds),
    )
    validate_events(events, source, window=bounds.window(datetime.now(UTC)))


async def track_on(conn: AsyncConnection, serving: ServingState, snap: Snapshot, events: list[PlayEvent],
                   config: RealTime, source: str, *, begin: bool = False) -> TrackedBatch:
    """Steps 2 to 6 in ``conn``'s transaction (the caller commits; ``begin``: the first round trip
    begins it, see ``recsys.db.events.store_events``)."""
    stored = await store_events(
        conn, events, pause_seconds=config.pause_seconds, threshold_seconds=config.threshold_seconds,
        attribution_seconds=config.attribution_window_seconds, source=source, begin=begin,
    )
    lists = [await respond(conn, serving, snap, session, decide(session, config)) for session in stored.triggered]
    # Announced in id order: a stream's replay orders lists of one transaction (same created_at) by id too.
    pushed = sorted((served for served in lists if served.pushed), key=lambda served: served.recommendation_id)
    if pushed:
        await push.notify(conn, [push.Notice(served.recommendation_id, served.player_id) for served in pushed])
    return TrackedBatch(stored.accepted, stored.duplicates, stored.attributed_sessions, lists)


async def respond(conn: AsyncConnection, serving: ServingState, snap: Snapshot, session: TriggeredSession,
                  decision: Decision) -> ServedList:
    """The list of one claimed trigger, made in the batch's transaction.

    The gate comes first and fails closed (a stopped player gets nothing, and nothing is pushed);
    then the late-session decision (no games: a reality check, pushed, or silence); else a list
    around the slot being played, the played slots excluded by SQL (this session's too). The log
    waits for the WAL flush: it commits with the events, whose durability it must keep.
    """
    return await make_list(
        conn, serving, snap, session.player_id, k=TRIGGERED_K, trigger=SESSION_THRESHOLD,
        context_key=session.slot_key, context_slot_id=session.slot_id, session_key=session.session_key,
        session_id=session.session_id, continuous_seconds=session.continuous_seconds,
        late_reason=decision.late_reason, action=decision.action, synchronous_commit=True,
    )
