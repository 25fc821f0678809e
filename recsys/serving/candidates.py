"""Candidates for one list: the FAISS neighbourhood of the context slot (or of the player's recent
slots), the player's precomputed top-N, the popularity list as a back-up, and an exploration pool
drawn by Thompson sampling on feedback counts. The database then removes what the player has
played and what is disabled or not offered in the market (``recsys.db.lists.read_player``
reads them with the player; ``PlayerRow.allowed_by_key`` applies them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

from recsys.ncf.vectors import normalize_rows
from recsys.serving.catalogue import Catalogue, SlotStats
from recsys.serving.model import ServingModel
from recsys.settings import Ranking

EXPLORE_SAMPLE = 512
"""Thompson sampling draws for a uniform sample of at most this many pool slots per list: a Beta draw
for each of 5,000 slots costs 0.6 ms, most of a list's CPU time (measured). The ranking settings
(``recsys.settings.Ranking``, ``settings.ranking``) are the rest of the policy's configuration."""

EXPLORE_BANK = 256
"""Thompson draws an :class:`ExploreBank` keeps (per snapshot and market): about 256 kB."""

EXPLORE_DEPTH = 64
"""Slots kept of each banked draw, best first: a list of ``k`` places with ``e`` to exploration reads
``k + 4 e + 8`` of them (22 for the default 10 and 1), plus its context slot."""


@dataclass(frozen=True)
class Candidates:
    """Everything one list may be made from; ``all_keys()`` is what the database must vet.

    ``primary`` keys come with their ``reason`` and cosine to the query (``nan`` without a query);
    ``backup`` (popularity order) fills a list that the primary tier cannot; ``explore`` is the
    Thompson draw's order with its ``draws``.
    """

    source: str  # context, recent, top_n, popular: what the primary tier came from
    primary: np.ndarray
    primary_reason: tuple[str, ...]
    cosine: np.ndarray
    backup: np.ndarray
    backup_reason: str
    explore: np.ndarray
    draws: np.ndarray
    _all_keys: np.ndarray = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        everything = np.concatenate([self.primary, self.explore, self.backup]).astype(np.int64, copy=False)
        first = np.ones(everything.size, dtype=bool)
        first[_repeats(everything)] = False
        object.__setattr__(self, "_all_keys", everything[first])

    def all_keys(self) -> np.ndarray:
        """Every candidate key once, in the order listed (int64; made once, do not modify)."""
        return self._all_keys


def explore_count(k: int, share: float) -> int:
    """Places of a ``k``-list that exploration gets: ``round(k * share)``, half up."""
    return int(math.floor(k * share + 0.5))


