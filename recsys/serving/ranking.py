"""Ranking the vetted candidates: ``w * sigmoid(model logit) + (1 - w) * (1 + cos) / 2`` (model
score blended with similarity), a share of the places to exploration, and a provider cap that
keeps the list diverse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.serving.candidates import Candidates, explore_count
from recsys.serving.catalogue import Catalogue, SlotStats
from recsys.settings import Ranking


@dataclass(frozen=True)
class RankedItem:
    slot_key: int
    score: float
    reason: str
    explored: bool


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def rank(
    candidates: Candidates,
    allowed: np.ndarray,
    *,
    k: int,
    catalogue: Catalogue,
    stats: SlotStats,
    config: Ranking,
    logits: np.ndarray | None = None,
) -> list[RankedItem]:
    """The list: exploited primary candidates by score, exploration at evenly spread places, the
    back-up tier if short, every provider at most ``config.provider_cap`` times.

    Parameters
    ----------
    allowed : np.ndarray, shape (len(candidates.all_keys()),) bool
        Which of ``candidates.all_keys()`` survived the database's exclusions.
    logits : np.ndarray, shape (len(candidates.primary),), optional
        The model's logits of the primary candidates for this player (None: not personalised).
    """
    ok = set(candidates.all_keys()[np.asarray(allowed, dtype=bool)].tolist())
    primary_ok = np.array([key in ok for key in candidates.primary.tolist()], dtype=bool)
    scores = _primary_scores(candidates, stats, config, logits)
    order = np.flatnonzero(primary_ok)
    order = order[np.argsort(-scores[order], kind="stable")]

    n_explore = explore_count(k, config.exploration_share)
    per_provider: dict[int, int] = {}
    chosen: set[int] = set()

    def take(keys, item_scores, reasons, explored, limit) -> list[RankedItem]:
        picked: list[RankedItem] = []
        providers = catalogue.providers_of(keys) if len(keys) else np.zeros(0, dtype=np.int32)
        for key, score, reason, provider in zip(keys, item_scores, reasons, providers.tolist(), strict=True):
            if len(picked) >= limit:
                break
            if key in chosen or key not in ok or per_provider.get(provider, 0) >= config.provider_cap:
                continue
            chosen.add(key)
            per_provider[provider] = per_provider.get(provider, 0) + 1
            picked.append(RankedItem(int(key), float(score), reason, explored))
        return picked

    primary_keys = candidates.primary[order].tolist()
    primary_scores = scores[order].tolist()
    primary_reasons = [candidates.primary_reason[i] for i in order.tolist()]
    exploit = take(primary_keys, primary_scores, primary_reasons, False, k - n_explore)
    explore_keys = candidates.explore.tolist()
    explore = take(explore_keys, candidates.draws.tolist(), ["explore"] * len(explore_keys), True, n_explore)
    short = k - len(exploit) - len(explore)
    if short > 0:
        backup_keys = candidates.backup.tolist()
        backup_scores = _popularity_scores(stats, candidates.backup).tolist()
        exploit += take(backup_keys, backup_scores, [candidates.backup_reason] * len(backup_keys), False, short)
    short = k - len(exploit) - len(explore)
    if short > 0:
        explore += take(explore_keys, candidates.draws.tolist(), ["explore"] * len(explore_keys), True, short)
    return _interleave(exploit, explore)


def _primary_scores(candidates: Candidates, stats: SlotStats, config: Ranking, logits) -> np.ndarray:
    """``w * sigmoid(logit) + (1 - w) * (1 + cos) / 2``; a missing term leaves the other alone."""
    n = candidates.primary.size
    similarity = (1.0 + candidates.cosine.astype(np.float64)) / 2.0
    has_similarity = ~np.isnan(similarity)
    if logits is None:
        popularity = _popularity_scores(stats, candidates.primary)
        return np.where(has_similarity, similarity, popularity) if n else np.zeros(0)
    personal = sigmoid(logits)
    has_model = np.isfinite(np.asarray(logits, dtype=np.float64))
    w = config.blend_weight
    blended = w * personal + (1.0 - w) * np.where(has_similarity, similarity, 0.0)
    return np.where(
        has_model & has_similarity,
        blended,
        np.where(has_model, personal, np.where(has_similarity, similarity, 0.0)),
    )


def _popularity_scores(stats: SlotStats, keys: np.ndarray) -> np.ndarray:
    """Distinct players relative to the most played slot, in [0, 1]."""
    players = SlotStats.take(stats.players, keys).astype(np.float64)
    top = float(stats.players.max(initial=0))
    return players / top if top > 0 else np.zeros(players.shape)


def _interleave(exploit: list[RankedItem], explore: list[RankedItem]) -> list[RankedItem]:
    """Exploration items at evenly spread places of the list (``round((j + 1) * n / (e + 1))``)."""
    total = len(exploit) + len(explore)
    places = {min(total - 1, int(round((j + 1) * total / (len(explore) + 1)))) for j in range(len(explore))}
    while len(places) < len(explore):
        places.add(max(set(range(total)) - places))
    out: list[RankedItem] = []
    exploit_iter, explore_iter = iter(exploit), iter(explore)
    for position in range(total):
        out.append(next(explore_iter) if position in places else next(exploit_iter))
    return out
