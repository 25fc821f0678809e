"""The recommendation policy, pure: it is handed arrays and returns arrays (no SQL, no I/O).

One list is made in four steps; the API runs them around two database calls:

1. :func:`protection_gate` first, fail-closed: a player who may not be marketed to gets nothing.
2. :func:`generate_candidates`: the FAISS neighbourhood of the context slot (or of the player's
   recent slots), the player's precomputed top-N, the popularity list as a back-up, and an
   exploration pool drawn by Thompson sampling on feedback counts. The database then removes what
   the player has played and what is disabled or not offered in the market (a SQL anti-join).
3. :func:`rank`: the survivors are re-ranked by ``w * sigmoid(model logit) + (1 - w) * (1 + cos) / 2``
   (model score blended with similarity), a share of the places goes to exploration, and a provider
   cap keeps the list diverse.

Slot *keys* (``slots.id``) are used throughout; the casino's ``slot_id`` strings never enter here.
Arrays "by key" have one entry per possible key (``array[key]``), zero or ``False`` for a hole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from recsys.index import SlotIndex
from recsys.ncf.scoring import TrainedNCF
from recsys.ncf.vectors import normalize_rows
from recsys.settings import Ranking

REASONS = ("similar", "personal", "explore", "popular", "cold_start")
SUPPRESSION_REASONS = ("self_excluded", "cooling_off", "no_consent", "risk_flag")

# Slots without a trained vector borrow the mean of the slots sharing the most specific of these
# attribute groups that has any trained member (the last, empty group is the whole catalogue).
PROVISIONAL_GROUPS: tuple[tuple[str, ...], ...] = (
    ("provider", "theme", "volatility"),
    ("theme", "volatility"),
    ("theme",),
    ("provider",),
    (),
)


# --- 1. the protection gate ------------------------------------------------------------------


@dataclass(frozen=True)
class Protection:
    """A player's protection fields as stored; ``None`` means unknown."""

    self_excluded_until: datetime | None
    cooling_off_until: datetime | None
    marketing_consent: bool | None
    risk_flag: bool | None


def protection_gate(protection: Protection, now: datetime) -> str | None:
    """The reason a player gets no recommendation, or ``None`` when they may get one.

    Checked in this order, fail-closed: ``self_excluded`` (``self_excluded_until`` in the future),
    ``cooling_off``, ``no_consent`` (consent not given or unknown), ``risk_flag`` (flagged, or the
    flag unknown).
    """
    if protection.self_excluded_until is not None and protection.self_excluded_until > now:
        return "self_excluded"
    if protection.cooling_off_until is not None and protection.cooling_off_until > now:
        return "cooling_off"
    if protection.marketing_consent is not True:
        return "no_consent"
    if protection.risk_flag is not False:
        return "risk_flag"
    return None


# --- the catalogue and its statistics, as arrays by slot key ---------------------------------


@dataclass(frozen=True)
class SlotInfo:
    key: int
    slot_id: str
    provider: str
    theme: str
    volatility: str
    active: bool
    markets: tuple[str, ...] | None  # None: offered in every market