def thompson_draws(successes: np.ndarray, impressions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per slot from its Beta(1 + successes, 1 + impressions - successes) posterior."""
    failures = np.maximum(impressions - successes, 0)
    return rng.beta(1.0 + successes, 1.0 + failures)


def generate_candidates(
    *,
    k: int,
    catalogue: Catalogue,
    stats: SlotStats,
    popular: np.ndarray,
    model: ServingModel | None,
    market: str | None,
    context_key: int | None,
    recent_keys: np.ndarray,
    top_n_keys: np.ndarray,
    personalised: bool,
    config: Ranking,
    rng: np.random.Generator,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    explore: ExploreBank | None = None,
) -> Candidates:
    """Candidates for one list.

    Parameters
    ----------
    popular : np.ndarray
        Active keys by popularity (:func:`popularity_order`).
    model : ServingModel, optional
        The version in memory; without it the primary tier is ``neighbours`` (from pgvector) or
        the popularity list.
    context_key : int, optional
        The slot being played or looked at; its neighbourhood is the primary tier.
    recent_keys : np.ndarray
        The player's latest slots, latest first; their mean vector's neighbourhood is the primary
        tier when there is no context.
    top_n_keys : np.ndarray
        The player's precomputed top-N for this version (``personal``), added after the
        neighbourhood.
    personalised : bool
        Whether the player has a vector in this version, stored or built from their played slots
        (:func:`towers_from_played`); else reasons become ``cold_start``.
    neighbours : (keys, cosines), optional
        A neighbourhood already searched elsewhere (pgvector), used when ``model`` is None.
    explore : ExploreBank, optional
        This snapshot's draws for this market (``Snapshot.explore_bank``; None: one drawn here).
    """
    # Played slots (recent ones included) are the database's to exclude: the window is its setting.
    exclude = set() if context_key is None else {int(context_key)}
    source = "popular"
    parts: list[tuple[np.ndarray, str, np.ndarray]] = []
    context_row = model.row(context_key) if model is not None and context_key is not None else -1
    query = _recent_vector(model, recent_keys) if model is not None and context_row < 0 else None
    if context_row >= 0 or query is not None:
        if context_row >= 0:  # the same search for every list around this slot: kept with the version
            keys, cosines = model.neighbourhood(context_row, config.candidate_pool + len(exclude))
        else:
            keys, cosines = model.index.search(query, config.candidate_pool + len(exclude))
            keys, cosines = keys[0], cosines[0]
        found = keys >= 0
        parts.append((keys[found], "similar", cosines[found]))
        source = "context" if context_row >= 0 else "recent"
    elif neighbours is not None:
        parts.append((np.asarray(neighbours[0], dtype=np.int64), "similar", np.asarray(neighbours[1])))
        source = "context"
    if top_n_keys.size:
        top_n_keys = np.asarray(top_n_keys, dtype=np.int64)
        vector = model.similarity[context_row] if context_row >= 0 else query
        parts.append((top_n_keys, "personal", _cosines(model, vector, top_n_keys)))
        if source == "popular":
            source = "top_n"
    if not parts:
        reason = "personal" if personalised else ("cold_start" if model is not None else "popular")
        head = popular[: config.candidate_pool]
        parts.append((head, reason, np.full(head.size, np.nan)))
    primary, reasons, cosine = _merge(parts, exclude, catalogue, market)

    backup_reason = "cold_start" if model is not None and not personalised else "popular"
    head = popular[: 2 * k + primary.size + len(exclude)]  # primary keys are distinct and never excluded
    head = head[catalogue.allowed(head, market)]
    taken = np.zeros(catalogue.active.size, dtype=bool)  # by key; the allowed keys are inside it
    taken[primary] = True
    for key in exclude:
        if 0 <= key < taken.size:
            taken[key] = True
    backup = head[~taken[head]].astype(np.int64)

    n_explore = explore_count(k, config.exploration_share)
    explore_keys, draws = _explore(catalogue, stats, market, exclude, k, n_explore, config, rng, explore)
    return Candidates(source, primary, reasons, cosine, backup, backup_reason, explore_keys, draws)


def _cosines(model: ServingModel | None, vector: np.ndarray | None, keys: np.ndarray) -> np.ndarray:
    """Cosine of each of ``keys`` to the query ``vector`` (``nan`` without a query or a row)."""
    out = np.full(keys.size, np.nan, dtype=np.float32)
    if model is None or vector is None:
        return out
    rows = model.rows(keys)
    known = rows >= 0
    out[known] = model.similarity[rows[known]] @ vector
    return out


def _recent_vector(model: ServingModel, recent_keys: np.ndarray) -> np.ndarray | None:
    """Unit vector of the mean of the recent slots; None when none has a row."""
    rows = model.rows(recent_keys)
    rows = rows[rows >= 0]
    if rows.size == 0:
        return None
    return normalize_rows(model.similarity[rows].mean(axis=0, keepdims=True))[0]


def _merge(parts, exclude: set[int], catalogue: Catalogue, market: str | None):
    """The parts' keys in order, each once, offered in ``market`` and not in ``exclude``, with the
    reason and cosine of the part that listed it first: ``(keys int64, reasons, cosines float32)``."""
    keys = np.concatenate([part_keys for part_keys, _, _ in parts]).astype(np.int64, copy=False)
    cosines = np.concatenate([np.asarray(part_cosines) for _, _, part_cosines in parts]).astype(np.float32)
    keep = catalogue.allowed(keys, market)
    for key in exclude:
        keep &= keys != key
    keep[_repeats(keys)] = False
    kept = keep.nonzero()[0]
    ends = kept.searchsorted(list(accumulate(part_keys.size for part_keys, _, _ in parts))).tolist()
    reasons: tuple[str, ...] = ()
    for (_, reason, _), start, end in zip(parts, [0, *ends[:-1]], ends, strict=True):
        reasons += (reason,) * (end - start)
    return keys[kept], reasons, cosines[kept]


def _repeats(keys: np.ndarray) -> np.ndarray:
    """Positions in ``keys`` of the values seen earlier in it (every occurrence but the first)."""
    order = keys.argsort(kind="stable")
    ordered = keys[order]
    return order[1:][ordered[1:] == ordered[:-1]]


def explore_pool(catalogue: Catalogue, stats: SlotStats, market: str | None, max_impressions: int) -> np.ndarray:
    """The slots exploration draws from in ``market``: offered there, with fewer than
    ``max_impressions`` impressions. Shape (p,), int64, ascending. It depends on the snapshot only,
    so the serving state keeps one per market (``Snapshot.explore_bank``)."""
    keys = catalogue.keys
    impressions = SlotStats.take(stats.impressions, keys)
    return keys[(impressions < max_impressions) & catalogue.allowed(keys, market)]


class ExploreBank:
    """Exploration's Thompson draws over one market's pool (:func:`explore_pool`) and one snapshot's
    feedback counts, made as lists take them and then kept.

    A list takes one of :data:`EXPLORE_BANK` draws at random; the first list to take one makes it
    (a draw costs ~85 us, nearly half of a list's candidates; measured). Each list's exploration is
    still a Thompson draw from the counts' posterior, as when every list drew its own; what changes
    is that the lists of one snapshot share at most :data:`EXPLORE_BANK` draws. A new snapshot (fresh
    counts every ``RECSYS_STATS_REFRESH_SECONDS``, a catalogue change) starts a new bank
    (``Snapshot.explore_bank``). A list that needs more than :data:`EXPLORE_DEPTH` slots, or a
    seeded one (``RECSYS_EXPLORE_SEED``: the same list for the same player), draws for itself.
    """

    def __init__(self, pool: np.ndarray, stats: SlotStats) -> None:
        self.pool = pool
        self.stats = stats
        self._draws: list[tuple[np.ndarray, np.ndarray] | None] = [None] * EXPLORE_BANK

    def take(self, rng: np.random.Generator, exclude: set[int], keep: int, *,
             shared: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The best ``keep`` slots of one draw (keys, draws; best first), none of them in ``exclude``."""
        if not shared or keep + len(exclude) > EXPLORE_DEPTH:
            return _thompson_best(self.pool, self.stats, exclude, keep, rng)
        at = int(rng.integers(EXPLORE_BANK))
        drawn = self._draws[at]
        if drawn is None:
            drawn = self._draws[at] = _thompson_best(self.pool, self.stats, set(), EXPLORE_DEPTH, rng)
        keys, draws = drawn
        for key in exclude:  # the context slot: one comparison (np.isin costs ~20 us)
            kept = keys != key
            keys, draws = keys[kept], draws[kept]
        return keys[:keep], draws[:keep]


def _explore(catalogue, stats, market, exclude: set[int], k, n_explore, config, rng, bank):
    """The Thompson draw's best low-evidence slots; they may also be primary candidates, and
    :func:`rank` skips any that exploitation already placed."""
    if n_explore == 0 or catalogue.keys.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    if bank is None:
        bank = ExploreBank(explore_pool(catalogue, stats, market, config.explore_max_impressions), stats)
    # Enough to survive the played-slot exclusion and the places exploitation takes first.
    return bank.take(rng, exclude, k + 4 * n_explore + 8, shared=config.explore_seed is None)


def _thompson_best(pool: np.ndarray, stats: SlotStats, exclude: set[int], keep: int, rng: np.random.Generator):
    """One Thompson draw over ``pool`` less ``exclude`` (a uniform sample of :data:`EXPLORE_SAMPLE`
    of it when larger): its best ``keep`` slots and their draws, best first."""
    for key in exclude:
        at = int(pool.searchsorted(key))  # the pool is ascending: no pass over all of it
        if at < pool.size and pool[at] == key:
            pool = np.concatenate([pool[:at], pool[at + 1 :]])
    if pool.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    if pool.size > EXPLORE_SAMPLE:
        pool = rng.choice(pool, EXPLORE_SAMPLE, replace=False)
        pool.sort()
    draws = thompson_draws(SlotStats.take(stats.successes, pool), SlotStats.take(stats.impressions, pool), rng)
    keep = min(pool.size, keep)
    descending = -draws
    best = descending.argpartition(keep - 1)[:keep] if keep < pool.size else np.arange(pool.size)
    best = best[descending[best].argsort(kind="stable")]
    return pool[best], draws[best]
