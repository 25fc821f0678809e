"""Ranking the vetted candidates: ``w * sigmoid(model logit) + (1 - w) * (1 + cos) / 2`` (model
score blended with similarity), a share of the places to exploration, and a provider cap that
keeps the list diverse."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat

import numpy as np

from recsys.served import ServedItem
from recsys.serving.candidates import Candidates, explore_count
from recsys.serving.catalogue import Catalogue, SlotStats
from recsys.settings import Ranking


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
) -> list[ServedItem]:
    """The list: exploited primary candidates by score, exploration at evenly spread places, the
    back-up tier if short, every provider at most ``config.provider_cap`` times.

    Parameters
    ----------
    allowed : np.ndarray, shape (len(candidates.all_keys()),) bool
        Which of ``candidates.all_keys()`` survived the database's exclusions.
    catalogue : Catalogue
        The one the candidates were generated from (their keys index its arrays).
    logits : np.ndarray, shape (len(candidates.primary),), optional
        The model's logits of the primary candidates for this player (None: not personalised).
    """
    ok = np.zeros(catalogue.active.size, dtype=bool)  # by key: candidates are keys of this catalogue
    ok[candidates.all_keys()[np.asarray(allowed, dtype=bool)]] = True
    scores = _primary_scores(candidates, stats, config, logits)
    order = ok[candidates.primary].nonzero()[0]
    order = order[(-scores[order]).argsort(kind="stable")]

    n_explore = explore_count(k, config.exploration_share)
    per_provider: dict[int, int] = {}
    slots = catalogue.slots
    chosen: set[int] = set()

    def take(keys: np.ndarray, item_scores: np.ndarray, reasons: Iterable[str], explored, limit) -> list[ServedItem]:
        """Up to ``limit`` of ``keys`` (allowed ones, in order) not chosen yet and within the provider cap."""
        picked: list[ServedItem] = []
        if limit <= 0:
            return picked
        providers = catalogue.providers_of(keys).tolist()
        # ``reasons`` is lazy (read only as far as the loop goes) or endless (``repeat``).
        for key, score, reason, provider in zip(keys.tolist(), item_scores.tolist(), reasons, providers, strict=False):
            if key in chosen or per_provider.get(provider, 0) >= config.provider_cap:
                continue
            chosen.add(key)
            per_provider[provider] = per_provider.get(provider, 0) + 1
            picked.append(ServedItem(key, slots[key].slot_id, score, reason, explored))
            if len(picked) >= limit:
                break
        return picked

    primary_reasons = (candidates.primary_reason[i] for i in order.tolist())
    exploit = take(candidates.primary[order], scores[order], primary_reasons, False, k - n_explore)
    explorable = ok[candidates.explore]
    explore_keys, draws = candidates.explore[explorable], candidates.draws[explorable]
    explore = take(explore_keys, draws, repeat("explore"), True, n_explore)
    short = k - len(exploit) - len(explore)
    if short > 0:
        backup = candidates.backup[ok[candidates.backup]]
        exploit += take(backup, _popularity_scores(stats, backup), repeat(candidates.backup_reason), False, short)
    short = k - len(exploit) - len(explore)
    if short > 0:
        explore += take(explore_keys, draws, repeat("explore"), True, short)
    return _interleave(exploit, explore)


def _primary_scores(candidates: Candidates, stats: SlotStats, config: Ranking, logits) -> np.ndarray:
    """``w * sigmoid(logit) + (1 - w) * (1 + cos) / 2``; a missing term leaves the other alone."""
    n = candidates.primary.size
    similarity = (1.0 + candidates.cosine.astype(np.float64)) / 2.0
    has_similarity = ~np.isnan(similarity)
    if logits is None:
        popularity = _popularity_scores(stats, candidates.primary)
        return np.where(has_similarity, similarity, popularity) if n else np.zeros(0)
    logits = np.asarray(logits, dtype=np.float64)
    personal = sigmoid(logits)
    similar = np.where(has_similarity, similarity, 0.0)
    w = config.blend_weight
    blended = w * personal + (1.0 - w) * similar
    return np.where(np.isfinite(logits), np.where(has_similarity, blended, personal), similar)


def _popularity_scores(stats: SlotStats, keys: np.ndarray) -> np.ndarray:
    """Distinct players relative to the most played slot, in [0, 1]."""
    players = SlotStats.take(stats.players, keys).astype(np.float64)
    top = float(stats.players.max(initial=0))
    return players / top if top > 0 else np.zeros(players.shape)


def _interleave(exploit: list[ServedItem], explore: list[ServedItem]) -> list[ServedItem]:
    """Exploration items at evenly spread places of the list (``round((j + 1) * n / (e + 1))``)."""
    total = len(exploit) + len(explore)
    places = {min(total - 1, int(round((j + 1) * total / (len(explore) + 1)))) for j in range(len(explore))}
    while len(places) < len(explore):
        places.add(max(set(range(total)) - places))
    out: list[ServedItem] = []
    exploit_iter, explore_iter = iter(exploit), iter(explore)
    for position in range(total):
        out.append(next(explore_iter) if position in places else next(exploit_iter))
    return out
