"""Making a list: the one place where a served list is gated, built, logged and counted.

One flow makes every list, whatever asked for it: ``GET .../recommendations`` (through
:func:`recommend_async`, on the event loop, or :func:`recommend` on a blocking connection of its own
while the active version is not in memory) and the long-session trigger (:func:`list_flow`, a step
of ``recsys.tracker``'s own flow, inside the transaction that stores the events). The flow
is a generator of its two statements (``recsys.db.engine.Statement``), so one piece of code serves
both kinds of connection. Its steps, in order:

1. the protection gate (``recsys.serving.gate``), fail-closed: a stopped player gets nothing;
   a player it allows, while an experiment runs, gets the model version of the arm the
   experiment assigns (``recsys.experiments.assign``), and everything else stays the same (a
   version not in memory yet is served through pgvector, as the active one is before its index
   loads). Every list made while an experiment runs logs its experiment and the player's arm,
   a suppressed one too (the share the gate stops per arm is a guardrail);
2. for a trigger past the session limit or in the night hours, no games (the tracker's decision);
3. otherwise candidates around the context slot (``recsys.serving.candidates``), the played,
   disabled and out-of-market slots removed as the player's query found them
   (``recsys.db.lists.player_statement``), ranking (``recsys.serving.ranking``);
4. the log: the list and its items in one statement (``recsys.db.lists.log_statement``);
5. the metrics: served or suppressed, the fallbacks taken, the log write's duration.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from recsys.db import lists as db
from recsys.db import versions
from recsys.db.catalogue import similar_by_pgvector
from recsys.db.engine import Flow, Statement, connection, run
from recsys.errors import NotFound, NotReady
from recsys.experiments import ITEMKNN, MODEL, POPULARITY, Arm, assign
from recsys.serving.candidates import generate_candidates
from recsys.serving.gate import Protection, protection_gate
from recsys.serving.itemknn import ItemNeighbours
from recsys.serving.model import ServingModel, model_logits, towers_from_played
from recsys.serving.ranking import RankedItem, rank
from recsys.serving.state import ServingState, Snapshot

if TYPE_CHECKING:

    from recsys.db.pool import AsyncPool

API = "api"
SESSION_THRESHOLD = "session_threshold"
"""The triggers (``recommendations.trigger``): a request, and the long-session trigger."""


class RecommendedItem(msgspec.Struct):
    slot_id: str
    score: float
    reason: str  # similar, personal, explore, popular, cold_start


class Suppression(msgspec.Struct):
    reason: str  # self_excluded, cooling_off, no_consent, risk_flag (and for triggers session_limit, night_hours)


class RecommendationList(msgspec.Struct):
    recommendation_id: uuid.UUID
    player_id: str
    model_version: int | None
    items: list[RecommendedItem]
    suppressed: Suppression | None


class TriggeredList(msgspec.Struct):
    """A list the long-session trigger produced: in the events answer and on the player's stream."""

    recommendation_id: uuid.UUID
    player_id: str
    session_id: str | None
    context_slot: str | None  # the slot being played
    model_version: int | None
    trigger: str
    action: str | None  # reality_check: show that instead of games
    items: list[RecommendedItem]
    suppressed: Suppression | None  # why no games: a gate reason, session_limit or night_hours


@dataclass(frozen=True)
class MadeList:
    """One list as made and logged."""

    recommendation_id: uuid.UUID
    player_id: str
    version_id: int | None
    items: list[RecommendedItem]
    gate: str | None  # the protection gate's reason, None: allowed
    suppressed: str | None  # the gate's reason, or a late-session reason; None: games
    action: str | None


def recommend(
    serving: ServingState, player_id: str, *, k: int, context_slot: str | None = None, market: str | None = None
) -> RecommendationList:
    """A list asked for by ``GET .../recommendations``, on a blocking connection of its own (from a
    worker thread: the API uses it when :func:`recommend_async` cannot serve).

    ``market`` serves a player without one stored. Raises ``NotFound`` for an unknown player or
    context slot before anything is written.
    """
    snap = serving.snapshot
    context_key = _context_key(snap, context_slot)
    with connection(serving.engine) as conn:
        made = run(conn, _flow(serving, snap, player_id, k=k, trigger=API, context_key=context_key, market=market))
    return _answer(made)


