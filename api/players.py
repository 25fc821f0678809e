"""Players: ``PUT /v1/players[/{player_id}]`` (protection fields take effect on the next request)."""

from __future__ import annotations

import msgspec
from litestar import put
from litestar.datastructures import State
from litestar.params import FromPath, RawBody
from msgspec import UNSET, UnsetType

from api.auth import INGEST
from api.bodies import Id, Market, Timestamp, decode, documented
from api.ingest import PutResult, batch_of, batch_records, path_record, put_records


class PlayerFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A player's fields, as in the import format (docs/import-format.md). Leave out what does not change."""

    market: Market | None | UnsetType = UNSET
    registered_at: Timestamp | None | UnsetType = UNSET
    self_excluded_until: Timestamp | None | UnsetType = UNSET
    cooling_off_until: Timestamp | None | UnsetType = UNSET
    marketing_consent: bool | UnsetType = UNSET
    risk_flag: bool | UnsetType = UNSET


class PlayerRecord(PlayerFields, kw_only=True, forbid_unknown_fields=True):
    player_id: Id


@put("/v1/players/{player_id:str}", guards=[INGEST], sync_to_thread=True, tags=["players"])
def put_player(state: State, player_id: FromPath[str], body: RawBody) -> PutResult:
    """Create or update one player."""
    source = "PUT /v1/players/{player_id}"
    records = [path_record("player_id", player_id, decode(body, PlayerFields, source))]
    return put_records(state.serving.engine, "players", records, source, batch=False)


@put("/v1/players", guards=[INGEST], sync_to_thread=True, tags=["players"])
def put_player_batch(state: State, body: RawBody) -> PutResult:
    """Create or update many players in one transaction (all or none)."""
    records = batch_records(decode(body, list[PlayerRecord], "PUT /v1/players"), "PUT /v1/players")
    return put_records(state.serving.engine, "players", records, "PUT /v1/players", batch=True)


documented("put_player", "The fields to change; the id is the path's.", PlayerFields)
documented("put_player_batch", "Players with the fields to change (at most 10,000).", batch_of(PlayerRecord))

ROUTES = [put_player, put_player_batch]
