"""The slot catalogue: ``PUT /v1/slots[/{slot_id}]`` and ``GET /v1/slots/{slot_id}/similar``."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Response, get, put
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter, RawBody
from msgspec import UNSET, UnsetType

from api.auth import INGEST, READ_FROM_MEMORY
from api.bodies import Amount, Day, Id, Markets, Text, decode, documented, one_of
from api.ingest import PutResult, batch_of, batch_records, path_record, put_records
from recsys.constants import VOLATILITIES
from recsys.serving.similar import SimilarSlots, similar_by_pgvector, similar_in_memory
from recsys.serving.state import ServingState


@get("/v1/slots/{slot_id:str}/similar", guards=[READ_FROM_MEMORY], tags=["catalogue"])
async def get_similar(
    state: State,
    slot_id: FromPath[str],
    k: Annotated[int, QueryParameter(ge=1, le=100, description="List length.")] = 10,
    market: Annotated[str | None, QueryParameter(max_length=16, description="Only slots offered here.")] = None,
    version: Annotated[
        int | None, QueryParameter(ge=1, description="Model version (default: the active one).")
    ] = None,
) -> Response[SimilarSlots]:
    """Slots similar to this one (cosine of the version's slot vectors); header ``X-Recsys-Search``
    says whether the in-memory FAISS index or the pgvector fallback answered."""
    serving: ServingState = state.serving
    body, search = similar_in_memory(serving, slot_id, k=k, market=market, version=version), "faiss"
    if body is None:
        body = await similar_by_pgvector(serving, state.pool, slot_id, k=k, market=market, version=version)
        search = "pgvector"
    return Response(body, headers={"X-Recsys-Search": search})


# --- PUT ---------------------------------------------------------------------------------------------


class SlotFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A slot's fields, as in the import format (docs/import-format.md). Leave out what does not change."""

    name: Text | UnsetType = UNSET
    provider: Text | UnsetType = UNSET
    theme: Text | UnsetType = UNSET
    volatility: Annotated[str, one_of(*VOLATILITIES)] | UnsetType = UNSET
    rtp: Annotated[float, msgspec.Meta(extra_json_schema={"minimum": 0.01, "maximum": 100})] | UnsetType = UNSET
    min_bet: Amount | UnsetType = UNSET
    max_bet: Amount | UnsetType = UNSET
    release_date: Day | None | UnsetType = UNSET
    active: bool | UnsetType = UNSET
    markets: Markets | None | UnsetType = UNSET  # None or empty: every market


class SlotRecord(SlotFields, kw_only=True, forbid_unknown_fields=True):
    slot_id: Id


def put_slots(serving: ServingState, records: list[dict], source: str, *, batch: bool) -> PutResult:
    """Upsert, then reload this process's catalogue before answering: the next request here sees
    the change; other processes hear it through the ``recsys_catalogue`` NOTIFY."""
    result = put_records(serving.engine, "slots", records, source, batch=batch)
    serving.refresh_catalogue()
    return result


@put("/v1/slots/{slot_id:str}", guards=[INGEST], sync_to_thread=True, tags=["catalogue"])
def put_slot(state: State, slot_id: FromPath[str], body: RawBody) -> PutResult:
    """Create or update one slot; a new slot needs every required field."""
    source = "PUT /v1/slots/{slot_id}"
    return put_slots(state.serving, [path_record("slot_id", slot_id, decode(body, SlotFields, source))], source,
                     batch=False)


@put("/v1/slots", guards=[INGEST], sync_to_thread=True, tags=["catalogue"])
def put_slot_batch(state: State, body: RawBody) -> PutResult:
    """Create or update many slots in one transaction (all or none)."""
    records = batch_records(decode(body, list[SlotRecord], "PUT /v1/slots"), "PUT /v1/slots")
    return put_slots(state.serving, records, "PUT /v1/slots", batch=True)


documented("put_slot", "The fields to change; the id is the path's.", SlotFields)
documented("put_slot_batch", "Slots with the fields to change (at most 10,000).", batch_of(SlotRecord))


ROUTES = [get_similar, put_slot, put_slot_batch]
