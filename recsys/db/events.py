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
   ``UPDATE ... WHERE trigger_fired_at IS NULL``: under the row lock exactly one batch wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import sqlalchemy as sa

from recsys.db.engine import driver
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


def store_events(
    conn: sa.Connection,
    events: list[PlayEvent],
    *,
    pause_seconds: float,
    threshold_seconds: float,
    source: str = "events",
) -> IngestResult:
    """Store a validated batch in ``conn``'s transaction; see the module docstring for the steps.

    Five round trips at most, each statement prepared once per connection: the keys, the sessions
    (created, then locked: one pipeline), the events, the sessions' update with the trigger
    candidates (one pipeline), and the claim when a session may have reached the threshold.
    """
    with driver(conn) as raw:
        return _store(raw, events, pause_seconds, threshold_seconds, source)


def _store(raw, events: list[PlayEvent], pause_seconds: float, threshold_seconds: float, source: str) -> IngestResult:
    players, slots = _keys(raw, {e.player_id for e in events}, {e.slot_id for e in events})
    for index, event in enumerate(events):
        if event.player_id not in players:
            raise InputError(source, f"unknown player {event.player_id!r}", index=index, field="player_id")
        if event.slot_id not in slots:
            raise InputError(source, f"unknown slot {event.slot_id!r}", index=index, field="slot_id")

    first_ts: dict[str, tuple[datetime, int, int]] = {}
    for event in events:
        ts, p, s = first_ts.get(event.session_id, (event.ts, players[event.player_id], slots[event.slot_id]))
        first_ts[event.session_id] = (min(ts, event.ts), p, s)
    # In session_id order: two batches creating the same sessions take the unique-index locks in the
    # same order and cannot deadlock.
    first_ts = dict(sorted(first_ts.items()))
    created = {
        "ids": list(first_ts),
        "players": [v[1] for v in first_ts.values()],
        "slots": [v[2] for v in first_ts.values()],
        "ts": [v[0] for v in first_ts.values()],
    }
    with raw.pipeline():
        raw.execute(_CREATE_SESSIONS, created, prepare=True)
        locked = raw.execute(_LOCK_SESSIONS, {"ids": created["ids"]}, prepare=True)
    sessions = {row.session_id: row for row in map(_SessionRow._make, locked.fetchall())}
    for index, event in enumerate(events):
        session = sessions[event.session_id]
        if (session.player_key, session.slot_key) != (players[event.player_id], slots[event.slot_id]):
            field = "player_id" if session.player_key != players[event.player_id] else "slot_id"
            raise InputError(
                source, f"session {event.session_id!r} belongs to another player or slot", index=index, field=field
            )

    unique = list({e.event_id: e for e in events}.values())
    _check_totals(events, sessions, source)
    inserted = raw.execute(_INSERT_EVENTS, _event_arrays(unique, sessions), prepare=True).fetchall()
    # A session whose new events all come after its latest stored one is updated from those events
    # alone (continuous seconds add up pair by pair); one that got an event in its past is recomputed.
    latest = {row.id: row.last_event_at for row in sessions.values()}
    earliest_new: dict[int, datetime] = {}
    for key, ts, _ in inserted:
        earliest_new[key] = min(ts, earliest_new.get(key, ts))
    touched = sorted(earliest_new)
    in_order = [key for key in touched if earliest_new[key] >= latest[key]]
    past = [key for key in touched if earliest_new[key] < latest[key]]
    triggered: list[TriggeredSession] = []
    if touched:
        with raw.pipeline():
            if in_order:
                appended = {event_id for key, _, event_id in inserted if key in set(in_order)}
                new = [e for e in unique if e.event_id in appended]
                raw.execute(_APPEND, {**_event_arrays(new, sessions), "pause": pause_seconds}, prepare=True)
            if past:
                raw.execute(_RECOMPUTE, {"keys": past, "pause": pause_seconds}, prepare=True)
            # Only a session not yet fired whose whole span reaches the threshold can have reached it
            # continuously: the others skip the window functions over their events.
            found = raw.execute(_CANDIDATES, {"keys": touched, "threshold": threshold_seconds}, prepare=True)
        candidates = [row[0] for row in found.fetchall()]
        if candidates:
            rows = raw.execute(
                _CLAIM_TRIGGER, {"keys": candidates, "threshold": threshold_seconds, "pause": pause_seconds},
                prepare=True,
            ).fetchall()
            triggered = [TriggeredSession(*row) for row in rows]
    return IngestResult(accepted=len(inserted), duplicates=len(events) - len(inserted), triggered=triggered)


class _SessionRow(NamedTuple):
    id: int
    session_id: str
    player_key: int
    slot_key: int
    last_event_at: datetime
    total_bet: Decimal
    total_win: Decimal


_CREATE_SESSIONS = """
INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at)
SELECT * FROM unnest(CAST(%(ids)b AS text[]), CAST(%(players)b AS bigint[]), CAST(%(slots)b AS int[]),
                     CAST(%(ts)b AS timestamptz[]), CAST(%(ts)b AS timestamptz[]))
ON CONFLICT (session_id) DO NOTHING
"""

_LOCK_SESSIONS = """
SELECT id, session_id, player_key, slot_key, last_event_at, total_bet, total_win FROM play_sessions
WHERE session_id = ANY(CAST(%(ids)b AS text[])) ORDER BY id FOR UPDATE
"""

