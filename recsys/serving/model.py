"""The version in memory: its index, vectors and scoring tables, with provisional rows for slots
added since training; similar slots, and a player's vectors and logits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsys.index import SlotIndex
from recsys.ncf.scoring import TrainedNCF, item_logits, mlp_layer_names
from recsys.ncf.vectors import normalize_rows
from recsys.serving.catalogue import Catalogue, by_key

# Slots without a trained vector borrow the mean of the slots sharing the most specific of these
# attribute groups that has any trained member (the last, empty group is the whole catalogue).
PROVISIONAL_GROUPS: tuple[tuple[str, ...], ...] = (
    ("provider", "theme", "volatility"),
    ("theme", "volatility"),
    ("theme",),
    ("provider",),
    (),
)


NEIGHBOURHOODS = 8_192
"""Neighbourhoods (one slot's own row searched, by row and ``k``) a :class:`ServingModel` keeps at most;
past it they are dropped and kept again as asked. About 1.5 kB each at ``k`` = 101 (a list's), so
at most about 12 MB per version in memory."""


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
    # ``row_of`` and a -1 after it, for :meth:`rows`; the MLP's layer names, for :func:`model_logits`.
    _row_of_ext: np.ndarray = field(init=False, compare=False, repr=False)
    _layers: list[str] = field(init=False, compare=False, repr=False)
    _neighbourhoods: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_row_of_ext", np.append(self.row_of, np.int64(-1)))
        object.__setattr__(self, "_layers", [] if self.model is None else mlp_layer_names(self.model.weights))

    def neighbourhood(self, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``index.search(similarity[row], k)`` for one query: ``(keys (k,) int64, cosines (k,) float32)``,
        read-only. It depends on the version alone and the same slots are asked again and again (a
        context slot, a slot page's similar slots), so it is searched once and kept (a FAISS search
        of 5,000 rows is 50 us, a tenth of a list's CPU; at most :data:`NEIGHBOURHOODS` kept)."""
        found = self._neighbourhoods.get((row, k))
        if found is None:
            keys, cosines = self.index.search(self.similarity[row], k)
            keys, cosines = keys[0], cosines[0]
            keys.flags.writeable = cosines.flags.writeable = False
            if len(self._neighbourhoods) >= NEIGHBOURHOODS:
                self._neighbourhoods.clear()
            self._neighbourhoods[(row, k)] = found = (keys, cosines)
        return found

    def row(self, key: int) -> int:
        """``rows`` of one key."""
        return int(self.row_of[key]) if 0 <= key < self.row_of.size else -1

    def rows(self, keys: np.ndarray) -> np.ndarray:
        """The row of each key (int64, ``-1``: none), in the shape of ``keys``."""
        return by_key(self._row_of_ext, keys)


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
    row = model.row(slot_key)
    if row < 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    fetch = min(model.index.ntotal, 2 * k + 16)
    while True:
        keys, cosines = model.neighbourhood(row, fetch)
        keep = (keys >= 0) & (keys != slot_key)
        keep &= catalogue.allowed(keys, market, every_market=market is None)
        if keep.sum() >= k or fetch >= model.index.ntotal:
            return keys[keep][:k], cosines[keep][:k]
        fetch = min(model.index.ntotal, fetch * 4)


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
    known = rows >= 0
    if model.model is None or not known.any():
        return out
    weights = model.model.weights
    user = {tower: np.asarray(vector, dtype=np.float32) for tower, vector in towers.items()}
    for tower in ("gmf", "mlp"):  # a version's own user row 0, as TrainedNCF.score_items(0, ...) reads it
        if tower not in user and f"user_{tower}.weight" in weights:
            user[tower] = weights[f"user_{tower}.weight"][0]
    bias = weights["user_bias.weight"][0, 0] if "user_bias.weight" in weights else None
    out[known] = item_logits(weights, model._layers, rows[known], gmf=user.get("gmf"), mlp=user.get("mlp"),
                             user_bias=bias)
    return out
