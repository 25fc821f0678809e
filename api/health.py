"""``/healthz`` (the process is alive) and ``/readyz`` (database reachable and an index loaded)."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.datastructures import State


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    ready: bool
    detail: str
    model_version: int | None


@get("/healthz", tags=["operations"])
async def healthz() -> Health:
    """Alive: answers while the process runs, whatever the database does."""
    return Health("ok")


@get("/readyz", sync_to_thread=True, tags=["operations"])
def readyz(state: State) -> Response[Readiness]:
    """Ready: 200 when the database answers and a model version's index is in memory, else 503."""
    ready, detail = state.serving.ready()
    model = state.serving.snapshot.model
    body = Readiness(ready, detail, None if model is None else model.version_id)
    return Response(body, status_code=200 if ready else 503)


ROUTES = [healthz, readyz]
