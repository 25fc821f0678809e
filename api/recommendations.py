"""``GET /v1/players/{player_id}/recommendations``: one list for one player, gated, vetted, logged
(by ``recsys.serving.lists``: on the event loop, or from a worker thread while the active version
is not in memory and pgvector answers)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio
from litestar import get
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter

from api.auth import READ
from recsys.serving.lists import RecommendationList, recommend, recommend_async


@get("/v1/players/{player_id:str}/recommendations", guards=[READ], tags=["recommendations"])
async def get_recommendations(
    state: State,
    player_id: FromPath[str],
    k: Annotated[int, QueryParameter(ge=1, le=100, description="List length.")] = 10,
    context_slot: Annotated[
        str | None, QueryParameter(max_length=128, description="The slot being played or looked at.")
    ] = None,
    market: Annotated[
        str | None, QueryParameter(max_length=16, description="Market of a player who has none stored.")
    ] = None,
) -> RecommendationList:
    """Recommendations for a player: gated by player protection, played slots excluded, logged."""
    made = await recommend_async(state.serving, state.pool, player_id, k=k, context_slot=context_slot, market=market)
    if made is None:
        made = await anyio.to_thread.run_sync(
            partial(recommend, state.serving, player_id, k=k, context_slot=context_slot, market=market)
        )
    return made


ROUTES = [get_recommendations]
