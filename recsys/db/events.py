"""Storing play events: idempotent by ``event_id``, tolerant of order, sessions kept up to date.

Everything happens in the caller's transaction, so the HTTP answer can wait for the commit (no
acknowledged event is ever lost) and the long-session trigger can be claimed together with the
recommendation it produces. Per batch:

1. resolve the casino's ids to keys; an unknown player or slot rejects the batch;
2. create missing sessions, then lock the batch's sessions (``FOR UPDATE``, in key order so two
   batches never deadlock): concurrent batches of one session are serialized from here on;
3. insert the events, ``ON CONFLICT (event_id) DO NOTHING`` (a retried batch changes nothing);
4. update each touched session: when its new events all come after its latest stored one (the
   usual case), from the new events alone — their gaps that are not pauses add to the continuous
   seconds; when an event lands in its past, by recomputing it from all its events (so
   out-of-order events land where they belong): start, latest event, end, spins, stakes, and
   **continuous play** in event time, from the first event after the last pause longer than
   ``pause_seconds`` to the latest event. Both give the same row (tests/db/test_events.py);
5. claim the trigger of every session whose continuous play reached ``threshold_seconds`` with
   ``UPDATE ... WHERE trigger_fired_at IS NULL``: under the row lock exactly one batch wins;
6. optionally, attribute the batch's sessions (``recsys.db.feedback.attribute_sessions``) when the
   batch stored an event.

Two round trips in all: steps 1 and 2 in one pipeline, steps 3 to 6 in another (3 and 4 are one
statement); a third when a trigger fired (the plan cache's default back, see ``_GENERIC_PLANS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import sqlalchemy as sa

from recsys.db.bulk import array_literal, unquoted_literal
from recsys.db.engine import Flow, Pipeline, Statement, compact, run
from recsys.db.feedback import attribution
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


def store_events(
    conn: sa.Connection,
    events: list[PlayEvent],
    *,
    pause_seconds: float,
    threshold_seconds: float,
    attribution_seconds: float | None = None,
    source: str = "events",
) -> IngestResult:
    """Store a validated batch in ``conn``'s transaction; see the module docstring for the steps
    and :func:`store_flow` for how."""
    return run(conn, store_flow(events, pause_seconds=pause_seconds, threshold_seconds=threshold_seconds,
                                attribution_seconds=attribution_seconds, source=source))


def store_flow(
    events: list[PlayEvent],
    *,
    pause_seconds: float,
    threshold_seconds: float,
    attribution_seconds: float | None = None,
    source: str = "events",
) -> Flow[IngestResult]:
    """:func:`store_events` as a flow (``recsys.db.engine.Statement``), for a transaction on a
    blocking connection or on the event loop.

    Two round trips, each a pipeline of statements prepared once per connection: the keys with the
    sessions (created, then locked); then the events with the sessions' update, the claim and, with
    ``attribution_seconds`` (the window of ``recsys.db.feedback.attribute_sessions``), the
    attribution of the batch's sessions when the batch stored an event. The statements run on their
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
    rows, _, locked = yield Pipeline((
        Statement(_KEYS, {"players": array_literal({e.player_id for e in events}),
                          "slots": array_literal({e.slot_id for e in events})}, rows=True),
        Statement(_CREATE_SESSIONS, {
            "ids": array_literal(ids),
            "players": array_literal(first[i][1] for i in ids),
            "slots": array_literal(first[i][2] for i in ids),
            "ts": array_literal(first[i][0] for i in ids),
        }, fetch=False),
        Statement(_LOCK_SESSIONS, {"ids": array_literal(ids)}, rows=True),
    ))
    players = {i: key for kind, i, key in rows if kind == "p"}
    slots = {i: key for kind, i, key in rows if kind == "s"}
    for index, event in enumerate(events):
        if event.player_id not in players:
            raise InputError(source, f"unknown player {event.player_id!r}", index=index, field="player_id")
        if event.slot_id not in slots:
            raise InputError(source, f"unknown slot {event.slot_id!r}", index=index, field="slot_id")
    sessions = {row.session_id: row for row in map(_SessionRow._make, locked)}
    for index, event in enumerate(events):
        session = sessions[event.session_id]
        if (session.player_key, session.slot_key) != (players[event.player_id], slots[event.slot_id]):
            field = "player_id" if session.player_key != players[event.player_id] else "slot_id"
            raise InputError(
                source, f"session {event.session_id!r} belongs to another player or slot", index=index, field=field
            )
    _check_totals(events, sessions, source)

    unique = list({e.event_id: e for e in events}.values())
    statements = [
        Statement(_STORE, {**_event_arrays(unique, sessions), "pause": pause_seconds, "threshold": threshold_seconds}),
        Statement(_CLAIM_TRIGGER, {"threshold": threshold_seconds, "pause": pause_seconds}, rows=True),
    ]
    if attribution_seconds is not None:
        statements.append(attribution(window_seconds=attribution_seconds, guard=_STORED_AN_EVENT,
                                      session_ids=list({e.session_id: None for e in events})))
    stored, claimed, *attributed = yield Pipeline(tuple(statements))
    triggered = [TriggeredSession(*row) for row in claimed]
    if triggered:  # the triggered lists are made in this transaction, on the default plans
        yield Statement(_DEFAULT_PLANS, {}, fetch=False, prepare=False)
    return IngestResult(accepted=stored[0], duplicates=len(events) - stored[0], triggered=triggered,
                        attributed_sessions=attributed[0] if attributed else 0)


