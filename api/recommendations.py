"""``GET /v1/players/{player_id}/recommendations``: one list for one player, gated, vetted, logged."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec
import numpy as np
from litestar import get
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter

from api.auth import READ
from api.errors import NotReady
from api.state import ServingState
from recsys.db import serving as db
from recsys.db import versions
from recsys.policy import (
    generate_candidates,
    model_logits,
    protection_gate,
    rank,
    towers_from_played,
)


class RecommendedItem(msgspec.Struct):
    slot_id: str
    score: float
    reason: str  # similar, personal, explore, popular, cold_start


class Suppression(msgspec.Struct):
    reason: str  # self_excluded, cooling_off, no_consent, risk_flag


class RecommendationList(msgspec.Struct):
    recommendation_id: uuid.UUID
    player_id: str
    model_version: int | None
    items: list[RecommendedItem]
    suppressed: Suppression | None


def recommend(
    serving: ServingState,
    player_id: str,
    *,
    k: int,
    context_slot: str | None = None,
    market: str | None = None,
    trigger: str = "api",
) -> RecommendationList:
    """Gate, candidates, SQL exclusions, ranking, log: see ``recsys.policy`` for the policy itself.

    ``market`` defaults to the player's own market. Raises ``NotFound`` for an unknown player or
    context slot, before anything is written. Three statements on one connection: the player, the
    exclusions, the log.
    """
    snap = serving.snapshot
    if not snap.catalogue_loaded:
        raise NotReady("the slot catalogue is not loaded yet")
    model = snap.model
    version_id = model.version_id if model is not None else active_version_id(serving)
    context_key = None
    if context_slot is not None:
        context_key = snap.catalogue.key_of.get(context_slot)
        if context_key is None:
            raise db.NotFound("slot", context_slot)
    with db.connection(serving.engine) as conn:
        player = db.find_player(conn, player_id, version_id)
        # A player with a market is served that market's catalogue whatever the request says: a
        # slot not offered there is never shown (issue 10); ``market`` serves players without one.
        market = player.market or market
        suppressed = protection_gate(player.protection, datetime.now(UTC))
        if suppressed is not None:
            items: list = []
            filters = list_filters(serving.settings, k, market, gate=suppressed)
        else:
            items, filters = ranked_items(serving, snap, conn, player, version_id, context_key, market, k)
        served = tuple(db.ServedItem(i.slot_key, i.score, i.reason, i.explored) for i in items)
        recommendation_id = uuid.uuid4()
        _log(serving, conn, db.ServedList(recommendation_id, player.key, version_id, trigger, context_key, market,
                                          suppressed, filters, served))
    if suppressed is not None:
        serving.metrics.suppressed(suppressed)
        return RecommendationList(recommendation_id, player_id, version_id, [], Suppression(suppressed))
    serving.metrics.served(filters["candidate_source"])
    slots = snap.catalogue.slots
    return RecommendationList(
        recommendation_id,
        player_id,
        version_id,
        [RecommendedItem(slots[i.slot_key].slot_id, round(i.score, 6), i.reason) for i in items],
        None,
    )


def ranked_items(serving: ServingState, snap, conn, player, version_id, context_key, market, k):
    """The policy's list for an allowed player, and the filters that made it."""
    settings = serving.settings
    config = settings.ranking
    model = snap.model
    towers = player.towers
    if towers is None and model is not None:
        towers = towers_from_played(model, player.recent_keys)
    personalised = model is not None and model.model is not None and towers is not None
    neighbours, search = None, ("faiss" if model is not None else None)
    if model is None and version_id is not None and context_key is not None:
        neighbours = db.similar_by_pgvector(
            serving.engine, version_id, context_key, config.candidate_pool, market, every_market=False
        )
        search = "pgvector"
        serving.metrics.fallback("pgvector")
    seed = None if settings.ranking.explore_seed is None else [settings.ranking.explore_seed, player.key]
    candidates = generate_candidates(
        k=k,
        catalogue=snap.catalogue,
        stats=snap.stats,
        popular=snap.popular,
        model=model,
        market=market,
        context_key=context_key,
        recent_keys=player.recent_keys,
        top_n_keys=player.top_n_keys,
        personalised=personalised,
        config=config,
        rng=np.random.default_rng(seed),
        neighbours=neighbours,
    )
    if candidates.source == "popular":
        serving.metrics.fallback("popularity" if personalised or model is None else "cold_start")
    allowed = db.vet_candidates(conn, player.key, candidates.all_keys(), market, settings.ranking.exclude_played_days)
    logits = model_logits(model, towers, candidates.primary) if personalised else None
    items = rank(candidates, allowed, k=k, catalogue=snap.catalogue, stats=snap.stats, config=config, logits=logits)
    filters = list_filters(settings, k, market, gate="allowed")
    filters.update(
        candidate_source=candidates.source,
        search=search,
        personalised=personalised,
        explored=sum(item.explored for item in items),
    )
    return items, filters


def list_filters(settings, k: int, market: str | None, *, gate: str) -> dict:
    return {
        "gate": gate,
        "k": k,
        "market": market,
        "exclude_played": settings.ranking.exclude_played,
        "exploration_share": settings.ranking.exploration_share,
        "provider_cap": settings.ranking.provider_cap,
        "blend_weight": settings.ranking.blend_weight,
    }


def active_version_id(serving: ServingState) -> int | None:
    """The active version when none is in memory yet (the pgvector fallback serves it)."""
    active = versions.active_version(serving.engine)
    return None if active is None else active.id


def _log(serving: ServingState, conn, served: db.ServedList) -> None:
    started = time.perf_counter()
    db.log_recommendation(conn, served, synchronous_commit=serving.settings.serving.log_synchronous_commit)
    serving.metrics.observe_log_write(time.perf_counter() - started)


@get("/v1/players/{player_id:str}/recommendations", guards=[READ], sync_to_thread=True, tags=["recommendations"])
def get_recommendations(
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
    return recommend(state.serving, player_id, k=k, context_slot=context_slot, market=market)


ROUTES = [get_recommendations]
