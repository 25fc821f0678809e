"""Model versions: create, write embeddings and weights, gate, activate (with NOTIFY), retire, load.

A version is born ``training`` and committed at once, so a run that dies leaves a row that is never
``active``; the next run marks such orphans ``failed``. Activation is one transaction: the old
active version becomes ``retired``, the new one ``active`` (a partial unique index allows only
one), and ``NOTIFY recsys_versions`` tells every API replica to rebuild its index.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from psycopg import AsyncConnection

from recsys.db.bulk import array_literal, copy_binary, copy_frame
from recsys.errors import RecsysError

log = logging.getLogger(__name__)

CHANNEL = "recsys_versions"
# Advisory lock held by a training run for its whole life (session level, released on disconnect).
TRAINING_LOCK = 0x5EC5_0002
# Transaction-level advisory lock of an activation: two activations never interleave (issue 10:
# 12 concurrent ones raised the one-active unique-index violation 3 times).
ACTIVATION_LOCK = 0x5EC5_0004
# Embedding tables live in pgvector columns; the weights blob holds everything else.
EMBEDDING_TABLES = ("user_gmf.weight", "user_mlp.weight", "item_gmf.weight", "item_mlp.weight")


class VersionError(RecsysError):
    def __init__(self, version_id: int | None, message: str) -> None:
        self.version_id = version_id
        super().__init__(f"model version {version_id}: {message}" if version_id is not None else message)


@dataclass(frozen=True)
class ModelVersion:
    id: int
    status: str
    model: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    similarity_vector: str | None
    n_players: int | None
    n_slots: int | None
    data_start: date | None
    data_end: date | None
    holdout_start: date | None
    curve_path: str | None
    error: str | None
    created_at: datetime
    activated_at: datetime | None


@dataclass(frozen=True)
class SlotVectors:
    """A version's slot side. ``slot_keys[i]`` is the slot of row ``i`` of every array."""

    version_id: int
    slot_keys: np.ndarray  # (n,) int64
    similarity: np.ndarray  # (n, d) float32, L2-normalised
    towers: dict[str, np.ndarray]  # "gmf"/"mlp" -> (n, f) float32
    provisional: np.ndarray  # (n,) bool


_COLUMNS = (
    "id, status, model, params, metrics, similarity_vector, n_players, n_slots, data_start, data_end, "
    "holdout_start, curve_path, error, created_at, activated_at"
)


def _version(row) -> ModelVersion:
    return ModelVersion(*row)


def create_version(
    engine: sa.Engine,
    model: str,
    params: dict[str, Any],
    *,
    data_start: date | None = None,
    data_end: date | None = None,
    holdout_start: date | None = None,
) -> int:
    """Insert a ``training`` version and commit it; returns its id."""
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "INSERT INTO model_versions (status, model, params, data_start, data_end, holdout_start) "
                "VALUES ('training', :model, CAST(:params AS jsonb), :start, :end, :holdout) RETURNING id"
            ),
            {
                "model": model,
                "params": json.dumps(params),
                "start": data_start,
                "end": data_end,
                "holdout": holdout_start,
            },
        ).scalar_one()


@contextmanager
def training_lock(engine: sa.Engine) -> Iterator[None]:
    """Hold the training advisory lock for a run; a second run fails at once with a clear message."""
    with engine.connect() as conn:
        if not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": TRAINING_LOCK}).scalar_one():
            raise VersionError(None, "another training run is in progress (advisory lock held)")
        conn.commit()
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": TRAINING_LOCK})
            conn.commit()


def fail_abandoned(engine: sa.Engine) -> list[int]:
    """Mark ``training`` versions as ``failed``. Call it holding :func:`training_lock`: then no other
    run is alive, so any version still ``training`` belongs to a run that died."""
    with engine.begin() as conn:
        return list(
            conn.execute(
                sa.text(
                    "UPDATE model_versions SET status = 'failed', error = 'training run ended without finishing' "
                    "WHERE status = 'training' RETURNING id"
                )
            ).scalars()
        )


def fail_version(engine: sa.Engine, version_id: int, error: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE model_versions SET status = 'failed', error = :error WHERE id = :id AND status <> 'active'"
            ),
            {"id": version_id, "error": error[:4000]},
        )