async def recommend_async(
    serving: ServingState, pool: AsyncPool, player_id: str, *, k: int, context_slot: str | None = None,
    market: str | None = None,
) -> RecommendationList | None:
    """:func:`recommend` on the event loop, with ``pool``'s connections; None when the active
    version, or a version of the running experiment's arms, is not in memory (then the list may
    need blocking pgvector reads: :func:`recommend`)."""
    snap = serving.snapshot
    if snap.model is None or snap.missing_versions():
        return None
    context_key = _context_key(snap, context_slot)
    made = await pool.run(
        lambda: _flow(serving, snap, player_id, k=k, trigger=API, context_key=context_key, market=market)
    )
    return _answer(made)


def _context_key(snap: Snapshot, context_slot: str | None) -> int | None:
    if context_slot is None:
        return None
    context_key = snap.catalogue.key_of.get(context_slot)
    if context_key is None:
        raise NotFound("slot", context_slot)
    return context_key


def _answer(made: MadeList) -> RecommendationList:
    suppression = None if made.suppressed is None else Suppression(made.suppressed)
    return RecommendationList(made.recommendation_id, made.player_id, made.version_id, made.items, suppression)


def list_flow(serving: ServingState, snap: Snapshot, player_id: str, **options) -> Flow[MadeList]:
    """The flow that gates, builds, logs and counts one list for ``player_id`` over ``snap`` (the
    steps of the module docstring), for a caller whose own flow makes lists in its transaction
    (``recsys.tracker``: ``yield from list_flow(...)``), or ``recsys.db.engine.run`` on a connection;
    ``options`` are :func:`_flow`'s. Raises ``NotReady`` before the catalogue is loaded and
    ``NotFound`` for an unknown player, before anything is written."""
    return _flow(serving, snap, player_id, **options)


def _flow(
    serving: ServingState,
    snap: Snapshot,
    player_id: str,
    *,
    k: int,
    trigger: str,
    context_key: int | None = None,
    market: str | None = None,
    session_key: int | None = None,
    continuous_seconds: float | None = None,
    late_reason: str | None = None,
    action: str | None = None,
    synchronous_commit: bool | None = None,
) -> Generator[Statement, Any, MadeList]:
    """The list as a flow of two statements (``recsys.db.engine.Statement``): the player's read,
    then the log; the same code for a blocking connection and for the event loop.

    ``context_key``: the slot being played or looked at (None: the player's recent slots seed the
    list). ``market``: for a player without one stored (a player's own market always wins: a slot
    not offered there is never shown). A trigger passes its session (``session_key``,
    ``continuous_seconds``) and, past the session limit or in the night hours, the ``late_reason``
    and ``action`` that replace the games. ``synchronous_commit``: whether the log's commit waits
    for the WAL flush; None: ``settings.serving.log_synchronous_commit`` (a caller whose transaction
    holds acknowledged events passes True). Without the active version in ``snap``, the pgvector
    fallback reads on ``serving.engine`` (blocking).
    """
    if not snap.catalogue_loaded:
        raise NotReady("the slot catalogue is not loaded yet")
    if not snap.experiment_read:  # a list made outside a running experiment would give a second arm
        raise NotReady("the running experiment is not read yet")
    model = snap.model
    version_id = model.version_id if model is not None else _active_version_id(serving)
    arm, arm_model = _arm(snap, player_id)
    # The arm is a hash of the player id, known before the player is read: read the arm version's
    # player vector and top-N (the gate below decides whether the arm is used at all).
    player = db.player_row((yield db.player_statement(
        player_id, version_id if arm is None else arm.version_id, market=market,
        played_days=serving.settings.ranking.exclude_played_days,
    )), player_id)
    market = player.market or market
    protection = Protection(player.self_excluded_until, player.cooling_off_until, player.marketing_consent,
                            player.risk_flag)
    gate = protection_gate(protection, datetime.now(UTC))
    items: list[RankedItem] = []
    # What ranks the list: a model version, or a baseline (an experiment arm's, or popularity when
    # no version is active); logged in ``filters`` with every list.
    strategy = MODEL if version_id is not None else POPULARITY
    if arm is not None:
        strategy = arm.strategy
    logged_context = context_key  # as asked, even a slot this process does not know yet
    filters = list_filters(serving.settings, k, market, gate=gate or "allowed")
    if gate is not None or late_reason is not None:
        suppressed = gate or late_reason  # logged with the player's arm: the arm's share the gate stops
    else:
        suppressed = None
        if arm is not None:  # arm_model None: a baseline arm, or a version served through pgvector
            model, version_id = arm_model, arm.version_id
            if strategy == ITEMKNN and snap.itemknn is None:  # seconds after the start: nothing written yet
                raise NotReady(f"experiment {snap.experiment.name!r}: the item-kNN arm's neighbours are being built")
        # A slot added a moment ago may not be in this process's catalogue yet: then the player's
        # recent slots seed the list instead.
        if context_key is not None and context_key not in snap.catalogue.slots:
            context_key = None
        items, chosen = _ranked_items(serving, snap, model, player, version_id, context_key, market, k,
                                      itemknn=snap.itemknn if strategy == ITEMKNN else None)
        filters.update(chosen)
    filters["strategy"] = strategy
    if continuous_seconds is not None:
        filters["continuous_seconds"] = continuous_seconds
    recommendation_id = uuid.uuid4()
    served = db.ServedList(
        recommendation_id, player.key, version_id, trigger, logged_context, market, suppressed, filters,
        tuple(db.ServedItem(i.slot_key, i.score, i.reason, i.explored) for i in items),
        session_key=session_key, action=None if gate is not None else action,
        experiment_id=None if arm is None else snap.experiment.id, arm=None if arm is None else arm.name,
    )
    if synchronous_commit is None:
        synchronous_commit = serving.settings.serving.log_synchronous_commit
    started = time.perf_counter()
    yield db.log_statement(served, synchronous_commit=synchronous_commit)
    serving.metrics.observe_log_write(time.perf_counter() - started)
    if suppressed is not None:
        serving.metrics.suppressed(suppressed)
    else:
        serving.metrics.served(filters["candidate_source"])
    slots = snap.catalogue.slots
    return MadeList(
        recommendation_id,
        player_id,
        version_id,
        [RecommendedItem(slots[i.slot_key].slot_id, round(i.score, 6), i.reason) for i in items],
        gate,
        suppressed,
        served.action,
    )


