"""What one served list reads and writes: two statements, each one round trip, both prepared on the
connection (``recsys.db.pool``), awaited by the list's code (``recsys.serving.lists``).

The serving process keeps the slow-changing state in memory (``recsys.serving.state``) and asks
the database per list only what must be exact at that moment:

- :func:`read_player`: the player's protection fields, vector, precomputed top-N, the slots they
  played (the latest seed candidates; those in the exclusion window are never shown), and the
  slots disabled or not offered in their market right now (one query);
- :func:`log_lists`: served lists with their items (one statement, one transaction): a triggered list
  with the events that fired it, and the API's lists by group commit (:class:`GroupCommit`).

Functions return rows as plain dataclasses and numpy arrays; ``recsys.serving`` builds its objects
from them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from psycopg import AsyncConnection
from psycopg.rows import kwargs_row

from recsys.db.bulk import array_literal, nullable_literal, unquoted_literal
from recsys.db.engine import DatabaseUnavailable
from recsys.errors import NotFound
from recsys.served import ServedList

if TYPE_CHECKING:
    from recsys.db.pool import OnlinePool

RECENT_SLOTS = 5
"""Latest distinct slots of a player whose mean vector seeds candidates when there is no context."""


# --- the player and what they may be shown ------------------------------------------------------


@dataclass(frozen=True)
class PlayerRow:
    key: int
    player_id: str
    market: str | None
    self_excluded_until: datetime | None
    cooling_off_until: datetime | None
    marketing_consent: bool | None
    risk_flag: bool | None
    towers: dict[str, np.ndarray] | None  # the version's vectors: {"gmf": (f,), "mlp": (f',)}; None: none
    recent_keys: np.ndarray  # (r,) int64, latest first
    top_n_keys: np.ndarray  # (n,) int64, the version's precomputed list, best first
    played_keys: np.ndarray  # (p,) int64: slots the player may not be shown again (ever, or within the window)
    hidden_keys: np.ndarray  # (h,) int64: slots disabled now, or not offered in the player's market

    def allowed_by_key(self, offered: np.ndarray) -> np.ndarray:
        """By key, the slots this player may be shown: ``offered`` (by key, bool: what the serving
        catalogue offers in their market) less the played (as the exclusion setting counts them) and
        hidden keys. Shape (len(offered),), bool, a new array: one per list, then every membership
        test is an index (two ``np.isin`` per list cost more than the rest of the ranking, measured)."""
        mask = offered.copy()
        for keys in (self.played_keys, self.hidden_keys):
            mask[keys[keys < mask.size]] = False  # a slot the serving catalogue does not know yet is not offered
        return mask


# One statement, one round trip: the player, their version vectors and top-N, the slots they played
# (latest first: the recent ones seed candidates; those inside the exclusion window are excluded),
# and the slots nobody may be shown in their market right now (disabled, or restricted to other
# markets: a player with no market sees only slots offered everywhere). The last reads the partial
# index ``ix_slots_hidden`` (migration 0007), so its cost does not grow with the catalogue.
_PLAYER = """
    SELECT p.id AS key, p.player_id, p.market, p.self_excluded_until, p.cooling_off_until, p.marketing_consent,
           p.risk_flag, CAST(e.gmf AS real[]) AS gmf, CAST(e.mlp AS real[]) AS mlp,
           e.player_key IS NOT NULL AS has_vector, o.slot_keys AS top_n, pl.keys AS played, pl.excluded,
           ARRAY(
               SELECT s.id FROM slots s
               WHERE (NOT s.active OR s.markets IS NOT NULL)
                 AND (NOT s.active OR NOT coalesce(coalesce(p.market, CAST(%(market)s AS varchar)) = ANY(s.markets),
                                                   false))
           ) AS hidden
    FROM players p
    LEFT JOIN player_embeddings e ON e.version_id = %(version)s AND e.player_key = p.id
    LEFT JOIN offline_recommendations o ON o.version_id = %(version)s AND o.player_key = p.id
    LEFT JOIN LATERAL (
        SELECT array_agg(t.slot_key ORDER BY t.last DESC, t.slot_key) AS keys,
               array_agg(t.slot_key) FILTER (
                   WHERE CAST(%(days)s AS integer) IS NULL OR t.last >= now() - make_interval(days => %(days)s)
               ) AS excluded
        FROM (SELECT ps.slot_key, max(ps.started_at) AS last FROM play_sessions ps
              WHERE ps.player_key = p.id GROUP BY ps.slot_key) t
    ) pl ON true
    WHERE p.player_id = %(player_id)s
