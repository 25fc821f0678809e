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

The SQL in ``recsys.db.consolidation`` computes exactly this; ``score_sessions`` is the reference
implementation the tests compare it with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.settings import Settings


@dataclass(frozen=True)
class ScoreFormula:
    time_weight: float = 1.0
    spins_weight: float = 0.5
    stake_weight: float = 0.25
    bonus_weight: float = 0.3

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoreFormula:
        return cls(
            time_weight=settings.score_time_weight,
            spins_weight=settings.score_spins_weight,
            stake_weight=settings.score_stake_weight,
            bonus_weight=settings.score_bonus_weight,
        )

    def score(self, seconds: np.ndarray, spins: np.ndarray, stake: np.ndarray, bonus: np.ndarray) -> float:
        """Score of one interaction from its sessions' arrays (each shape ``(n_sessions,)``)."""
        w = np.where(bonus, self.bonus_weight, 1.0)
        return float(
            self.time_weight * np.log1p(np.sum(w * seconds) / 60.0)
            + self.spins_weight * np.log1p(np.sum(w * spins))
            + self.stake_weight * np.log1p(np.sum(w * stake))
        )


def normalize(scores: np.ndarray) -> np.ndarray:
    """One player's scores, shape ``(n,)``, divided by their maximum (all zeros stay zero)."""
    top = scores.max(initial=0.0)
    return scores / top if top > 0 else np.zeros_like(scores)