def _codes(values: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    names = tuple(sorted(set(values)))
    lookup = {name: code for code, name in enumerate(names)}
    return np.array([lookup[v] for v in values], dtype=np.int32), names


@dataclass(frozen=True)
class Catalogue:
    """Every slot's serving metadata, as arrays by key (``active[key]``)."""

    keys: np.ndarray  # (m,) int64, ascending
    slots: dict[int, SlotInfo]
    key_of: dict[str, int]
    active: np.ndarray  # (K,) bool
    provider: np.ndarray  # (K,) int32 code into ``providers``
    theme: np.ndarray  # (K,) int32
    volatility: np.ndarray  # (K,) int32
    restricted: np.ndarray  # (K,) bool: offered in listed markets only
    markets: dict[int, frozenset[str]]  # key -> markets, for restricted slots
    providers: tuple[str, ...] = ()

    @classmethod
    def from_slots(cls, slots: list[SlotInfo]) -> Catalogue:
        slots = sorted(slots, key=lambda s: s.key)
        size = (slots[-1].key + 1) if slots else 0
        keys = np.array([s.key for s in slots], dtype=np.int64)
        arrays = {}
        names = {}
        for attribute in ("provider", "theme", "volatility"):
            codes, names[attribute] = _codes([getattr(s, attribute) for s in slots])
            arrays[attribute] = np.full(size, -1, dtype=np.int32)
            arrays[attribute][keys] = codes
        active = np.zeros(size, dtype=bool)
        active[keys] = [s.active for s in slots]
        restricted = np.zeros(size, dtype=bool)
        restricted[keys] = [s.markets is not None for s in slots]
        return cls(
            keys=keys,
            slots={s.key: s for s in slots},
            key_of={s.slot_id: s.key for s in slots},
            active=active,
            restricted=restricted,
            markets={s.key: frozenset(s.markets) for s in slots if s.markets is not None},
            providers=names["provider"],
            **arrays,
        )

    @classmethod
    def empty(cls) -> Catalogue:
        return cls.from_slots([])

    def allowed(self, keys: np.ndarray, market: str | None, *, every_market: bool = False) -> np.ndarray:
        """Mask of ``keys`` that are active and offered in ``market`` (restricted slots need a market
        that they list: fail-closed for a player whose market is unknown); ``every_market`` skips the
        market check."""
        keys = np.asarray(keys, dtype=np.int64)
        inside = (keys >= 0) & (keys < self.active.size)
        mask = np.zeros(keys.shape, dtype=bool)
        mask[inside] = self.active[keys[inside]]
        restricted = np.zeros(keys.shape, dtype=bool)
        restricted[inside] = self.restricted[keys[inside]]
        if every_market:
            return mask
        for i in np.flatnonzero(mask & restricted):
            mask[i] = market is not None and market in self.markets[int(keys[i])]
        return mask

    def providers_of(self, keys: np.ndarray) -> np.ndarray:
        return self.provider[np.asarray(keys, dtype=np.int64)]


@dataclass(frozen=True)
class SlotStats:
    """Play and feedback counts by slot key (arrays may be shorter than the catalogue: missing = 0).

    ``players``: distinct players in the popularity window; ``impressions`` and ``successes``
    (clicks or plays of a recommended item): the feedback Thompson sampling explores on.
    """

    players: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    impressions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    successes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @staticmethod
    def by_key(counts: dict[int, int]) -> np.ndarray:
        out = np.zeros(max(counts, default=-1) + 1, dtype=np.int64)
        if counts:
            out[list(counts)] = list(counts.values())
        return out

    @staticmethod
    def take(array: np.ndarray, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        inside = keys < array.size
        out = np.zeros(keys.shape, dtype=array.dtype)
        out[inside] = array[keys[inside]]
        return out


def popularity_order(catalogue: Catalogue, stats: SlotStats) -> np.ndarray:
    """Active slot keys, most distinct players first (ties: lower key first). Shape (a,), int64."""
    keys = catalogue.keys[catalogue.active[catalogue.keys]] if catalogue.keys.size else catalogue.keys
    players = SlotStats.take(stats.players, keys)
    return keys[np.lexsort((keys, -players))]


# --- the version in memory -------------------------------------------------------------------


@dataclass(frozen=True)
class ServingModel:
    """One model version ready to serve; immutable, swapped whole when a new version arrives.

    Row ``i`` of ``similarity`` and of the model's item tables belongs to slot ``slot_keys[i]``;
    ``row_of[key]`` is the inverse (``-1``: no row). Rows past the version's own are provisional
    vectors for slots added since training.
    """

    version_id: int
    index: SlotIndex
    slot_keys: np.ndarray  # (n,) int64
    row_of: np.ndarray  # (K,) int64
    similarity: np.ndarray  # (n, d) float32, unit rows
    model: TrainedNCF | None  # item tables only (no user rows); None when the version has no weights
    provisional: np.ndarray  # (n,) bool
    trained_rows: int  # rows that came from the version itself

    def rows(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        inside = (keys >= 0) & (keys < self.row_of.size)
        out = np.full(keys.shape, -1, dtype=np.int64)
        out[inside] = self.row_of[keys[inside]]
        return out


def provisional_vectors(
    catalogue: Catalogue, known_keys: np.ndarray, vectors: np.ndarray, new_keys: np.ndarray
) -> np.ndarray:
    """Vectors for slots without one: the mean over slots sharing their attributes.

    The group is the most specific of :data:`PROVISIONAL_GROUPS` with a member among ``known_keys``.

    Parameters
    ----------
    catalogue : Catalogue
        Attributes of every key in ``known_keys`` and ``new_keys``.
    known_keys : np.ndarray, shape (n,)
    vectors : np.ndarray, shape (n, d)
        The known slots' vectors (not normalised here: callers normalise similarity vectors).
    new_keys : np.ndarray, shape (m,)

    Returns
    -------
    np.ndarray, shape (m, d), float32
    """
    known_keys = np.asarray(known_keys, dtype=np.int64)
    new_keys = np.asarray(new_keys, dtype=np.int64)
    out = np.zeros((new_keys.size, vectors.shape[1]), dtype=np.float32)
    todo = np.ones(new_keys.size, dtype=bool)
    if known_keys.size == 0:
        return out
    for group in PROVISIONAL_GROUPS:
        if not todo.any():
            break
        known_group = _group_ids(catalogue, known_keys, group)
        wanted = _group_ids(catalogue, new_keys[todo], group)
        groups, inverse = np.unique(known_group, return_inverse=True)
        sums = np.zeros((groups.size, vectors.shape[1]), dtype=np.float64)
        np.add.at(sums, inverse, vectors)
        means = (sums / np.bincount(inverse, minlength=groups.size)[:, None]).astype(np.float32)
        position = np.clip(np.searchsorted(groups, wanted), 0, groups.size - 1)
        hit = groups[position] == wanted
        targets = np.flatnonzero(todo)[hit]
        out[targets] = means[position[hit]]
        todo[targets] = False
    return out


def _group_ids(catalogue: Catalogue, keys: np.ndarray, group: tuple[str, ...]) -> np.ndarray:
    """One int64 per key identifying its attribute combination in ``group`` (codes < 2**20 each)."""
    ids = np.zeros(keys.size, dtype=np.int64)
    for attribute in group:
        ids = (ids << 20) + getattr(catalogue, attribute)[keys].astype(np.int64) + 1
    return ids


def build_serving_model(
    version_id: int,
    slot_keys: np.ndarray,
    similarity: np.ndarray,
    towers: dict[str, np.ndarray],
    provisional: np.ndarray,
    weights: dict | None,
    catalogue: Catalogue,
    factory: str,
) -> ServingModel:
    """A :class:`ServingModel` from a version's slot rows plus provisional rows for every catalogue
    slot the version lacks (similarity: normalised attribute-group mean; towers: the plain mean).

    ``weights`` is the version's scoring state without embedding tables (``{"config", "weights"}``),
    or ``None`` when it has none (then lists are ranked by similarity alone).
    """
    slot_keys = np.asarray(slot_keys, dtype=np.int64)
    # Trained slots the catalogue has lost keep their rows (the catalogue filter hides them);
    # catalogue slots the version lacks get provisional rows from the trained ones still listed.
    known_rows = np.flatnonzero(np.isin(slot_keys, catalogue.keys))
    known_keys = slot_keys[known_rows]
    new_keys = np.setdiff1d(catalogue.keys, slot_keys)
    extra_similarity = normalize_rows(provisional_vectors(catalogue, known_keys, similarity[known_rows], new_keys))
    extra_towers = {
        t: provisional_vectors(catalogue, known_keys, table[known_rows], new_keys) for t, table in towers.items()
    }
    all_keys = np.concatenate([slot_keys, new_keys])
    all_similarity = np.ascontiguousarray(np.concatenate([similarity, extra_similarity]), dtype=np.float32)
    model = None
    if weights is not None:
        tables = {f"item_{t}.weight": np.concatenate([towers[t], extra_towers[t]]).astype(np.float32) for t in towers}
        bias = weights["weights"].get("item_bias.weight")
        if bias is not None:
            # Per-slot rows outside the embedding tables need provisional rows too (the group mean).
            extra_bias = provisional_vectors(catalogue, known_keys, bias[known_rows], new_keys)
            tables["item_bias.weight"] = np.concatenate([bias, extra_bias]).astype(np.float32)
        model = TrainedNCF.from_state({"config": weights["config"], "weights": {**weights["weights"], **tables}})
    row_of = np.full(int(all_keys.max(initial=-1)) + 1, -1, dtype=np.int64)
    row_of[all_keys] = np.arange(all_keys.size)
    return ServingModel(
        version_id=version_id,
        index=SlotIndex(all_similarity, all_keys, factory),
        slot_keys=all_keys,
        row_of=row_of,
        similarity=all_similarity,
        model=model,
        provisional=np.concatenate([np.asarray(provisional, dtype=bool), np.ones(new_keys.size, dtype=bool)]),
        trained_rows=int(slot_keys.size),
    )


def similar_slots(
    model: ServingModel, catalogue: Catalogue, slot_key: int, k: int, market: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` slots closest to ``slot_key`` in the index: never the slot itself, a disabled slot,
    or (when ``market`` is given) a slot not offered there.

    Returns ``(keys (m,) int64, cosines (m,) float32)``, best first, ``m <= k``.
    """
    row = model.row_of[slot_key] if 0 <= slot_key < model.row_of.size else -1
    if row < 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    query = model.similarity[row : row + 1]
    fetch = min(model.index.ntotal, 2 * k + 16)
    while True:
        keys, cosines = model.index.search(query, fetch)
        keys, cosines = keys[0], cosines[0]
        keep = (keys >= 0) & (keys != slot_key)
        keep &= catalogue.allowed(keys, market, every_market=market is None)
        if keep.sum() >= k or fetch >= model.index.ntotal:
            return keys[keep][:k], cosines[keep][:k]
        fetch = min(model.index.ntotal, fetch * 4)


# --- 2. candidates ---------------------------------------------------------------------------


EXPLORE_SAMPLE = 512
"""Thompson sampling draws for a uniform sample of at most this many pool slots per list: a Beta draw
for each of 5,000 slots costs 0.6 ms, most of a list's CPU time (measured). The ranking settings
(``recsys.settings.Ranking``, ``settings.ranking``) are the rest of the policy's configuration."""


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

    def all_keys(self) -> np.ndarray:
        """Every candidate key once, in the order listed (int64)."""
        everything = np.concatenate([self.primary, self.explore, self.backup]).astype(np.int64)
        _, first = np.unique(everything, return_index=True)
        return everything[np.sort(first)]


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
    """
    # Played slots (recent ones included) are the database's to exclude: the window is its setting.
    exclude = set() if context_key is None else {int(context_key)}
    source = "popular"
    parts: list[tuple[np.ndarray, str, np.ndarray]] = []
    query = _query_vector(model, context_key, recent_keys) if model is not None else None
    if query is not None:
        keys, cosines = model.index.search(query, config.candidate_pool + len(exclude))
        keys, cosines = keys[0], cosines[0]
        parts.append((keys[keys >= 0], "similar", cosines[keys >= 0]))
        source = "context" if context_key is not None and model.rows(np.array([context_key]))[0] >= 0 else "recent"
    elif neighbours is not None:
        parts.append((np.asarray(neighbours[0], dtype=np.int64), "similar", np.asarray(neighbours[1])))
        source = "context"
    if top_n_keys.size:
        parts.append((np.asarray(top_n_keys, dtype=np.int64), "personal", np.full(top_n_keys.size, np.nan)))
        if source == "popular":
            source = "top_n"
    if not parts:
        reason = "personal" if personalised else ("cold_start" if model is not None else "popular")
        head = popular[: config.candidate_pool]
        parts.append((head, reason, np.full(head.size, np.nan)))
    primary, reasons, cosine = _merge(parts, exclude, catalogue, market)

    backup_reason = "cold_start" if model is not None and not personalised else "popular"
    taken = set(primary.tolist()) | exclude
    head = popular[: 2 * k + len(taken)]
    head = head[catalogue.allowed(head, market)]
    backup = np.array([key for key in head.tolist() if key not in taken], dtype=np.int64)

    n_explore = explore_count(k, config.exploration_share)
    explore, draws = _explore_pool(catalogue, stats, market, exclude, k, n_explore, config, rng)
    return Candidates(source, primary, reasons, cosine, backup, backup_reason, explore, draws)


def _query_vector(model: ServingModel, context_key: int | None, recent_keys: np.ndarray) -> np.ndarray | None:
    """Unit vector of the context slot, else of the mean of the recent slots; None when neither has a row."""
    if context_key is not None:
        row = model.rows(np.array([context_key]))[0]
        if row >= 0:
            return model.similarity[row]
    rows = model.rows(recent_keys)
    rows = rows[rows >= 0]
    if rows.size == 0:
        return None
    return normalize_rows(model.similarity[rows].mean(axis=0, keepdims=True))[0]


def _merge(parts, exclude: set[int], catalogue: Catalogue, market: str | None):
    seen = set(exclude)
    keys: list[int] = []
    reasons: list[str] = []
    cosines: list[float] = []
    for part_keys, reason, part_cosines in parts:
        allowed = catalogue.allowed(part_keys, market)
        for key, ok, cos in zip(part_keys.tolist(), allowed.tolist(), np.asarray(part_cosines).tolist(), strict=True):
            if ok and key not in seen:
                seen.add(key)
                keys.append(key)
                reasons.append(reason)
                cosines.append(cos)
    return np.array(keys, dtype=np.int64), tuple(reasons), np.array(cosines, dtype=np.float32)


def _explore_pool(catalogue, stats, market, exclude: set[int], k, n_explore, config, rng):
    """The Thompson draw's best low-evidence slots; they may also be primary candidates, and
    :func:`rank` skips any that exploitation already placed."""
    empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    if n_explore == 0 or catalogue.keys.size == 0:
        return empty
    keys = catalogue.keys
    impressions = SlotStats.take(stats.impressions, keys)
    pool = keys[(impressions < config.explore_max_impressions) & catalogue.allowed(keys, market)]
    if exclude:
        pool = pool[~np.isin(pool, np.fromiter(exclude, dtype=np.int64))]
    if pool.size == 0:
        return empty
    if pool.size > EXPLORE_SAMPLE:
        pool = np.sort(rng.choice(pool, EXPLORE_SAMPLE, replace=False))
    draws = thompson_draws(SlotStats.take(stats.successes, pool), SlotStats.take(stats.impressions, pool), rng)
    # Enough to survive the played-slot exclusion and the places exploitation takes first.
    keep = min(pool.size, k + 4 * n_explore + 8)
    best = np.argpartition(-draws, keep - 1)[:keep] if keep < pool.size else np.arange(pool.size)
    best = best[np.argsort(-draws[best], kind="stable")]
    return pool[best], draws[best]


# --- 3. ranking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankedItem:
    slot_key: int
    score: float
    reason: str
    explored: bool


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def towers_from_played(model: ServingModel, played_keys: np.ndarray) -> dict[str, np.ndarray] | None:
    """A player's vectors built from the slots they played, for a player the version does not know.

    A version trained with ``NCFConfig.user_history`` computes every player's vector as
    ``|N|^-alpha * sum_{j in N} y_j`` over their played slots (``recsys.ncf.played``) and keeps the
    ``item_hist_*`` tables ``y``, so a player who arrived after training gets a vector from their
    latest slots now, without retraining (``add`` leaves out the free row such a player never had).
    None when the version has no such tables or knows none of ``played_keys``.
    """
    if model.model is None or model.model.config.user_history == "none":
        return None
    rows = model.rows(played_keys)
    rows = np.unique(rows[(rows >= 0) & (rows < model.trained_rows)])
    if rows.size == 0:
        return None
    scale = np.float32(rows.size ** -model.model.config.history_alpha)
    weights = model.model.weights
    return {
        tower: weights[f"item_hist_{tower}.weight"][rows].sum(axis=0) * scale
        for tower in ("gmf", "mlp")
        if f"item_hist_{tower}.weight" in weights
    }


def model_logits(model: ServingModel, towers: dict[str, np.ndarray], keys: np.ndarray) -> np.ndarray:
    """The version's logits of one player (``towers``: ``{"gmf": (f,), "mlp": (f',)}``) for ``keys``.

    Keys without a row score ``-inf``. Shape (len(keys),), float32.
    """
    rows = model.rows(keys)
    out = np.full(rows.shape, -np.inf, dtype=np.float32)
    if model.model is None or not (rows >= 0).any():
        return out
    weights = dict(model.model.weights)
    for tower, vector in towers.items():
        weights[f"user_{tower}.weight"] = np.asarray(vector, dtype=np.float32)[None, :]
    player = TrainedNCF(model.model.config, weights)
    out[rows >= 0] = player.score_items(0, rows[rows >= 0])
    return out


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