_INSERT_EVENTS = """
INSERT INTO play_events (event_id, session_key, type, ts, bet, win, bonus)
SELECT * FROM unnest(CAST(%(ids)b AS text[]), CAST(%(sessions)b AS bigint[]), CAST(%(types)b AS text[]),
                     CAST(%(ts)b AS timestamptz[]), CAST(%(bets)b AS numeric[]), CAST(%(wins)b AS numeric[]),
                     CAST(%(bonus)b AS boolean[]))
ON CONFLICT (event_id) DO NOTHING RETURNING session_key, ts, event_id
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


def _event_arrays(events: list[PlayEvent], sessions: dict) -> dict[str, list]:
    """The ``unnest`` parameters of a list of events (one array per column)."""
    return {
        "ids": [e.event_id for e in events],
        "sessions": [sessions[e.session_id].id for e in events],
        "types": [e.type for e in events],
        "ts": [e.ts for e in events],
        "bets": [e.bet for e in events],
        "wins": [e.win for e in events],
        "bonus": [e.bonus for e in events],
    }


def _keys(raw, player_ids: set[str], slot_ids: set[str]) -> tuple[dict[str, int], dict[str, int]]:
    """The keys of the named players and slots (those that exist), in one round trip."""
    rows = raw.execute(_KEYS, {"players": list(player_ids), "slots": list(slot_ids)}, prepare=True).fetchall()
    return ({i: key for kind, i, key in rows if kind == "p"}, {i: key for kind, i, key in rows if kind == "s"})


_KEYS = """
SELECT 'p', player_id, id FROM players WHERE player_id = ANY(CAST(%(players)b AS text[]))
UNION ALL
SELECT 's', slot_id, id FROM slots WHERE slot_id = ANY(CAST(%(slots)b AS text[]))
"""


# Continuous segments: a new segment starts at the first event and after every pause > pause seconds.
_SEGMENTS = """
SELECT session_key, ts,
       sum(CASE WHEN prev IS NULL OR extract(epoch FROM ts - prev) > %(pause)s THEN 1 ELSE 0 END)
           OVER (PARTITION BY session_key ORDER BY ts, event_id) AS segment
FROM (SELECT session_key, ts, event_id, lag(ts) OVER (PARTITION BY session_key ORDER BY ts, event_id) AS prev
      FROM play_events WHERE session_key = ANY(%(keys)b)) e
"""

_RECOMPUTE = f"""
WITH seg AS ({_SEGMENTS}),
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
    FROM play_events WHERE session_key = ANY(%(keys)b) GROUP BY session_key
)
UPDATE play_sessions s
SET started_at = t.started_at, last_event_at = t.last_event_at, ended_at = t.ended_at,
    seconds = (SELECT sum(seconds) FROM spans WHERE spans.session_key = s.id),
    spins = t.spins, total_bet = t.total_bet, total_win = t.total_win, bonus = t.bonus, updated_at = now()
FROM totals t WHERE s.id = t.session_key
"""

# Events appended after a session's latest: the gaps between consecutive events (the first one's
# predecessor is the stored latest) that are not pauses add to the continuous seconds.
_APPEND = """
WITH new AS (
    SELECT * FROM unnest(CAST(%(ids)b AS text[]), CAST(%(sessions)b AS bigint[]), CAST(%(types)b AS text[]),
                         CAST(%(ts)b AS timestamptz[]), CAST(%(bets)b AS numeric[]), CAST(%(wins)b AS numeric[]),
                         CAST(%(bonus)b AS boolean[])) AS n(event_id, session_key, type, ts, bet, win, bonus)
),
gaps AS (
    SELECT n.*, extract(epoch FROM n.ts - coalesce(lag(n.ts) OVER w, s.last_event_at)) AS gap
    FROM new n JOIN play_sessions s ON s.id = n.session_key
    WINDOW w AS (PARTITION BY n.session_key ORDER BY n.ts, n.event_id)
),
totals AS (
    SELECT session_key, sum(CASE WHEN gap <= %(pause)s THEN gap ELSE 0 END) AS seconds, max(ts) AS last_event_at,
           max(ts) FILTER (WHERE type = 'end') AS ended_at, count(*) FILTER (WHERE type = 'spin') AS spins,
           coalesce(sum(bet), 0) AS total_bet, coalesce(sum(win), 0) AS total_win,
           coalesce(bool_or(bonus), false) AS bonus
    FROM gaps GROUP BY session_key
)
UPDATE play_sessions s
SET last_event_at = greatest(s.last_event_at, t.last_event_at), ended_at = greatest(s.ended_at, t.ended_at),
    seconds = s.seconds + t.seconds, spins = s.spins + t.spins, total_bet = s.total_bet + t.total_bet,
    total_win = s.total_win + t.total_win, bonus = s.bonus OR t.bonus, updated_at = now()
FROM totals t WHERE s.id = t.session_key
"""

_CANDIDATES = """
SELECT id FROM play_sessions
WHERE id = ANY(%(keys)b) AND trigger_fired_at IS NULL
  AND last_event_at - started_at >= make_interval(secs => %(threshold)s)
ORDER BY id
"""

_CLAIM_TRIGGER = f"""
WITH seg AS ({_SEGMENTS}),
latest AS (
    SELECT DISTINCT ON (session_key) session_key, segment FROM seg ORDER BY session_key, ts DESC
),
continuous AS (
    SELECT seg.session_key, extract(epoch FROM max(seg.ts) - min(seg.ts)) AS seconds
    FROM seg JOIN latest USING (session_key, segment) GROUP BY seg.session_key
)
UPDATE play_sessions s SET trigger_fired_at = now()
FROM continuous c, players p, slots sl
WHERE s.id = c.session_key AND c.seconds >= %(threshold)s AND s.trigger_fired_at IS NULL
  AND p.id = s.player_key AND sl.id = s.slot_key
RETURNING s.id, s.session_id, s.player_key, p.player_id, s.slot_key, sl.slot_id, c.seconds::float8,
          s.started_at, s.last_event_at
"""