def _arm(snap: Snapshot, player_id: str) -> tuple[Arm | None, ServingModel | None]:
    """The running experiment's arm for this player and the model it ranks with: None for a
    popularity arm, and for a version not in memory yet (then pgvector serves it); no arm when no
    experiment runs."""
    experiment = snap.experiment
    if experiment is None:
        return None, None
    arm = assign(experiment, player_id)
    return arm, None if arm.version_id is None else snap.model_of(arm.version_id)


def _ranked_items(
    serving: ServingState, snap: Snapshot, model: ServingModel | None, player: db.PlayerRow, version_id,
    context_key, market, k, *, itemknn: ItemNeighbours | None = None,
) -> tuple[list[RankedItem], dict]:
    """The policy's list for an allowed player ranked by ``model`` (the active version's, or an
    experiment arm's), or by ``itemknn``'s neighbours (an item-kNN arm: the neighbourhood takes the
    place of the index's, the rest of the policy is the same code), and the filters that made it."""
    config = serving.settings.ranking
    towers = player.towers
    if towers is None and model is not None:
        towers = towers_from_played(model, player.recent_keys)
    personalised = model is not None and model.model is not None and towers is not None
    neighbours, search = None, ("faiss" if model is not None else None)
    if itemknn is not None:
        neighbours, search = itemknn.around(context_key, player.recent_keys, config.candidate_pool), "itemknn"
    elif model is None and version_id is not None and context_key is not None:
        neighbours = similar_by_pgvector(
            serving.engine, version_id, context_key, config.candidate_pool, market, every_market=False
        )
        search = "pgvector"
        serving.metrics.fallback("pgvector")
    # Unseeded, the process's generator draws for every list: seeding a fresh one per list costs ~30 µs
    # of CPU (measured), 4% of the policy's time.
    rng = serving.rng if config.explore_seed is None else np.random.default_rng([config.explore_seed, player.key])
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
        rng=rng,
        neighbours=neighbours,
        pool=snap.explore_pool(market, config.explore_max_impressions),
    )
    if candidates.source == "popular":
        serving.metrics.fallback("popularity" if personalised or model is None else "cold_start")
    # Every candidate is offered in ``market`` by this catalogue, so its key indexes the mask.
    allowed = player.allowed_by_key(snap.catalogue.offered(market))[candidates.all_keys()]
    logits = model_logits(model, towers, candidates.primary) if personalised else None
    items = rank(candidates, allowed, k=k, catalogue=snap.catalogue, stats=snap.stats, config=config, logits=logits)
    return items, {
        "candidate_source": candidates.source,
        "search": search,
        "personalised": personalised,
        "explored": sum(item.explored for item in items),
    }


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


def _active_version_id(serving: ServingState) -> int | None:
    """The active version when none is in memory yet (the pgvector fallback serves it)."""
    active = versions.active_version(serving.engine)
    return None if active is None else active.id
