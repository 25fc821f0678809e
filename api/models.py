"""Model versions for operators: ``GET /v1/models``, ``POST /v1/models/{version}/activate`` (rollback)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from litestar import get, post
from litestar.datastructures import State
from litestar.params import Parameter, QueryParameter

from api.auth import ADMIN, READ
from recsys.db import versions
from recsys.errors import NotFound
from recsys.serving.state import ServingState


class ModelVersion(msgspec.Struct):
    id: int
    status: str  # training, ready, active, retired, failed
    model: str
    metrics: dict[str, Any]
    similarity_vector: str | None
    n_players: int | None
    n_slots: int | None
    data_start: date | None
    data_end: date | None
    created_at: datetime
    activated_at: datetime | None
    error: str | None
    serving: bool  # this process's index holds it

    @classmethod
    def of(cls, v: versions.ModelVersion, serving_id: int | None) -> ModelVersion:
        return cls(v.id, v.status, v.model, v.metrics, v.similarity_vector, v.n_players, v.n_slots, v.data_start,
                   v.data_end, v.created_at, v.activated_at, v.error, v.id == serving_id)


def _serving_id(serving: ServingState) -> int | None:
    model = serving.snapshot.model
    return None if model is None else model.version_id


@get("/v1/models", guards=[READ], sync_to_thread=True, tags=["models"])
def list_models(state: State, limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50) -> list[ModelVersion]:
    """Model versions, newest first."""
    serving = _serving_id(state.serving)
    return [ModelVersion.of(v, serving) for v in versions.list_versions(state.serving.engine, limit)]


@post("/v1/models/{version:int}/activate", guards=[ADMIN], sync_to_thread=True, status_code=200, tags=["models"])
def activate_model(
    state: State,
    version: Annotated[int, Parameter(ge=1, le=2**31 - 1)],
    force: Annotated[
        bool, QueryParameter(description="Activate a version the quality gate refused (logged and recorded).")
    ] = False,
) -> ModelVersion:
    """Make a ready or retired version the active one (a rollback is activating an older one).

    A version the quality gate refused is a 409 unless ``?force=true``. Every replica hears the
    NOTIFY and swaps its index; this one answers after its own swap.
    """
    serving: ServingState = state.serving
    if versions.get_version(serving.engine, version) is None:
        raise NotFound("model version", version)
    activated = versions.activate(serving.engine, version, force=force)
    serving.load_active_version()
    return ModelVersion.of(activated, _serving_id(serving))


ROUTES = [list_models, activate_model]
