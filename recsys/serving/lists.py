"""Making a list: the one place where a served list is gated, built, logged and counted.

One coroutine makes every list, whatever asked for it: ``GET .../recommendations``
(:func:`recommend`, on a connection of its own) and the long-session trigger (``recsys.tracker``
awaits :func:`make_list` on the connection whose transaction stores the events). Its steps, in
order:

1. the protection gate (``recsys.serving.gate``), fail-closed: a stopped player gets nothing;
   a player it allows, while an experiment runs, gets the model version of the arm the
   experiment assigns (``recsys.experiments.assign``), and everything else stays the same (a
   version not in memory yet is served through pgvector, as the active one is before its index
   loads: one more awaited statement). Every list made while an experiment runs logs its
   experiment and the player's arm, a suppressed one too (the share the gate stops per arm is a
   guardrail);
2. for a trigger past the session limit or in the night hours, no games (the tracker's decision);
3. otherwise candidates around the context slot (``recsys.serving.candidates``), the played,
   disabled and out-of-market slots removed as the player's query found them
   (``recsys.db.lists.read_player``), ranking (``recsys.serving.ranking``);
4. the log: the list and its items in one statement (``recsys.db.lists.log_lists``), on the
   request's connection or in the trigger's transaction (or, with ``RECSYS_LOG_GROUP_COMMIT``, with
   the lists of concurrent requests by group commit, ``recsys.db.lists.GroupCommit``); answered
   only after the commit;
5. the metrics: served or suppressed, the fallbacks taken, the log write's duration.

The list is a :class:`~recsys.served.ServedList`; the HTTP bodies are its views (:func:`answer`,
:func:`triggered`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from recsys.db import lists as db
from recsys.db import versions
from recsys.db.catalogue import similar_by_pgvector
from recsys.errors import NotFound, NotReady
from recsys.experiments import ITEMKNN, MODEL, POPULARITY, Arm, assign
from recsys.served import ServedItem, ServedList
from recsys.serving.candidates import generate_candidates
from recsys.serving.gate import Protection, protection_gate
from recsys.serving.model import ServingModel, model_logits, towers_from_played
from recsys.serving.ranking import rank
from recsys.serving.state import ServingState, Snapshot

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from recsys.db.lists import GroupCommit
    from recsys.db.pool import OnlinePool

API = "api"
SESSION_THRESHOLD = "session_threshold"
"""The triggers (``recommendations.trigger``): a request, and the long-session trigger."""


# --- the HTTP views of a list ------------------------------------------------------------------------


class RecommendedItem(msgspec.Struct):
    slot_id: str
    score: float
    reason: str  # similar, personal, explore, popular, cold_start


class Suppression(msgspec.Struct):
    reason: str  # self_excluded, cooling_off, no_consent, risk_flag (and for triggers session_limit, night_hours)


class RecommendationList(msgspec.Struct):
    """``GET .../recommendations``' body: :func:`answer`."""

    recommendation_id: uuid.UUID
    player_id: str
    model_version: int | None
    items: list[RecommendedItem]
    suppressed: Suppression | None


class TriggeredList(msgspec.Struct):
    """A list the long-session trigger produced, in the events answer and on the player's stream:
    :func:`triggered` (and ``recsys.serving.delivery`` for one read back from the log)."""

    recommendation_id: uuid.UUID
    player_id: str
    session_id: str | None
    context_slot: str | None  # the slot being played
    model_version: int | None
    trigger: str
    action: str | None  # reality_check: show that instead of games
    items: list[RecommendedItem]
    suppressed: Suppression | None  # why no games: a gate reason, session_limit or night_hours


def answer(served: ServedList) -> RecommendationList:
    return RecommendationList(served.recommendation_id, served.player_id, served.version_id, _items(served),
                              _suppression(served.suppressed))


def triggered(served: ServedList) -> TriggeredList:
    return TriggeredList(served.recommendation_id, served.player_id, served.session_id, served.context_slot_id,
                         served.version_id, served.trigger, served.action, _items(served),
                         _suppression(served.suppressed))


def _items(served: ServedList) -> list[RecommendedItem]:
    return [RecommendedItem(i.slot_id, round(i.score, 6), i.reason) for i in served.items]


def _suppression(reason: str | None) -> Suppression | None:
    return None if reason is None else Suppression(reason)


# --- making one ---------------------------------------------------------------------------------------


async def recommend(
    serving: ServingState, pool: OnlinePool, log: GroupCommit | None, player_id: str, *, k: int,
    context_slot: str | None = None, market: str | None = None,
) -> ServedList:
    """A list asked for by ``GET .../recommendations``: the player read on a connection of ``pool``'s,
    the list logged by ``log``'s group commit (None: on that connection); returns after its commit.

    ``market`` serves a player without one stored. Raises ``NotFound`` for an unknown player or
    context slot before anything is written.
    """
    snap = serving.snapshot
    context_key = _context_key(snap, context_slot)
    async with pool.connection() as conn:
        return await make_list(conn, serving, snap, player_id, k=k, trigger=API, context_key=context_key,
                               context_slot_id=context_slot, market=market, log=None if log is None else log.log)


