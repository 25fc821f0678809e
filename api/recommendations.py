"""``GET /v1/players/{player_id}/recommendations``: one list for one player, gated, vetted, logged
(by ``recsys.serving.lists``, on the event loop)."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter

from api.auth import READ
from recsys.serving.lists import RecommendationList, answer, recommend


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
    served = await recommend(state.serving, state.pool, state.list_log, player_id, k=k, context_slot=context_slot,
                             market=market)
    return answer(served)


ROUTES = [get_recommendations]