"""


async def read_player(
    conn: AsyncConnection, player_id: str, version_id: int | None, *, market: str | None, played_days: int | None
) -> PlayerRow:
    """Everything one list needs of ``player_id``. ``market``: the market of a player who has none
    stored; ``played_days``: the exclusion window (None: a slot once played is never shown again).
    Raises :class:`NotFound` for an unknown player."""
    cursor = conn.cursor(row_factory=kwargs_row(_player_row))
    await cursor.execute(_PLAYER, {"player_id": player_id, "version": version_id, "market": market,
                                   "days": played_days})
    player = await cursor.fetchone()
    if player is None:
        raise NotFound("player", player_id)
    return player


def _player_row(*, key, player_id, market, self_excluded_until, cooling_off_until, marketing_consent, risk_flag,
                gmf, mlp, has_vector, top_n, played, excluded, hidden) -> PlayerRow:
    towers = None
    if has_vector:
        towers = {name: np.asarray(value, dtype=np.float32) for name, value in (("gmf", gmf), ("mlp", mlp))
                  if value is not None}
    played = played or []
    return PlayerRow(
        key=key,
        player_id=player_id,
        market=market,
        self_excluded_until=self_excluded_until,
        cooling_off_until=cooling_off_until,
        marketing_consent=marketing_consent,
        risk_flag=risk_flag,
        towers=towers,
        recent_keys=np.asarray(played[:RECENT_SLOTS], dtype=np.int64),
        top_n_keys=np.asarray(top_n or [], dtype=np.int64),
        played_keys=np.asarray(excluded or [], dtype=np.int64),
        hidden_keys=np.asarray(hidden or [], dtype=np.int64),
    )


# --- logging what was served ----------------------------------------------------------------------


# One statement for any number of lists, so one implicit transaction and one round trip. Its steps:
# - commit_mode: ``set_config(..., true)`` sets ``synchronous_commit`` for this transaction only; the
#   INSERT reads it, which makes PostgreSQL evaluate it before anything is written;
# - the lists, one row each, from one array per column; a list's items are four arrays of its row
#   (migration 0015), each sent as one text element (``{3,17,5}``) of a text array and cast here.
_LOG = """
WITH commit_mode AS MATERIALIZED (
    SELECT set_config('synchronous_commit', %(commit_mode)s, true) AS mode
)
INSERT INTO recommendations
    (id, player_key, version_id, trigger, context_slot_key, market, suppressed_reason, filters, session_key, action,
     experiment_id, arm, slot_keys, scores, reasons, explored)
SELECT l.id, l.player_key, l.version_id, l.trigger, l.context_slot_key, l.market, l.suppressed_reason, l.filters,
       l.session_key, l.action, l.experiment_id, l.arm, CAST(l.slot_keys AS integer[]), CAST(l.scores AS float8[]),
       CAST(l.reasons AS varchar[]), CAST(l.explored AS boolean[])
FROM commit_mode, unnest(
    CAST(%(ids)s AS uuid[]), CAST(%(players)s AS bigint[]), CAST(%(versions)s AS integer[]),
    CAST(%(triggers)s AS varchar[]), CAST(%(contexts)s AS integer[]), CAST(%(markets)s AS varchar[]),
    CAST(%(suppressed)s AS varchar[]), CAST(%(filters)s AS jsonb[]), CAST(%(sessions)s AS bigint[]),
    CAST(%(actions)s AS varchar[]), CAST(%(experiments)s AS integer[]), CAST(%(arms)s AS varchar[]),
    CAST(%(keys)s AS text[]), CAST(%(scores)s AS text[]), CAST(%(reasons)s AS text[]), CAST(%(explored)s AS text[])
) AS l(id, player_key, version_id, trigger, context_slot_key, market, suppressed_reason, filters, session_key,
       action, experiment_id, arm, slot_keys, scores, reasons, explored)
