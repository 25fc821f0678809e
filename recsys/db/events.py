"""Storing play events: idempotent by ``event_id``, tolerant of order, sessions kept up to date.

Everything happens in the caller's transaction, so the HTTP answer can wait for the commit (no
acknowledged event is ever lost) and the long-session trigger can be claimed together with the
recommendation it produces. Per batch:

1. create missing sessions (the casino's player and slot ids resolved to keys in the statement),
   then lock the batch's sessions (``FOR UPDATE``, in key order so two batches never deadlock):
   concurrent batches of one session are serialized from here on. An unknown player or slot, or a
   session that belongs to another player or slot, rejects the batch (``_refuse`` then says which);
2. check that no session's summed bets or wins would pass what its columns hold;
3. insert the events, ``ON CONFLICT (event_id) DO NOTHING`` (a retried batch changes nothing);
4. update each touched session: when its new events all come after its latest stored one (the
   usual case), from the new events alone — their gaps that are not pauses add to the continuous
   seconds; when an event lands in its past, by recomputing it from all its events (so
   out-of-order events land where they belong): start, latest event, end, spins, stakes, and
   **continuous play** in event time, from the first event after the last pause longer than
   ``pause_seconds`` to the latest event. Both give the same row (tests/db/test_events.py);
5. claim the trigger of every session of the batch whose continuous play reached
   ``threshold_seconds`` with ``UPDATE ... WHERE trigger_fired_at IS NULL``: under the row lock
   exactly one batch wins;
6. optionally, attribute the batch's sessions (``recsys.db.feedback.attribution``).

Two round trips in all, each a pipeline: step 1 (with ``BEGIN``, when the caller asks: ``begin``),
then steps 3 to 6 (3 and 4 are one statement); a third when a trigger fired (the plan cache's
default back, see ``_GENERIC_PLANS``); then the caller's commit. A single event's batch is eight
statements: each costs the API ~80 us of CPU and PostgreSQL 20-80 us besides its own work (measured),
so the players' and slots' keys are looked up only for a refused batch.
Each statement passes its data as parameters: nothing travels through session settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg.rows import class_row

from recsys.db.bulk import array_literal, unquoted_literal
from recsys.db.feedback import ATTRIBUTE_SESSIONS
from recsys.db.pool import BEGIN
from recsys.errors import InputError
from recsys.events import PlayEvent


@dataclass(frozen=True)
class TriggeredSession:
    session_key: int
    session_id: str
    player_key: int
    player_id: str
    slot_key: int
    slot_id: str
    continuous_seconds: float
    started_at: datetime
    last_event_at: datetime


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    triggered: list[TriggeredSession]
    attributed_sessions: int = 0  # with ``attribution_seconds``


async def store_events(
    conn: AsyncConnection,
    events: list[PlayEvent],
    *,
    pause_seconds: float,
    threshold_seconds: float,
    attribution_seconds: float | None = None,
    source: str = "events",
    begin: bool = False,
) -> IngestResult:
    """Store a validated batch in ``conn``'s transaction (the caller's: ``conn.transaction()``, or
    with ``begin`` one that the first round trip begins, in :func:`recsys.db.pool.begun`); the
    steps of the module docstring. ``attribution_seconds``: the attribution window of
    ``recsys.db.feedback.ATTRIBUTE_SESSIONS`` (None: no attribution). The statements run on their
    generic plans (``_GENERIC_PLANS``); array parameters travel as text literals (cheaper to send
    than psycopg's binary lists).
    """
    first: dict[str, tuple[datetime, str, str]] = {}  # session -> earliest time, player and slot
    for event in events:
        ts, player, slot = first.get(event.session_id, (event.ts, event.player_id, event.slot_id))
        first[event.session_id] = (min(ts, event.ts), player, slot)
    # In session_id order: two batches creating the same sessions take the unique-index locks in the
    # same order and cannot deadlock.
    ids = sorted(first)
    async with conn.pipeline():
        if begin:
            await conn.execute(BEGIN)
        await conn.execute(_GENERIC_PLANS)
        await conn.execute(_CREATE_SESSIONS, {
            "ids": array_literal(ids),
            "players": array_literal(first[i][1] for i in ids),
            "slots": array_literal(first[i][2] for i in ids),
            "ts": array_literal(first[i][0] for i in ids),
        })
        locked = conn.cursor(row_factory=class_row(_SessionRow))
        await locked.execute(_LOCK_SESSIONS, {"ids": array_literal(ids)})
    sessions = {row.session_id: row for row in await locked.fetchall()}
    if any(event.session_id not in sessions
           or (sessions[event.session_id].player_id, sessions[event.session_id].slot_id) != (event.player_id,
                                                                                             event.slot_id)
           for event in events):
        await _refuse(conn, events, sessions, source)
    _check_totals(events, sessions, source)

    unique = list({e.event_id: e for e in events}.values())
    session_keys = unquoted_literal(str(row.id) for row in sessions.values())
    async with conn.pipeline():
        stored = await conn.execute(_STORE, {**_event_arrays(unique, sessions), "pause": pause_seconds})
        claimed = conn.cursor(row_factory=class_row(TriggeredSession))
        await claimed.execute(_CLAIM_TRIGGER, {"sessions": session_keys, "threshold": threshold_seconds,
                                               "pause": pause_seconds})
        if attribution_seconds is not None:
            attributed = await conn.execute(ATTRIBUTE_SESSIONS, {"sessions": session_keys,
                                                                 "window": float(attribution_seconds)})
    (accepted,) = await stored.fetchone()
    triggered = await claimed.fetchall()
    if triggered:  # the triggered lists are made in this transaction, on the default plans
        await conn.execute(_DEFAULT_PLANS)
    return IngestResult(accepted=accepted, duplicates=len(events) - accepted, triggered=triggered,
                        attributed_sessions=attributed.rowcount if attribution_seconds is not None else 0)


async def _refuse(conn: AsyncConnection, events: list[PlayEvent], sessions: dict, source: str) -> None:
    """Raise the ``InputError`` of the batch's first event with an unknown player or slot, else of its
    first event whose session belongs to another player or slot (a session is created only for a
    known player and slot, so a batch without a session for each event has one of those). One more
    round trip, on this path only."""
    async with conn.pipeline():
        players = await conn.execute(_PLAYER_KEYS, {"ids": array_literal({e.player_id for e in events})})
        slots = await conn.execute(_SLOT_KEYS, {"ids": array_literal({e.slot_id for e in events})})
    known_players = {player_id for player_id, _ in await players.fetchall()}
    known_slots = {slot_id for slot_id, _ in await slots.fetchall()}
    for index, event in enumerate(events):
        if event.player_id not in known_players:
            raise InputError(source, f"unknown player {event.player_id!r}", index=index, field="player_id")
        if event.slot_id not in known_slots:
            raise InputError(source, f"unknown slot {event.slot_id!r}", index=index, field="slot_id")
    for index, event in enumerate(events):
        session = sessions[event.session_id]
        if (session.player_id, session.slot_id) != (event.player_id, event.slot_id):
            field = "player_id" if session.player_id != event.player_id else "slot_id"
            raise InputError(
                source, f"session {event.session_id!r} belongs to another player or slot", index=index, field=field
            )


@dataclass(frozen=True)
class _SessionRow:
    id: int
    session_id: str
    player_id: str
    slot_id: str
    last_event_at: datetime
    total_bet: Decimal
    total_win: Decimal


# Every statement of a batch has array parameters, and PostgreSQL's plan cache would plan each of them
# anew on every call (a generic plan cannot see the arrays' lengths, so it never looks cheaper than a
# custom one). On their generic plans PostgreSQL's CPU for one event went from 3.4 to 2.0 ms, measured;
# those plans are index lookups whatever the batch's length. A batch uses them (for its transaction
# only), and sets the default back when it fired a trigger, before the lists are made.
_GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"
_DEFAULT_PLANS = "SET LOCAL plan_cache_mode TO DEFAULT"

# Which of a refused batch's players and slots exist (``_refuse``).
_PLAYER_KEYS = "SELECT player_id, id FROM players WHERE player_id = ANY(CAST(%(ids)s AS text[]))"
_SLOT_KEYS = "SELECT slot_id, id FROM slots WHERE slot_id = ANY(CAST(%(ids)s AS text[]))"

# The players' and slots' keys are resolved here too (index lookups): an unknown one creates nothing,
# and the batch is then rejected (rolled back) before anything else runs.
_CREATE_SESSIONS = """
INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at)
SELECT session_id, player_key, slot_key, ts, ts
FROM (
    SELECT n.session_id, n.ts, n.position,
           (SELECT p.id FROM players p WHERE p.player_id = n.player_id) AS player_key,
           (SELECT s.id FROM slots s WHERE s.slot_id = n.slot_id) AS slot_key
    FROM unnest(CAST(%(ids)s AS text[]), CAST(%(players)s AS text[]), CAST(%(slots)s AS text[]),
                CAST(%(ts)s AS timestamptz[])) WITH ORDINALITY AS n(session_id, player_id, slot_id, ts, position)
    WHERE NOT EXISTS (SELECT FROM play_sessions s WHERE s.session_id = n.session_id)  -- the usual case
    OFFSET 0  -- each key looked up once, for the new sessions only
) n
WHERE player_key IS NOT NULL AND slot_key IS NOT NULL
ORDER BY position
ON CONFLICT (session_id) DO NOTHING
"""

# The sessions with their player's and slot's ids: an event naming others is refused (``_refuse``).
_LOCK_SESSIONS = """
SELECT s.id, s.session_id, p.player_id, sl.slot_id, s.last_event_at, s.total_bet, s.total_win
FROM play_sessions s JOIN players p ON p.id = s.player_key JOIN slots sl ON sl.id = s.slot_key
WHERE s.session_id = ANY(CAST(%(ids)s AS text[])) ORDER BY s.id FOR UPDATE OF s
"""

SESSION_TOTAL_LIMIT = 10**12
"""``play_sessions.total_bet`` and ``total_win`` are ``NUMERIC(14, 2)``."""


def _check_totals(events: list[PlayEvent], sessions: dict, source: str) -> None:
    """Refuse the event that would take a session's summed bets or wins past what the column holds
    (counting a repeated event as new: the limit is far beyond real play)."""
    totals = {sid: {"bet": float(row.total_bet), "win": float(row.total_win)} for sid, row in sessions.items()}
    for index, event in enumerate(events):
        for name in ("bet", "win"):
            value = getattr(event, name)
            if value is None:
                continue
            totals[event.session_id][name] += value
            if round(totals[event.session_id][name], 2) >= SESSION_TOTAL_LIMIT:
                raise InputError(
                    source, f"the session's summed {name}s would reach {SESSION_TOTAL_LIMIT:.0e}", index=index,
                    field=name,
                )


def _event_arrays(events: list[PlayEvent], sessions: dict) -> dict[str, str]:
    """The ``unnest`` parameters of a list of events: one text-array literal per column. A bet or a
    win is written with 15 significant digits, as PostgreSQL converts a float8 to numeric."""
    return {
        "ids": array_literal(e.event_id for e in events),
        "sessions": unquoted_literal(str(sessions[e.session_id].id) for e in events),
        "types": array_literal(e.type for e in events),
        "ts": array_literal(e.ts for e in events),
        "bets": unquoted_literal(_numeric(e.bet) for e in events),
        "wins": unquoted_literal(_numeric(e.win) for e in events),
        "bonus": unquoted_literal("NULL" if e.bonus is None else "t" if e.bonus else "f" for e in events),
    }


def _numeric(value: float | None) -> str:
    return "NULL" if value is None else f"{value:.15g}"


def _segments(events: str) -> str:
    """Continuous segments of ``events`` (a table expression with ``session_key``, ``ts`` and
    ``event_id``): a new segment starts at the first event and after every pause > pause seconds."""
    return f"""
        SELECT session_key, ts,
               sum(CASE WHEN prev IS NULL OR extract(epoch FROM ts - prev) > %(pause)s THEN 1 ELSE 0 END)
                   OVER (PARTITION BY session_key ORDER BY ts, event_id) AS segment
        FROM (SELECT session_key, ts, event_id,
                     lag(ts) OVER (PARTITION BY session_key ORDER BY ts, event_id) AS prev
              FROM {events}) e"""


# One statement: the events inserted (ON CONFLICT DO NOTHING), and each session that got one updated;
# it answers how many events were new. Its named steps:
# - new: the batch's events as rows;
# - inserted: those stored now (a repeated event_id is not);
# - touched: the sessions that got one, and whether all their new events come after the latest stored
#   one (in_order, the usual case);
# - gaps, appended, append: an in-order session is updated from its new events alone: the gaps between
#   consecutive events (the first one's predecessor is the stored latest) that are not pauses add to
#   its continuous seconds;
# - everything, segments, spans, totals, recompute: a session that got an event in its past is
#   recomputed from all its events, those stored before this statement and those it inserts (a
#   statement does not see its own inserts, so they are added explicitly).
_STORE = f"""
WITH new AS (
    SELECT *
    FROM unnest(CAST(%(ids)s AS text[]), CAST(%(sessions)s AS bigint[]), CAST(%(types)s AS text[]),
                CAST(%(ts)s AS timestamptz[]), CAST(%(bets)s AS numeric[]), CAST(%(wins)s AS numeric[]),
                CAST(%(bonus)s AS boolean[])) AS n(event_id, session_key, type, ts, bet, win, bonus)
),
inserted AS (
    INSERT INTO play_events (event_id, session_key, type, ts, bet, win, bonus)
    SELECT * FROM new
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, session_key, type, ts, bet, win, bonus
),
touched AS (
    SELECT i.session_key, s.last_event_at, min(i.ts) >= s.last_event_at AS in_order
    FROM inserted i JOIN play_sessions s ON s.id = i.session_key
    GROUP BY i.session_key, s.last_event_at
),
gaps AS (
    SELECT n.*, extract(epoch FROM n.ts - coalesce(lag(n.ts) OVER w, t.last_event_at)) AS gap
    FROM new n
    JOIN inserted i ON i.event_id = n.event_id
    JOIN touched t ON t.session_key = n.session_key AND t.in_order
    WINDOW w AS (PARTITION BY n.session_key ORDER BY n.ts, n.event_id)
),
appended AS (
    SELECT session_key,
           sum(CASE WHEN gap <= %(pause)s THEN gap ELSE 0 END) AS seconds,
           max(ts) AS last_event_at,
           max(ts) FILTER (WHERE type = 'end') AS ended_at,
           count(*) FILTER (WHERE type = 'spin') AS spins,
           coalesce(sum(bet), 0) AS total_bet,
           coalesce(sum(win), 0) AS total_win,
           coalesce(bool_or(bonus), false) AS bonus
    FROM gaps GROUP BY session_key
),
append AS (
    UPDATE play_sessions s
    SET last_event_at = greatest(s.last_event_at, t.last_event_at),
        ended_at = greatest(s.ended_at, t.ended_at),
        seconds = s.seconds + t.seconds,
        spins = s.spins + t.spins,
        total_bet = s.total_bet + t.total_bet,
        total_win = s.total_win + t.total_win,
        bonus = s.bonus OR t.bonus,
        updated_at = now()
    FROM appended t WHERE s.id = t.session_key
),
everything AS (
    SELECT session_key, event_id, type, ts, bet, win, bonus FROM play_events
    WHERE session_key = ANY(ARRAY(SELECT session_key FROM touched WHERE NOT in_order))
    UNION ALL
    SELECT i.session_key, i.event_id, i.type, i.ts, i.bet, i.win, i.bonus
    FROM inserted i JOIN touched t ON t.session_key = i.session_key AND NOT t.in_order
),
segments AS ({_segments("everything")}
),
spans AS (
    SELECT session_key, segment, extract(epoch FROM max(ts) - min(ts)) AS seconds
    FROM segments GROUP BY session_key, segment
),
totals AS (
    SELECT session_key,
           min(ts) AS started_at,
           max(ts) AS last_event_at,
           max(ts) FILTER (WHERE type = 'end') AS ended_at,
           count(*) FILTER (WHERE type = 'spin') AS spins,
           coalesce(sum(bet), 0) AS total_bet,
           coalesce(sum(win), 0) AS total_win,
           coalesce(bool_or(bonus), false) AS bonus
    FROM everything GROUP BY session_key
),
recompute AS (
    UPDATE play_sessions s
    SET started_at = t.started_at,
        last_event_at = t.last_event_at,
        ended_at = t.ended_at,
        seconds = (SELECT sum(seconds) FROM spans WHERE spans.session_key = s.id),
        spins = t.spins,
        total_bet = t.total_bet,
        total_win = t.total_win,
        bonus = t.bonus,
        updated_at = now()
    FROM totals t WHERE s.id = t.session_key
)
SELECT count(*) FROM inserted
"""

# Claims the trigger of each of the batch's sessions whose latest continuous segment reached the
# threshold (in the same pipeline, after _STORE: it reads the sessions as _STORE left them). Its steps:
# - candidates: the batch's sessions not fired yet whose whole span reaches the threshold (only those
#   can have reached it continuously: the window functions skip the others' events);
# - candidate_events: their events, through the index (the keys as an InitPlan, read once);
# - segments, latest, continuous: each candidate's latest continuous segment and its length.
_CLAIM_TRIGGER = f"""
WITH candidates AS (
    SELECT s.id FROM play_sessions s
    WHERE s.id = ANY(CAST(%(sessions)s AS bigint[]))
      AND s.trigger_fired_at IS NULL
      AND s.last_event_at - s.started_at >= make_interval(secs => %(threshold)s)
),
candidate_events AS (
    SELECT session_key, ts, event_id FROM play_events
    WHERE session_key = ANY(ARRAY(SELECT id FROM candidates))
),
segments AS ({_segments("candidate_events")}
),
latest AS (
    SELECT DISTINCT ON (session_key) session_key, segment FROM segments ORDER BY session_key, ts DESC
),
continuous AS (
    SELECT g.session_key, extract(epoch FROM max(g.ts) - min(g.ts)) AS seconds
    FROM segments g JOIN latest USING (session_key, segment)
    GROUP BY g.session_key
)
UPDATE play_sessions s SET trigger_fired_at = now()
FROM continuous c, players p, slots sl
WHERE s.id = c.session_key AND c.seconds >= %(threshold)s AND s.trigger_fired_at IS NULL
  AND p.id = s.player_key AND sl.id = s.slot_key
RETURNING s.id AS session_key, s.session_id, s.player_key, p.player_id, s.slot_key, sl.slot_id,
          c.seconds::float8 AS continuous_seconds, s.started_at, s.last_event_at
"""
