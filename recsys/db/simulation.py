"""What the player simulator needs to know about a casino: who may play and what there is to play."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa


def simulation_population(engine: sa.Engine, max_players: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """``(player_ids, slot_ids, slot_weights)``: a sample of players (any protection state: the gate
    is part of what the simulation shows) and the active slots weighted by recent play."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000.0})
        players = list(
            conn.execute(
                sa.text("SELECT player_id FROM players ORDER BY random() LIMIT :n"), {"n": max_players}
            ).scalars()
        )
        rows = conn.execute(
            sa.text(
                "SELECT s.slot_id, coalesce(count(p.id), 0) FROM slots s "
                "LEFT JOIN play_sessions p ON p.slot_key = s.id AND p.started_at > now() - interval '30 days' "
                "WHERE s.active GROUP BY s.slot_id ORDER BY s.slot_id"
            )
        ).all()
    slot_ids = [r[0] for r in rows]
    weights = np.array([r[1] for r in rows], dtype=np.float64) + 1.0
    return players, slot_ids, weights / weights.sum()


def loop_figures(engine: sa.Engine, since) -> dict[str, int]:
    """What the service recorded since ``since`` (a wall-clock timestamp): lists by trigger, pushes,
    feedback and sessions attributed to a recommendation."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                """
                SELECT
                  (SELECT count(*) FROM recommendations WHERE created_at >= :since AND trigger = 'api'),
                  (SELECT count(*) FROM recommendations WHERE created_at >= :since AND trigger = 'session_threshold'),
                  (SELECT count(*) FROM recommendations WHERE created_at >= :since AND suppressed_reason IS NOT NULL),
                  (SELECT count(*) FROM feedback WHERE received_at >= :since),
                  (SELECT count(*) FROM play_sessions WHERE updated_at >= :since AND recommendation_id IS NOT NULL),
                  (SELECT count(*) FROM play_sessions WHERE updated_at >= :since AND trigger_fired_at IS NOT NULL)
                """
            ),
            {"since": since},
        ).one()
    names = ("api_lists", "triggered_lists", "suppressed_lists", "feedback", "attributed_sessions", "fired_sessions")
    return dict(zip(names, row, strict=True))