def write_embeddings(
    engine: sa.Engine,
    version_id: int,
    player_keys: np.ndarray,
    player_towers: dict[str, np.ndarray],
    slot_keys: np.ndarray,
    slot_towers: dict[str, np.ndarray],
    slot_similarity: np.ndarray,
    slot_provisional: np.ndarray | None = None,
) -> None:
    """Binary-COPY the version's player and slot embeddings into their pgvector columns.

    ``player_keys`` (n_players,) and ``slot_keys`` (n_slots,) give the database key of each row;
    row ``i`` of every tower array belongs to ``player_keys[i]`` / ``slot_keys[i]``.
    """
    n_players, n_slots = len(player_keys), len(slot_keys)
    provisional = np.zeros(n_slots, dtype=bool) if slot_provisional is None else slot_provisional
    with engine.begin() as conn:
        copy_binary(
            conn,
            "player_embeddings",
            {
                "version_id": ("int4", np.full(n_players, version_id, dtype=np.int32)),
                "player_key": ("int8", np.asarray(player_keys, dtype=np.int64)),
                "idx": ("int4", np.arange(n_players, dtype=np.int32)),
                **{tower: ("vector", np.asarray(v, dtype=np.float32)) for tower, v in player_towers.items()},
            },
        )
        copy_binary(
            conn,
            "slot_embeddings",
            {
                "version_id": ("int4", np.full(n_slots, version_id, dtype=np.int32)),
                "slot_key": ("int4", np.asarray(slot_keys, dtype=np.int32)),
                "idx": ("int4", np.arange(n_slots, dtype=np.int32)),
                **{tower: ("vector", np.asarray(v, dtype=np.float32)) for tower, v in slot_towers.items()},
                "similarity": ("vector", np.asarray(slot_similarity, dtype=np.float32)),
            },
        )
        if provisional.any():
            conn.execute(
                sa.text("UPDATE slot_embeddings SET provisional = true WHERE version_id = :v AND idx = ANY(:idx)"),
                {"v": version_id, "idx": np.flatnonzero(provisional).tolist()},
            )
        conn.execute(
            sa.text("UPDATE model_versions SET n_players = :p, n_slots = :s WHERE id = :v"),
            {"p": n_players, "s": n_slots, "v": version_id},
        )


def write_offline(
    engine: sa.Engine,
    version_id: int,
    player_keys: np.ndarray,
    slot_keys: np.ndarray,
    slot_idx: np.ndarray,
    scores: np.ndarray,
) -> int:
    """Store each player's precomputed top-N. ``slot_idx``/``scores`` are ``(n_players, n)``, best
    first, ``-1`` padding where a player has fewer candidates; rows index ``player_keys``."""
    valid = slot_idx >= 0
    full = valid.all(axis=1)
    with engine.begin() as conn:
        written = copy_binary(
            conn,
            "offline_recommendations",
            {
                "version_id": ("int4", np.full(int(full.sum()), version_id, dtype=np.int32)),
                "player_key": ("int8", np.asarray(player_keys)[full]),
                "slot_keys": ("int4[]", np.asarray(slot_keys)[slot_idx[full]]),
                "scores": ("float8[]", scores[full].astype(np.float64)),
            },
        )
        short = np.flatnonzero(~full & valid.any(axis=1))
        if short.size:
            frame = pd.DataFrame(
                {
                    "version_id": version_id,
                    "player_key": np.asarray(player_keys)[short],
                    "slot_keys": [array_literal(slot_keys[slot_idx[r][valid[r]]]) for r in short],
                    "scores": [array_literal(scores[r][valid[r]]) for r in short],
                }
            )
            written += copy_frame(conn, "offline_recommendations", frame)
    return written


def pack_weights(state: dict[str, Any]) -> bytes:
    """A ``TrainedNCF.state()`` without the embedding tables, as npz bytes (config and history as JSON)."""
    buffer = io.BytesIO()
    arrays = {k: v for k, v in state["weights"].items() if k not in EMBEDDING_TABLES}
    meta = json.dumps({"config": state["config"], "history": state.get("history", [])})
    np.savez(buffer, __meta__=np.array(meta), **arrays)
    return buffer.getvalue()


