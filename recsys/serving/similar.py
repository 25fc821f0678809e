"""Similar slots: from the in-memory FAISS index, or from pgvector (awaited) when it cannot answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import numpy as np

from recsys.db import catalogue as db
from recsys.db import versions
from recsys.errors import NotFound, NotReady
from recsys.serving.model import similar_slots
from recsys.serving.state import ServingState

if TYPE_CHECKING:
    from recsys.db.pool import OnlinePool


class SimilarItem(msgspec.Struct):
    slot_id: str
    score: float  # cosine similarity in [-1, 1]


class SimilarSlots(msgspec.Struct):
    slot_id: str
    model_version: int
    items: list[SimilarItem]


def slot_key(serving: ServingState, slot_id: str) -> int:
    snap = serving.snapshot
    if not snap.catalogue_loaded:
        raise NotReady("the slot catalogue is not loaded yet")
    key = snap.catalogue.key_of.get(slot_id)
    if key is None:
        raise NotFound("slot", slot_id)
    return key


def similar_in_memory(
    serving: ServingState, slot_id: str, *, k: int, market: str | None, version: int | None
) -> SimilarSlots | None:
    """The ``k`` most similar slots from the in-memory FAISS index, or None when it cannot answer
    (no index loaded yet, another ``version`` asked for, or a slot newer than the index)."""
    key = slot_key(serving, slot_id)
    snap = serving.snapshot
    model = snap.model
    if model is None or version not in (None, model.version_id) or model.row(key) < 0:
        return None  # the slot is newer than the index: pgvector answers (or says it has no vector)
    keys, scores = similar_slots(model, snap.catalogue, key, k, market)
    return _answer(snap.catalogue, slot_id, model.version_id, keys, scores)


async def similar_by_pgvector(
    serving: ServingState, pool: OnlinePool, slot_id: str, *, k: int, market: str | None, version: int | None
) -> SimilarSlots:
    """The same answer from pgvector (``ORDER BY similarity <=> q``) for ``version`` or the active one."""
    key = slot_key(serving, slot_id)
    async with pool.connection() as conn:
        if version is None:
            version = await versions.active_version_id(conn)
            if version is None:
                raise NotReady("no model version is active")
        elif not await versions.version_exists(conn, version):
            raise NotFound("model version", version)
        found = await db.similar_by_pgvector(conn, version, key, k, market, every_market=market is None)
    if found is None:
        raise NotFound("slot", slot_id, f"slot {slot_id!r} has no vector in model version {version}")
    serving.metrics.fallback("pgvector")
    return _answer(serving.snapshot.catalogue, slot_id, version, *found)


def _answer(catalogue, slot_id: str, version: int, keys: np.ndarray, scores: np.ndarray) -> SimilarSlots:
    slots = catalogue.slots
    return SimilarSlots(
        slot_id,
        version,
        [
            SimilarItem(slots[key].slot_id, round(score, 6))
            for key, score in zip(keys.tolist(), scores.tolist(), strict=True)
            if key in slots
        ],
    )
