"""Pushing triggered recommendations to the players' open streams, across API replicas.

A triggered list that the player should see (games, or a reality check) is announced with
``NOTIFY recsys_push`` **in the transaction that logs it**: PostgreSQL delivers a notification only
when that transaction commits, so every replica hears of exactly the lists that exist, and never of
one that was rolled back. The payload is small JSON, ``{"recommendation_id": ..., "player_id": ...}``:
a replica with no open stream for that player ignores it without a query, and one with a stream
reads the list from ``recommendations`` (:func:`load_pushed`), the same rows a reconnecting client's
replay reads (:func:`replay`). A payload is only a hint: what is delivered is what the table holds
for that player, read by id, with the player's protection fields and each item's availability as
they stand at delivery (``recsys.serving.delivery`` decides what the stream may show).

Notifications reach only the connections listening at that moment. What a stream missed (it was
disconnected, or its replica's LISTEN connection was) is replayed from the table after the
``Last-Event-ID`` the client sends back; see docs/api.md.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import class_row, kwargs_row

from recsys.db.bulk import array_literal

log = logging.getLogger(__name__)

CHANNEL = "recsys_push"

PUSHED = "r.trigger = 'session_threshold' AND (r.suppressed_reason IS NULL OR r.action IS NOT NULL)"
"""The triggered lists a player's stream shows: games, or an action such as a reality check (a list
the gate or the silent late-session policy withheld is logged but never pushed)."""


@dataclass(frozen=True)
class Notice:
    """One notification: which list, for which player."""

    recommendation_id: uuid.UUID
    player_id: str


@dataclass(frozen=True)
class PushedItem:
    slot_id: str
    score: float
    reason: str
    available: bool  # the slot is active and offered in the player's market now (read at delivery)


@dataclass(frozen=True)
class Pushed:
    """A pushed list as stored, for a stream (live or replayed)."""

    recommendation_id: uuid.UUID
    player_id: str
    session_id: str | None
    context_slot_id: str | None
    version_id: int | None
    action: str | None
    suppressed_reason: str | None
    items: tuple[PushedItem, ...]
    # The player's protection fields now (``recsys.serving.gate.Protection``'s, in its order).
    self_excluded_until: datetime | None = None
    cooling_off_until: datetime | None = None
    marketing_consent: bool | None = None
    risk_flag: bool | None = None


async def notify(conn: AsyncConnection, notices: list[Notice]) -> None:
    """Announce lists, in the given order, in the transaction of ``conn``: delivered to the
    listeners when it commits."""
    payloads = (json.dumps({"recommendation_id": str(n.recommendation_id), "player_id": n.player_id}) for n in notices)
    await conn.execute(_NOTIFY, {"channel": CHANNEL, "payloads": array_literal(payloads)})


_NOTIFY = "SELECT recsys_notify(%(channel)s, payload) FROM unnest(CAST(%(payloads)s AS text[])) AS payload"
"""One notification per payload, in the array's order (the order a function scan yields its rows),
signed (``recsys.db.channels``: listeners drop what the application did not sign)."""


# --- what a stream shows --------------------------------------------------------------------------

# Each item's ``available``: the slot is active and offered in the player's market as it stands now
# (their stored market, else the one the list was made for), the test ``recsys.db.lists``' player
# read applies when a list is made.
_SELECT = f"""
    SELECT r.id, p.player_id, ps.session_id, cs.slot_id AS context_slot_id, r.version_id, r.action,
           r.suppressed_reason, p.self_excluded_until, p.cooling_off_until, p.marketing_consent, p.risk_flag,
           ARRAY(SELECT s.slot_id FROM unnest(r.slot_keys) WITH ORDINALITY k(key, rank) JOIN slots s ON s.id = k.key
                 ORDER BY k.rank) AS slot_ids,
           ARRAY(SELECT s.active AND (s.markets IS NULL
                                      OR coalesce(coalesce(p.market, r.market) = ANY(s.markets), false))
                 FROM unnest(r.slot_keys) WITH ORDINALITY k(key, rank) JOIN slots s ON s.id = k.key
                 ORDER BY k.rank) AS available,
           r.scores, r.reasons
    FROM recommendations r
    JOIN players p ON p.id = r.player_key
    LEFT JOIN play_sessions ps ON ps.id = r.session_key
    LEFT JOIN slots cs ON cs.id = r.context_slot_key
    WHERE {PUSHED}