def unpack_weights(blob: bytes) -> dict[str, Any]:
    """Inverse of :func:`pack_weights`: ``{"config", "history", "weights"}`` without embedding tables."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        meta = json.loads(str(npz["__meta__"]))
        weights = {k: npz[k] for k in npz.files if k != "__meta__"}
    return {"config": meta["config"], "history": meta["history"], "weights": weights}


def finish_version(
    engine: sa.Engine,
    version_id: int,
    *,
    state: dict[str, Any],
    metrics: dict[str, Any],
    similarity_vector: str,
    curve_path: str | None,
) -> None:
    """Store the scoring weights and metrics; the version becomes ``ready`` (not yet active)."""
    with engine.begin() as conn:
        updated = conn.execute(
            sa.text(
                "UPDATE model_versions SET status = 'ready', weights = :w, metrics = CAST(:m AS jsonb), "
                "similarity_vector = :sv, curve_path = :curve, ready_at = now() "
                "WHERE id = :id AND status = 'training'"
            ),
            {
                "id": version_id,
                "w": pack_weights(state),
                "m": json.dumps(metrics),
                "sv": similarity_vector,
                "curve": curve_path,
            },
        ).rowcount
    if updated != 1:
        raise VersionError(version_id, "is no longer training (marked failed by another run?)")


def set_metrics(engine: sa.Engine, version_id: int, metrics: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE model_versions SET metrics = metrics || CAST(:m AS jsonb) WHERE id = :id"),
            {"id": version_id, "m": json.dumps(metrics)},
        )


def activate(engine: sa.Engine, version_id: int, *, force: bool = False) -> ModelVersion:
    """Make ``version_id`` (ready or retired) the active version and NOTIFY, in one transaction.

    Activations are serialized by an advisory lock, so concurrent ones end with exactly one active
    version (the last to commit). A version the quality gate refused (``metrics.gate.passed`` false)
    raises ``VersionError`` unless ``force``; a forced activation is logged and recorded in the
    version's metrics as ``forced_activation`` (time and the gate's reason).
    """
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ACTIVATION_LOCK})
        row = conn.execute(
            sa.text("SELECT status, metrics FROM model_versions WHERE id = :id FOR UPDATE"), {"id": version_id}
        ).one_or_none()
        if row is None:
            raise VersionError(version_id, "does not exist")
        if row.status not in ("ready", "retired", "active"):
            raise VersionError(version_id, f"is {row.status}; only ready or retired versions can be activated")
        gate = (row.metrics or {}).get("gate") or {}
        if gate.get("passed") is False and row.status != "active":
            if not force:
                raise VersionError(
                    version_id, f"the quality gate refused it ({gate.get('reason', 'no reason recorded')}); "
                    "activate it with force to override"
                )
            log.warning("model version %d activated by force over the quality gate: %s", version_id,
                        gate.get("reason"))
            conn.execute(
                sa.text(
                    "UPDATE model_versions SET metrics = metrics || jsonb_build_object('forced_activation', "
                    "jsonb_build_object('at', now(), 'gate_reason', CAST(:reason AS text))) WHERE id = :id"
                ),
                {"id": version_id, "reason": gate.get("reason")},
            )
        conn.execute(
            sa.text(
                "UPDATE model_versions SET status = 'retired', retired_at = now() WHERE status = 'active' AND id <> :id"
            ),
            {"id": version_id},
        )
        conn.execute(
            sa.text(
                "UPDATE model_versions SET status = 'active', activated_at = now(), retired_at = NULL WHERE id = :id"
            ),
            {"id": version_id},
        )
        conn.execute(sa.text("SELECT recsys_notify(:channel, :payload)"),
                     {"channel": CHANNEL, "payload": str(version_id)})
        return _version(
            conn.execute(sa.text(f"SELECT {_COLUMNS} FROM model_versions WHERE id = :id"), {"id": version_id}).one()
        )


def retire_old(engine: sa.Engine, keep: int) -> list[int]:
    """Delete the embeddings of all but the ``keep`` newest non-active versions that finished.

    Their rows stay (status ``retired``, metrics kept) so old recommendations remain explainable;
    the bulky embedding rows go. A version an arm of the running experiment serves is kept whatever
    its age.
    """
    with engine.begin() as conn:
        old = list(
            conn.execute(
                sa.text(
                    "SELECT id FROM model_versions WHERE status IN ('ready', 'retired') AND id NOT IN ("
                    "  SELECT a.version_id FROM experiment_arms a JOIN experiments e ON e.id = a.experiment_id "
                    "  WHERE e.status = 'running' AND a.version_id IS NOT NULL) "
                    "ORDER BY id DESC OFFSET :keep"
                ),
                {"keep": keep},
            ).scalars()
        )
        if old:
            for table in ("player_embeddings", "slot_embeddings", "offline_recommendations"):
                conn.execute(sa.text(f"DELETE FROM {table} WHERE version_id = ANY(:ids)"), {"ids": old})
            conn.execute(
                sa.text(
                    "UPDATE model_versions SET status = 'retired', retired_at = coalesce(retired_at, now()), "
                    "weights = NULL WHERE id = ANY(:ids)"
                ),
                {"ids": old},
            )
    return old


def get_version(engine: sa.Engine, version_id: int) -> ModelVersion | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM model_versions WHERE id = :id"), {"id": version_id}
        ).one_or_none()
    return None if row is None else _version(row)


def active_version(engine: sa.Engine) -> ModelVersion | None:
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM model_versions WHERE status = 'active'")).one_or_none()
    return None if row is None else _version(row)


async def active_version_id(conn: AsyncConnection) -> int | None:
    """The active version's id, on the online path (:func:`active_version` reads the whole row)."""
    row = await (await conn.execute("SELECT id FROM model_versions WHERE status = 'active'")).fetchone()
    return None if row is None else row[0]