"""


async def log_lists(conn: AsyncConnection, lists: Sequence[ServedList], *, synchronous_commit: bool = False) -> None:
    """The lists with their items in one statement (one transaction): all or none.

    Run in autocommit, or in a transaction of the caller's (the session tracker logs a triggered
    list with the events that fired it): then the setting applies to that whole transaction, so
    such a caller passes ``synchronous_commit=True``. ``synchronous_commit=False`` commits without
    waiting for the WAL flush (``synchronous_commit = off`` for this transaction only): the write
    is atomic and survives a crash of the API, but a crash of PostgreSQL itself may lose the last
    ~0.6 s of lists (3 x ``wal_writer_delay``). Waiting for the flush costs an fsync per request
    (bench/bench_api.py measures both).
    """
    await conn.execute(_LOG, {
        "commit_mode": "on" if synchronous_commit else "off",
        # Text literals (see recsys.db.bulk.unquoted_literal); a list's items' arrays are elements
        # of a text array (quoted: ``{"{3,17}","{}"}``), none of their elements needing quotes.
        "ids": unquoted_literal(str(s.recommendation_id) for s in lists),
        "players": unquoted_literal(str(s.player_key) for s in lists),
        "versions": unquoted_literal(_number(s.version_id) for s in lists),
        "triggers": array_literal(s.trigger for s in lists),
        "contexts": unquoted_literal(_number(s.context_slot_key) for s in lists),
        "markets": nullable_literal(s.market for s in lists),
        "suppressed": nullable_literal(s.suppressed for s in lists),
        "filters": array_literal(json.dumps(s.filters) for s in lists),
        "sessions": unquoted_literal(_number(s.session_key) for s in lists),
        "actions": nullable_literal(s.action for s in lists),
        "experiments": unquoted_literal(_number(s.experiment_id) for s in lists),
        "arms": nullable_literal(s.arm for s in lists),
        "keys": array_literal(unquoted_literal(str(int(i.slot_key)) for i in s.items) for s in lists),
        "scores": array_literal(unquoted_literal(repr(float(i.score)) for i in s.items) for s in lists),  # exact
        "reasons": array_literal(unquoted_literal(i.reason for i in s.items) for s in lists),  # plain words
        "explored": array_literal(unquoted_literal("t" if i.explored else "f" for i in s.items) for s in lists),
    })


def _number(value: int | None) -> str:
    return "NULL" if value is None else str(int(value))


class GroupCommit:
    """The API's lists, logged by group commit: the lists of concurrent requests are written by one
    statement and one commit, and each request is answered after that commit (a list is logged
    before it is answered, as with a write of its own).

    No timer: while one group is being written, the lists that arrive wait and form the next group,
    so a lone request is written at once and a busy process writes more lists per statement. A
    group that fails fails each of its requests (with the error: a 503 for a lost database), and
    writes none of its lists.
    """

    def __init__(self, pool: OnlinePool, *, synchronous_commit: bool) -> None:
        self.pool = pool
        self.synchronous_commit = synchronous_commit
        self._waiting: list[tuple[ServedList, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def log(self, served: ServedList) -> None:
        """Return once ``served`` is committed (in a group with the lists logged meanwhile)."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((served, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                await self._commit(group)
        finally:
            self._writer = None

    async def _commit(self, group: list[tuple[ServedList, asyncio.Future]]) -> None:
        try:
            async with self.pool.connection() as conn:
                await log_lists(conn, [served for served, _ in group], synchronous_commit=self.synchronous_commit)
        except Exception as exc:
            if len(group) > 1 and not isinstance(exc, DatabaseUnavailable):
                for one in group:  # a list the database refuses (a player deleted meanwhile) fails alone
                    await self._commit([one])
                return
            for _, done in group:
                if not done.done():
                    done.set_exception(exc)
        else:
            for _, done in group:
                if not done.done():
                    done.set_result(None)