def _context_key(snap: Snapshot, context_slot: str | None) -> int | None:
    if context_slot is None:
        return None
    context_key = snap.catalogue.key_of.get(context_slot)
    if context_key is None:
        raise NotFound("slot", context_slot)
    return context_key


async def make_list(
    conn: AsyncConnection,
    serving: ServingState,
    snap: Snapshot,
    player_id: str,
    *,
    k: int,
    trigger: str,
    context_key: int | None = None,
    context_slot_id: str | None = None,
    market: str | None = None,
    session_key: int | None = None,
    session_id: str | None = None,
    continuous_seconds: float | None = None,
    late_reason: str | None = None,
    action: str | None = None,
    synchronous_commit: bool | None = None,
    log: Callable[[ServedList], Awaitable[None]] | None = None,
) -> ServedList:
    """Gate, build, log and count one list for ``player_id`` over ``snap`` on ``conn`` (the steps of
    the module docstring): two statements, the player's read, then the log (three while the version
    to serve is not in memory: pgvector's neighbours).

    ``context_key``: the slot being played or looked at (None: the player's recent slots seed the
    list). ``market``: for a player without one stored (a player's own market always wins: a slot
    not offered there is never shown). A trigger passes its session (``session_key``,
    ``session_id``, ``continuous_seconds``) and, past the session limit or in the night hours, the
    ``late_reason`` and ``action`` that replace the games. The list is logged on ``conn`` (in its
    transaction, if any), or by ``log`` (the API's group commit); either way before this returns.
    ``synchronous_commit``: whether the log's commit on ``conn`` waits for the WAL flush; None:
    ``settings.serving.log_synchronous_commit`` (a caller whose transaction holds acknowledged events
    passes True). Raises ``NotReady`` before the catalogue is
    loaded and ``NotFound`` for an unknown player, before anything is written.
    """
    if not snap.catalogue_loaded:
        raise NotReady("the slot catalogue is not loaded yet")
    if not snap.experiment_read:  # a list made outside a running experiment would give a second arm
        raise NotReady("the running experiment is not read yet")
    model = snap.model
    version_id = model.version_id if model is not None else await versions.active_version_id(conn)
    arm, arm_model = _arm(snap, player_id)
    # The arm is a hash of the player id, known before the player is read: read the arm version's
    # player vector and top-N (the gate below decides whether the arm is used at all).
    player = await db.read_player(conn, player_id, version_id if arm is None else arm.version_id, market=market,
                                  played_days=serving.settings.ranking.exclude_played_days)
    market = player.market or market
    protection = Protection(player.self_excluded_until, player.cooling_off_until, player.marketing_consent,
                            player.risk_flag)
    gate = protection_gate(protection, datetime.now(UTC))
    items: list[ServedItem] = []
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
        neighbours, search = None, ("faiss" if model is not None else None)
        pool_size = serving.settings.ranking.candidate_pool
        if strategy == ITEMKNN:
            neighbours, search = snap.itemknn.around(context_key, player.recent_keys, pool_size), "itemknn"
        elif model is None and version_id is not None and context_key is not None:
            neighbours = await similar_by_pgvector(conn, version_id, context_key, pool_size, market,
                                                   every_market=False)
            search = "pgvector"
            serving.metrics.fallback("pgvector")
        items, chosen = _ranked_items(serving, snap, model, player, context_key, market, k, neighbours, search)
        filters.update(chosen)
    filters["strategy"] = strategy
    if continuous_seconds is not None:
        filters["continuous_seconds"] = continuous_seconds
    served = ServedList(
        uuid.uuid4(), player_id, player.key, version_id, trigger, logged_context, context_slot_id, market,
        tuple(items), filters, gate=gate, suppressed=suppressed, action=None if gate is not None else action,
        session_key=session_key, session_id=session_id,
        experiment_id=None if arm is None else snap.experiment.id, arm=None if arm is None else arm.name,
    )
    if synchronous_commit is None:
        synchronous_commit = serving.settings.serving.log_synchronous_commit
    started = time.perf_counter()
    if log is None:
        await db.log_lists(conn, [served], synchronous_commit=synchronous_commit)
    else:
        await log(served)
    serving.metrics.observe_log_write(time.perf_counter() - started)
    if suppressed is not None:
        serving.metrics.suppressed(suppressed)
    else:
        serving.metrics.served(filters["candidate_source"])
    return served


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
    serving: ServingState, snap: Snapshot, model: ServingModel | None, player: db.PlayerRow, context_key, market, k,
    neighbours: tuple[np.ndarray, np.ndarray] | None, search: str | None,
) -> tuple[list[ServedItem], dict]:
    """The policy's list for an allowed player ranked by ``model`` (the active version's, or an
    experiment arm's), around ``neighbours`` where the index does not give them (an item-kNN arm's
    neighbourhood, or pgvector's), and the filters that made it."""
    config = serving.settings.ranking
    towers = player.towers
    if towers is None and model is not None:
        towers = towers_from_played(model, player.recent_keys)
    personalised = model is not None and model.model is not None and towers is not None
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
        explore=snap.explore_bank(market, config.explore_max_impressions),
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
