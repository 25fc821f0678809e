"""The trigger's list, replayed: what each policy would have served when a long session crossed the
threshold, scored against the slots the player newly played in the hours after (no I/O).

The lists are made by the serving functions themselves (``recsys.serving.candidates``,
``recsys.serving.ranking``, ``recsys.serving.model``) from the version as served, so the served
policy here is the policy in production, blend weight, exploration and provider cap included.

The protocol, per case (one long session of one player):

* **excluded** from every list: the context slot, every slot the player played before the crossing
  (the database's ``exclude_played``), and the ``hidden`` slots: those the player first played after
  the crossing but that the version trained on (the worker's holdout keeps one new slot per player
  out of training; the others would be scored by a model that has seen them);
* **targets**: the slots the player first played in the ``hours`` after the crossing that the version
  did not train on for this player; a case without one is not counted;
* **HR@10**: at least one target in the list; **NDCG@10**: ``1 / log2(2 + place)`` of the first target
  in the list (0 when none is), as for the one held-out slot of the sampled protocol.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.metrics import Figures
from recsys.serving.candidates import generate_candidates
from recsys.serving.catalogue import Catalogue, SlotStats
from recsys.serving.model import ServingModel, model_logits, towers_from_played
from recsys.serving.ranking import rank
from recsys.settings import Ranking

K = 10
RECENT_SLOTS = 5  # the player's latest slots the served list reads (recsys.db.lists.RECENT_SLOTS)
EXPLORE_DRAWS = 5  # exploration's draws averaged per case for the served policy


@dataclass(frozen=True)
class ReplayCase:
    """One long session at its crossing.

    Attributes
    ----------
    player_key, context_key : int
        The player and the slot of the long session.
    played_keys : np.ndarray, shape (p,)
        Slots the player played before the crossing, latest first.
    hidden_keys : np.ndarray
        Slots first played after the crossing that the version trained on: in no list, not targets.
    target_keys : np.ndarray
        Slots first played within the hours after the crossing that the version did not train on.
    towers : dict or None
        The player's vectors in the version (``{"gmf": (f,), "mlp": (f',)}``); None: built from the
        played slots as a list builds them, or not personalised.
    """

    player_key: int
    context_key: int
    played_keys: np.ndarray
    hidden_keys: np.ndarray
    target_keys: np.ndarray
    towers: dict[str, np.ndarray] | None


@dataclass(frozen=True)
class World:
    """What every list of a replay is made from: the version as served and the catalogue around it.

    ``popular`` is the active keys by popularity (``recsys.serving.catalogue.popularity_order``);
    ``cooccurrence(context_key, n)`` gives the ``n`` slot keys that co-occur most with the context
    slot (item-kNN), best first; ``top_n`` is the length of the player's precomputed list.
    """

    model: ServingModel
    catalogue: Catalogue
    stats: SlotStats
    popular: np.ndarray
    cooccurrence: Callable[[int, int], np.ndarray]
    top_n: int = 50


def hit_and_gain(listed: Sequence[int] | np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """``(hit, ndcg)`` of one list: 1 / 0, and ``1 / log2(2 + place)`` of its first target (0 if none)."""
    targets_set = set(np.asarray(targets).tolist())
    for place, key in enumerate(list(listed)[:K]):
        if int(key) in targets_set:
            return 1.0, float(1.0 / np.log2(place + 2))
    return 0.0, 0.0


def replay(
    cases: Sequence[ReplayCase],
    world: World,
    config: Ranking,
    *,
    draws: int = EXPLORE_DRAWS,
    seed: int = 0,
    policies: Sequence[str] = ("served", "served_exploit", "faiss", "model", "itemknn", "popularity"),
) -> dict[str, Figures]:
    """Each policy's mean HR@10 / NDCG@10 over ``cases`` (policy names as ``recsys.metrics.REPLAY_POLICIES``).

    ``served``: the served policy as ``config`` sets it, exploration's ``draws`` averaged per case
    (seeded by ``seed``); ``served_exploit``: the same with exploration off; ``faiss``: the context
    slot's FAISS neighbourhood in order; ``model``: the version's scores for this player over the
    allowed catalogue; ``itemknn``: the context slot's co-occurrence neighbours; ``popularity``.
    Every list leaves out the case's excluded slots and what the catalogue does not offer.
    """
    sums = {policy: np.zeros(2) for policy in policies}
    counted = 0
    exploit = dataclasses.replace(config, exploration_share=0.0)
    for case in cases:
        if case.target_keys.size == 0:
            continue
        counted += 1
        excluded = _excluded(world, case)
        for policy in policies:
            if policy == "served":
                figures = [
                    hit_and_gain(served_list(case, world, config, excluded, np.random.default_rng([seed, i])),
                                 case.target_keys)
                    for i in range(draws if config.exploration_share > 0 else 1)
                ]
                sums[policy] += np.mean(figures, axis=0)
            elif policy == "served_exploit":
                listed = served_list(case, world, exploit, excluded, np.random.default_rng(seed))
                sums[policy] += hit_and_gain(listed, case.target_keys)
            else:
                sums[policy] += hit_and_gain(_simple_list(policy, case, world, excluded), case.target_keys)
    if counted == 0:
        return {}
    return {policy: Figures(float(total[0] / counted), float(total[1] / counted)) for policy, total in sums.items()}


def counted_cases(cases: Sequence[ReplayCase]) -> int:
    """Cases with at least one target: those :func:`replay` averages over."""
    return sum(1 for case in cases if case.target_keys.size)


def served_list(case: ReplayCase, world: World, config: Ranking, excluded: np.ndarray,
                rng: np.random.Generator) -> list[int]:
    """The list the trigger serves at the crossing (``recsys.serving.lists``' steps, no database):
    candidates around the context slot, the excluded slots removed, ranked and blended."""
    model = world.model
    towers = player_towers(case, world)
    personalised = model.model is not None and towers is not None
    top_n = _model_top(towers, world, excluded, world.top_n) if personalised else np.zeros(0, dtype=np.int64)
    candidates = generate_candidates(
        k=K,
        catalogue=world.catalogue,
        stats=world.stats,
        popular=world.popular,
        model=model,
        market=None,
        context_key=case.context_key,
        recent_keys=case.played_keys[:RECENT_SLOTS],
        top_n_keys=top_n,
        personalised=personalised,
        config=config,
        rng=rng,
    )
    allowed = ~excluded[candidates.all_keys()]
    logits = model_logits(model, towers, candidates.primary) if personalised else None
    items = rank(candidates, allowed, k=K, catalogue=world.catalogue, stats=world.stats, config=config, logits=logits)
    return [item.slot_key for item in items]


def _excluded(world: World, case: ReplayCase) -> np.ndarray:
    """By key: the slots no list of this case may hold (played, hidden, the context, not offered)."""
    size = world.catalogue.active.size
    excluded = ~world.catalogue.offered(None)  # a new array; restricted slots too, as for a list without a market
    for keys in (case.played_keys, case.hidden_keys, np.array([case.context_key])):
        keys = np.asarray(keys, dtype=np.int64)
        excluded[keys[(keys >= 0) & (keys < size)]] = True
    return excluded


def _keep(keys: np.ndarray, excluded: np.ndarray, n: int = K) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.int64)
    keys = keys[(keys >= 0) & (keys < excluded.size)]
    return keys[~excluded[keys]][:n]


def player_towers(case: ReplayCase, world: World) -> dict[str, np.ndarray] | None:
    """The player's vectors as a list would read them: stored in the version, or built from their
    latest slots for a player the version does not know (``towers_from_played``)."""
    if case.towers is not None:
        return case.towers
    return towers_from_played(world.model, case.played_keys[:RECENT_SLOTS])


def _model_top(towers, world: World, excluded: np.ndarray, n: int) -> np.ndarray:
    """The version's ``n`` best allowed slots for a player with ``towers`` by its logits, best first."""
    keys = world.catalogue.keys[~excluded[world.catalogue.keys]]
    logits = model_logits(world.model, towers, keys)
    order = np.argsort(-logits, kind="stable")[:n]
    return keys[order][np.isfinite(logits[order])]


def _simple_list(policy: str, case: ReplayCase, world: World, excluded: np.ndarray) -> np.ndarray:
    model = world.model
    if policy == "faiss":
        row = model.row(case.context_key)
        if row < 0:
            return np.zeros(0, dtype=np.int64)
        # Searched here, not through ``neighbourhood``: its cache is for the serving k, not one k per case.
        keys, _ = model.index.search(model.similarity[row], min(model.index.ntotal, K + int(excluded.sum()) + 1))
        return _keep(keys[0], excluded)
    if policy == "model":
        towers = player_towers(case, world)
        if model.model is None or towers is None:
            return np.zeros(0, dtype=np.int64)
        return _model_top(towers, world, excluded, K)
    if policy == "itemknn":
        return _keep(world.cooccurrence(case.context_key, K + int(excluded.sum()) + 1), excluded)
    if policy == "popularity":
        return _keep(world.popular, excluded)
    raise ValueError(f"unknown replay policy {policy!r}")