"""


def _pushed(*, id, player_id, session_id, context_slot_id, version_id, action, suppressed_reason,
            self_excluded_until, cooling_off_until, marketing_consent, risk_flag, slot_ids, available, scores,
            reasons) -> Pushed:
    items = tuple(
        PushedItem(slot_id, score, reason, ok)
        for slot_id, score, reason, ok in zip(slot_ids, scores, reasons, available, strict=True)
    )
    return Pushed(id, player_id, session_id, context_slot_id, version_id, action, suppressed_reason, items,
                  self_excluded_until, cooling_off_until, marketing_consent, risk_flag)


PUSH_MAX_AGE_SECONDS = 300
"""A live push delivers only lists logged this recently: a notification arrives within a second of
its list's commit, so an older id in a payload is a replayed or forged one (a client that missed a
list gets it by replay)."""


async def load_pushed(conn: AsyncConnection, notices: list[Notice]) -> list[Pushed]:
    """The noticed lists that are pushed ones, logged less than :data:`PUSH_MAX_AGE_SECONDS` ago,
    each only when it belongs to the player its notice names; oldest first (``created_at``, then
    id). A notice is a hint: a forged one can name only a list the table holds for that player."""
    cursor = conn.cursor(row_factory=kwargs_row(_pushed))
    await cursor.execute(_LOAD_PUSHED, {"ids": [n.recommendation_id for n in notices],
                                        "players": [n.player_id for n in notices], "age": PUSH_MAX_AGE_SECONDS})
    return await cursor.fetchall()


_LOAD_PUSHED = _SELECT + """
    AND (r.id, p.player_id) IN (SELECT * FROM unnest(CAST(%(ids)s AS uuid[]), CAST(%(players)s AS text[])))
    AND r.created_at > now() - make_interval(secs => %(age)s)
    ORDER BY r.created_at, r.id
"""


@dataclass(frozen=True)
class StreamStart:
    """What opening a stream needs to know about a player."""

    player_key: int
    latest: uuid.UUID | None  # the player's latest pushed list, None: none yet


async def stream_start(conn: AsyncConnection, player_id: str) -> StreamStart | None:
    """The player and their latest pushed list; None for an unknown player."""
    cursor = conn.cursor(row_factory=class_row(StreamStart))
    await cursor.execute(_STREAM_START, {"player_id": player_id})
    return await cursor.fetchone()


_STREAM_START = f"""
    SELECT p.id AS player_key,
           (SELECT r.id FROM recommendations r WHERE r.player_key = p.id AND {PUSHED}
            ORDER BY r.created_at DESC, r.id DESC LIMIT 1) AS latest
    FROM players p WHERE p.player_id = %(player_id)s
"""


async def replay(conn: AsyncConnection, player_key: int, after: uuid.UUID | None, limit: int) -> list[Pushed] | None:
    """The player's pushed lists after ``after`` (in ``(created_at, id)`` order), at most the latest
    ``limit``, oldest first; ``after=None``: from the beginning. None when ``after`` is not one of
    this player's pushed lists (the caller cannot tell what the client has seen).
    """
    cursor = conn.cursor(row_factory=kwargs_row(_pushed))
    if after is None:
        await cursor.execute(_REPLAY_ALL, {"p": player_key, "limit": limit})
    else:
        found = await conn.execute(_PLACE, {"id": after, "p": player_key})
        if await found.fetchone() is None:
            return None
        await cursor.execute(_REPLAY_AFTER, {"p": player_key, "limit": limit, "after": after})
    return list(reversed(await cursor.fetchall()))


_PLACE = f"SELECT 1 FROM recommendations r WHERE r.id = %(id)s AND r.player_key = %(p)s AND {PUSHED}"
_REPLAY_ALL = f"""
    SELECT * FROM ({_SELECT} AND r.player_key = %(p)s ORDER BY r.created_at DESC, r.id DESC LIMIT %(limit)s) latest
"""
_REPLAY_AFTER = f"""
    SELECT * FROM ({_SELECT} AND r.player_key = %(p)s
                     AND (r.created_at, r.id) > (SELECT created_at, id FROM recommendations WHERE id = %(after)s)
                   ORDER BY r.created_at DESC, r.id DESC LIMIT %(limit)s) latest
"""


def notice(notification) -> Notice | None:
    """The notice in a notification's payload; None (and a warning) for a malformed one."""
    try:
        payload = json.loads(notification.payload)
        return Notice(uuid.UUID(payload["recommendation_id"]), str(payload["player_id"]))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed %s payload: %r", CHANNEL, notification.payload[:200])
        return None