class _SessionRow(NamedTuple):
    id: int
    session_id: str
    player_key: int
    slot_key: int
    last_event_at: datetime
    total_bet: Decimal
    total_win: Decimal


# Every statement of a batch has array parameters, and PostgreSQL's plan cache would plan each of them
# anew on every call (a generic plan cannot see the arrays' lengths, so it never looks cheaper than a
# custom one). On their generic plans PostgreSQL's CPU for one event went from 3.4 to 2.0 ms, measured;
# those plans are index lookups whatever the batch's length. A batch uses them (for its transaction
# only), and sets the default back when it fired a trigger, before the lists are made.
# The setting travels in the batch's first statement (_KEYS), which saves a statement of its own.
_GENERIC_PLANS = "set_config('plan_cache_mode', 'force_generic_plan', true)"
_DEFAULT_PLANS = "SET LOCAL plan_cache_mode TO DEFAULT"

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

_LOCK_SESSIONS = """
SELECT id, session_id, player_key, slot_key, last_event_at, total_bet, total_win FROM play_sessions
WHERE session_id = ANY(CAST(%(ids)s AS text[])) ORDER BY id FOR UPDATE
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


_KEYS = f"""
SELECT 'p', player_id, id FROM players WHERE player_id = ANY(CAST(%(players)s AS text[]))
UNION ALL
SELECT 's', slot_id, id FROM slots WHERE slot_id = ANY(CAST(%(slots)s AS text[]))
UNION ALL
SELECT 'g', {_GENERIC_PLANS}, NULL  -- the statements after this one, on their generic plans
"""

# The statements of one batch's second round trip hand each other what they found through settings
# local to the transaction: the sessions that may have reached the threshold (the claim's candidates),
# and how many events were stored (the attribution runs only when one was).
_CANDIDATES = "recsys.trigger_candidates"
_STORED = "recsys.events_stored"
_STORED_AN_EVENT = f"current_setting('{_STORED}') <> '0'"


def _segments(events: str) -> str:
    """Continuous segments of ``events`` (a table expression with ``session_key``, ``ts`` and
    ``event_id``): a new segment starts at the first event and after every pause > pause seconds."""
    return f"""
SELECT session_key, ts,
       sum(CASE WHEN prev IS NULL OR extract(epoch FROM ts - prev) > %(pause)s THEN 1 ELSE 0 END)
           OVER (PARTITION BY session_key ORDER BY ts, event_id) AS segment
FROM (SELECT session_key, ts, event_id, lag(ts) OVER (PARTITION BY session_key ORDER BY ts, event_id) AS prev
      FROM {events}) e
"""


_CANDIDATE = """s.trigger_fired_at IS NULL AND s.last_event_at - s.started_at >= make_interval(secs => %(threshold)s)"""
"""Only a session not yet fired whose whole span reaches the threshold can have reached it continuously:
the claim skips the window functions over the others' events."""