async def version_exists(conn: AsyncConnection, version_id: int) -> bool:
    cursor = await conn.execute("SELECT EXISTS (SELECT 1 FROM model_versions WHERE id = %s)", (version_id,))
    return (await cursor.fetchone())[0]


def list_versions(engine: sa.Engine, limit: int = 50) -> list[ModelVersion]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM model_versions ORDER BY id DESC LIMIT :limit"), {"limit": limit}
        ).all()
    return [_version(r) for r in rows]


def load_weights(engine: sa.Engine, version_id: int) -> dict[str, Any]:
    """The version's scoring state without the embedding tables (see :func:`unpack_weights`)."""
    with engine.connect() as conn:
        blob = conn.execute(sa.text("SELECT weights FROM model_versions WHERE id = :id"), {"id": version_id}).scalar()
    if blob is None:
        raise VersionError(version_id, "has no stored weights")
    return unpack_weights(bytes(blob))


def load_slot_vectors(engine: sa.Engine, version_id: int) -> SlotVectors:
    """Every slot row of a version, in ``idx`` order."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT slot_key, gmf, mlp, similarity, provisional FROM slot_embeddings "
                "WHERE version_id = :v ORDER BY idx"
            ).columns(gmf=Vector(), mlp=Vector(), similarity=Vector()),
            {"v": version_id},
        ).all()
    if not rows:
        raise VersionError(version_id, "has no slot embeddings")
    towers = {}
    for position, tower in ((1, "gmf"), (2, "mlp")):
        if rows[0][position] is not None:
            towers[tower] = np.stack([np.asarray(r[position], dtype=np.float32) for r in rows])
    return SlotVectors(
        version_id=version_id,
        slot_keys=np.array([r[0] for r in rows], dtype=np.int64),
        similarity=np.stack([np.asarray(r[3], dtype=np.float32) for r in rows]),
        towers=towers,
        provisional=np.array([r[4] for r in rows], dtype=bool),
    )


def load_player_vectors(engine: sa.Engine, version_id: int, player_keys: np.ndarray) -> tuple[np.ndarray, dict]:
    """Rows of the given players: ``(found_keys (m,), {"gmf": (m, f), "mlp": (m, f')})``."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT player_key, gmf, mlp FROM player_embeddings "
                "WHERE version_id = :v AND player_key = ANY(:keys) ORDER BY idx"
            ).columns(gmf=Vector(), mlp=Vector()),
            {"v": version_id, "keys": [int(k) for k in player_keys]},
        ).all()
    keys = np.array([r[0] for r in rows], dtype=np.int64)
    towers = {}
    for position, tower in ((1, "gmf"), (2, "mlp")):
        if rows and rows[0][position] is not None:
            towers[tower] = np.stack([np.asarray(r[position], dtype=np.float32) for r in rows])
    return keys, towers
