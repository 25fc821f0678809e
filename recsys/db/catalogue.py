"""What the serving process keeps in memory, read whole: the catalogue's rows and the per-slot counts;
and the pgvector search that stands in for the in-memory index until a version is loaded.

Functions return rows and arrays; ``recsys.serving.catalogue`` builds the arrays by key from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from psycopg import AsyncConnection

CHANNEL = "recsys_catalogue"
"""Sent by a trigger on ``slots`` after every changing statement (migration 0002)."""


def load_slots(engine: sa.Engine) -> list[tuple]:
    """Every slot as ``(key, slot_id, provider, theme, volatility, active, markets)``; ``markets``
    a tuple, or None: offered in every market."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, slot_id, provider, theme, volatility, active, markets FROM slots")
        ).all()
    return [(*r[:6], _tuple(r[6])) for r in rows]


def _tuple(markets: list[str] | None) -> tuple[str, ...] | None:
    return None if markets is None else tuple(markets)


@dataclass(frozen=True)
class SlotCounts:
    """Counts by slot key (``{key: count}``; a slot missing has none)."""

    players: dict[int, int]  # distinct players in the popularity window
    impressions: dict[int, int]
    successes: dict[int, int]  # distinct recommendations clicked or played


def load_counts(engine: sa.Engine, popularity_days: int) -> SlotCounts:
    """Distinct players per slot over the last ``popularity_days`` days of play, which end at the
    latest session (now, on a live casino; the end of an imported history otherwise: a history older
    than the window still has a popularity); impressions and successes (distinct recommendations
    clicked or played) per slot over all feedback."""
    with engine.connect() as conn:
        played = conn.execute(
            sa.text(
                "SELECT slot_key, count(DISTINCT player_key) FROM play_sessions "
                "WHERE started_at >= least((SELECT max(started_at) FROM play_sessions), now())"
                " - make_interval(days => :days) GROUP BY slot_key"
            ),
            {"days": popularity_days},
        ).all()
        feedback = conn.execute(
            sa.text(
                "SELECT slot_key, count(*) FILTER (WHERE action = 'impression'), "
                "count(DISTINCT recommendation_id) FILTER (WHERE action IN ('click', 'play')) "
                "FROM feedback GROUP BY slot_key"
            )
        ).all()
    return SlotCounts(
        players={r[0]: r[1] for r in played},
        impressions={r[0]: r[1] for r in feedback},
        successes={r[0]: r[2] for r in feedback},
    )


async def similar_by_pgvector(
    conn: AsyncConnection, version_id: int, slot_key: int, k: int, market: str | None, *, every_market: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``k`` slots of a version closest to ``slot_key`` by cosine (``<=>``), the slot itself,
    disabled slots and slots outside ``market`` left out (``every_market``: no market filter).

    Returns ``(keys (m,) int64, cosines (m,) float32)``, best first, or None when the slot has no
    vector in the version. One round trip: the search, and whether the slot has a vector, in a pipeline.
    """
    params = {"v": version_id, "key": slot_key}
    async with conn.pipeline():
        found = await conn.execute(_SIMILAR, {**params, "k": k, "market": market, "every": every_market})
        has_vector = await conn.execute(_HAS_VECTOR, params)
    rows = await found.fetchall()
    if not rows and not (await has_vector.fetchone())[0]:
        return None
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float32)


_SIMILAR = """
    WITH q AS (SELECT similarity FROM slot_embeddings WHERE version_id = %(v)s AND slot_key = %(key)s)
    SELECT e.slot_key, 1 - (e.similarity <=> q.similarity) AS cosine
    FROM q, slot_embeddings e JOIN slots s ON s.id = e.slot_key
    WHERE e.version_id = %(v)s AND e.slot_key <> %(key)s AND s.active
      AND (%(every)s OR s.markets IS NULL OR CAST(%(market)s AS varchar) = ANY(s.markets))
    ORDER BY e.similarity <=> q.similarity, e.slot_key
    LIMIT %(k)s
"""
_HAS_VECTOR = "SELECT EXISTS (SELECT 1 FROM slot_embeddings WHERE version_id = %(v)s AND slot_key = %(key)s)"