# One statement: the events inserted (ON CONFLICT DO NOTHING), and each session that got one updated.
# A session whose new events all come after its latest stored one (``in_order``) is updated from those
# events alone: the gaps between consecutive events (the first one's predecessor is the stored latest)
# that are not pauses add to the continuous seconds. A session that got an event in its past is
# recomputed from all its events: those stored before this statement and those it inserts (a statement
# does not see its own inserts, so they are added explicitly).
_STORE = compact(f"""
WITH new AS (
    SELECT * FROM unnest(CAST(%(ids)s AS text[]), CAST(%(sessions)s AS bigint[]), CAST(%(types)s AS text[]),
                         CAST(%(ts)s AS timestamptz[]), CAST(%(bets)s AS numeric[]), CAST(%(wins)s AS numeric[]),
                         CAST(%(bonus)s AS boolean[])) AS n(event_id, session_key, type, ts, bet, win, bonus)
),
inserted AS (
    INSERT INTO play_events (event_id, session_key, type, ts, bet, win, bonus) SELECT * FROM new
    ON CONFLICT (event_id) DO NOTHING RETURNING event_id, session_key, type, ts, bet, win, bonus
),
touched AS (
    SELECT i.session_key, s.last_event_at, min(i.ts) >= s.last_event_at AS in_order
    FROM inserted i JOIN play_sessions s ON s.id = i.session_key GROUP BY i.session_key, s.last_event_at
),
gaps AS (
    SELECT n.*, extract(epoch FROM n.ts - coalesce(lag(n.ts) OVER w, t.last_event_at)) AS gap
    FROM new n JOIN inserted i ON i.event_id = n.event_id
    JOIN touched t ON t.session_key = n.session_key AND t.in_order
    WINDOW w AS (PARTITION BY n.session_key ORDER BY n.ts, n.event_id)
),
appended AS (
    SELECT session_key, sum(CASE WHEN gap <= %(pause)s THEN gap ELSE 0 END) AS seconds, max(ts) AS last_event_at,
           max(ts) FILTER (WHERE type = 'end') AS ended_at, count(*) FILTER (WHERE type = 'spin') AS spins,
           coalesce(sum(bet), 0) AS total_bet, coalesce(sum(win), 0) AS total_win,
           coalesce(bool_or(bonus), false) AS bonus
    FROM gaps GROUP BY session_key
),
append AS (
    UPDATE play_sessions s
    SET last_event_at = greatest(s.last_event_at, t.last_event_at), ended_at = greatest(s.ended_at, t.ended_at),
        seconds = s.seconds + t.seconds, spins = s.spins + t.spins, total_bet = s.total_bet + t.total_bet,
        total_win = s.total_win + t.total_win, bonus = s.bonus OR t.bonus, updated_at = now()
    FROM appended t WHERE s.id = t.session_key
    RETURNING s.id, {_CANDIDATE} AS candidate
),
everything AS (
    SELECT session_key, event_id, type, ts, bet, win, bonus FROM play_events
    WHERE session_key = ANY(ARRAY(SELECT session_key FROM touched WHERE NOT in_order))
    UNION ALL
    SELECT i.session_key, i.event_id, i.type, i.ts, i.bet, i.win, i.bonus
    FROM inserted i JOIN touched t ON t.session_key = i.session_key AND NOT t.in_order
),
seg AS ({_segments("everything")}),
spans AS (
    SELECT session_key, segment, extract(epoch FROM max(ts) - min(ts)) AS seconds
    FROM seg GROUP BY session_key, segment
),
totals AS (
    SELECT session_key, min(ts) AS started_at, max(ts) AS last_event_at,
           max(ts) FILTER (WHERE type = 'end') AS ended_at,
           count(*) FILTER (WHERE type = 'spin') AS spins,
           coalesce(sum(bet), 0) AS total_bet, coalesce(sum(win), 0) AS total_win,
           coalesce(bool_or(bonus), false) AS bonus
    FROM everything GROUP BY session_key
),
recompute AS (
    UPDATE play_sessions s
    SET started_at = t.started_at, last_event_at = t.last_event_at, ended_at = t.ended_at,
        seconds = (SELECT sum(seconds) FROM spans WHERE spans.session_key = s.id),
        spins = t.spins, total_bet = t.total_bet, total_win = t.total_win, bonus = t.bonus, updated_at = now()
    FROM totals t WHERE s.id = t.session_key
    RETURNING s.id, {_CANDIDATE} AS candidate
),
found AS (
    SELECT (SELECT count(*) FROM inserted) AS stored,
           ARRAY(SELECT id FROM append WHERE candidate UNION ALL SELECT id FROM recompute WHERE candidate
                 ORDER BY 1) AS candidates
)
SELECT stored, set_config('{_STORED}', CAST(stored AS text), true),
       set_config('{_CANDIDATES}', CAST(candidates AS text), true)
FROM found
""")

# The candidates' events through the index: the array as an InitPlan, read once. Written as
# ANY(CAST(current_setting(...) AS bigint[])), PostgreSQL scanned all of play_events and read the
# setting for every row (0.8-1.3 s for 50 candidates over 175,000 events).
_CANDIDATE_EVENTS = (
    f"play_events WHERE session_key = ANY(ARRAY(SELECT unnest(CAST(current_setting('{_CANDIDATES}') AS bigint[]))))"
)

# Claims the trigger of each candidate that _STORE found (in the same pipeline, after it).
_CLAIM_TRIGGER = f"""
WITH seg AS ({_segments(_CANDIDATE_EVENTS)}),
latest AS (
    SELECT DISTINCT ON (session_key) session_key, segment FROM seg ORDER BY session_key, ts DESC
),
continuous AS (
    SELECT seg.session_key, extract(epoch FROM max(seg.ts) - min(seg.ts)) AS seconds
    FROM seg JOIN latest USING (session_key, segment) GROUP BY seg.session_key
)
UPDATE play_sessions s SET trigger_fired_at = now()
FROM continuous c, players p, slots sl
WHERE current_setting('{_CANDIDATES}') <> '{{}}'  -- no candidate (the usual case): nothing runs
  AND s.id = c.session_key AND c.seconds >= %(threshold)s AND s.trigger_fired_at IS NULL
  AND p.id = s.player_key AND sl.id = s.slot_key
RETURNING s.id, s.session_id, s.player_key, p.player_id, s.slot_key, sl.slot_id, c.seconds::float8,
          s.started_at, s.last_event_at
"""
