"""The catalogue and its statistics as arrays by slot key, built from the rows ``recsys.db`` reads.

Slot *keys* (``slots.id``) are used throughout; the casino's ``slot_id`` strings never enter the
arrays. Arrays "by key" have one entry per possible key (``array[key]``), zero or ``False`` for a hole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SlotInfo:
    key: int
    slot_id: str
    provider: str
    theme: str
    volatility: str
    active: bool
    markets: tuple[str, ...] | None  # None: offered in every market


def by_key(extended: np.ndarray, keys) -> np.ndarray:
    """``extended[key]`` for each of ``keys`` (any integers, shape kept), where ``extended`` is an array
    by key with one more entry after the last key: what a key outside it (negative, or past it) gets.
    One gather: as unsigned, a negative key is past every real one."""
    unsigned = np.asarray(keys, dtype=np.int64).view(np.uint64)
    return extended[np.minimum(unsigned, np.uint64(extended.size - 1))]


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
    # ``offered(market)``'s masks with a False after them, made on first use: a snapshot's catalogue
    # never changes, and a list asks for its market's mask several times (a Python loop over the
    # restricted slots each). ``_active_ext``: ``active`` and a False. :meth:`allowed` reads them.
    _offered: dict[str | None, np.ndarray] = field(default_factory=dict, init=False, compare=False, repr=False)
    _active_ext: np.ndarray = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_active_ext", np.append(self.active, False))

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
    def from_rows(cls, rows) -> Catalogue:
        """From ``recsys.db.catalogue.load_slots``'s rows (tuples in :class:`SlotInfo`'s field order)."""
        return cls.from_slots([SlotInfo(*row) for row in rows])

    @classmethod
    def empty(cls) -> Catalogue:
        return cls.from_slots([])

    def allowed(self, keys: np.ndarray, market: str | None, *, every_market: bool = False) -> np.ndarray:
        """Mask of ``keys`` that are active and offered in ``market`` (restricted slots need a market
        that they list: fail-closed for a player whose market is unknown); ``every_market`` skips the
        market check."""
        return by_key(self._active_ext if every_market else self._offered_ext(market), keys)

    def offered(self, market: str | None) -> np.ndarray:
        """By key: active and offered in ``market`` (see :meth:`allowed`). Shape (K,), bool; do not modify."""
        return self._offered_ext(market)[:-1]

    def _offered_ext(self, market: str | None) -> np.ndarray:
        mask = self._offered.get(market)
        if mask is None:
            mask = np.append(self.active & ~self.restricted, False)
            for key in np.flatnonzero(self.active & self.restricted).tolist():
                mask[key] = market is not None and market in self.markets[key]
            mask.flags.writeable = False
            self._offered[market] = mask
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

    @classmethod
    def from_counts(cls, counts) -> SlotStats:
        """From ``recsys.db.catalogue.load_counts``'s ``{key: count}`` dicts."""
        return cls(
            players=cls.by_key(counts.players),
            impressions=cls.by_key(counts.impressions),
            successes=cls.by_key(counts.successes),
        )

    @staticmethod
    def by_key(counts: dict[int, int]) -> np.ndarray:
        out = np.zeros(max(counts, default=-1) + 1, dtype=np.int64)
        if counts:
            out[list(counts)] = list(counts.values())
        return out

    @staticmethod
    def take(array: np.ndarray, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        if keys.size and keys.max() < array.size:  # the usual case: every key counted
            return array[keys]
        inside = keys < array.size
        out = np.zeros(keys.shape, dtype=array.dtype)
        out[inside] = array[keys[inside]]
        return out


def popularity_order(catalogue: Catalogue, stats: SlotStats) -> np.ndarray:
    """Active slot keys, most distinct players first (ties: lower key first). Shape (a,), int64."""
    keys = catalogue.keys[catalogue.active[catalogue.keys]] if catalogue.keys.size else catalogue.keys
    players = SlotStats.take(stats.players, keys)
    return keys[np.lexsort((keys, -players))]
