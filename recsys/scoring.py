"""How play becomes a score: the documented, configurable consolidation formula.

An **interaction** is one player x slot x UTC day (the day a session started). Each session's
contribution is weighted by ``w = bonus_weight`` when it was bonus/promotion play (forced play says
little about taste) and ``w = 1`` otherwise. With the weighted sums over the day's sessions::

    minutes = sum(w * seconds) / 60
    spins   = sum(w * spins)
    stake   = sum(w * total_bet)
    score   = time_weight * ln(1 + minutes) + spins_weight * ln(1 + spins) + stake_weight * ln(1 + stake)

Logarithms because play is heavy-tailed: a 4-hour session says more than a 4-minute one, not 60x
more. The **normalized score** is ``score / max(score of the same player's interactions)``, so it
lies in [0, 1] and measures a slot-day against the player's own play, not against whales.

The weights are ``settings.scoring`` (``recsys.settings.Scoring``). The SQL in
``recsys.db.consolidation`` computes exactly this; ``score_sessions`` is the reference
implementation the tests compare it with.
"""

from __future__ import annotations

import numpy as np

from recsys.settings import Scoring


def score_sessions(
    formula: Scoring, seconds: np.ndarray, spins: np.ndarray, stake: np.ndarray, bonus: np.ndarray
) -> float:
    """Score of one interaction from its sessions' arrays (each shape ``(n_sessions,)``)."""
    w = np.where(bonus, formula.bonus_weight, 1.0)
    return float(
        formula.time_weight * np.log1p(np.sum(w * seconds) / 60.0)
        + formula.spins_weight * np.log1p(np.sum(w * spins))
        + formula.stake_weight * np.log1p(np.sum(w * stake))
    )


def normalize(scores: np.ndarray) -> np.ndarray:
    """One player's scores, shape ``(n,)``, divided by their maximum (all zeros stay zero)."""
    top = scores.max(initial=0.0)
    return scores / top if top > 0 else np.zeros_like(scores)
