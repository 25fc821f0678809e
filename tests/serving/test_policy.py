from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from recsys.ncf.config import NCFConfig
from recsys.serving.candidates import explore_count, generate_candidates
from recsys.serving.catalogue import Catalogue, SlotInfo, SlotStats, popularity_order
from recsys.serving.gate import Protection, protection_gate
from recsys.serving.model import (
    build_serving_model,
    model_logits,
    provisional_vectors,
    similar_slots,
    towers_from_played,
)
from recsys.serving.ranking import rank
from recsys.settings import Ranking

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


# --- the gate ------------------------------------------------------------------------------------


def _protection(**changes) -> Protection:
    fields = {"self_excluded_until": None, "cooling_off_until": None, "marketing_consent": True, "risk_flag": False}
    return Protection(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"self_excluded_until": NOW + timedelta(days=1)}, "self_excluded"),
        ({"self_excluded_until": NOW - timedelta(seconds=1)}, None),  # the exclusion has ended
        ({"cooling_off_until": NOW + timedelta(hours=1)}, "cooling_off"),
        ({"marketing_consent": False}, "no_consent"),
        ({"marketing_consent": None}, "no_consent"),  # unknown consent is no consent
        ({"risk_flag": True}, "risk_flag"),
        ({"risk_flag": None}, "risk_flag"),  # fail-closed
        ({"self_excluded_until": NOW + timedelta(days=1), "marketing_consent": False}, "self_excluded"),
        ({"cooling_off_until": NOW + timedelta(days=1), "risk_flag": True}, "cooling_off"),
    ],
)
def test_protection_gate(changes, reason):
    assert protection_gate(_protection(**changes), NOW) == reason


# --- a small world: 12 slots on a circle, so the neighbours of each are known -----------------------

PROVIDERS = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "c", "d", "d"]


def _catalogue(overrides=None) -> Catalogue:
    overrides = overrides or {}
    slots = []
    for i in range(12):
        key = i + 1
        info = {"key": key, "slot_id": f"s{key}", "provider": PROVIDERS[i], "theme": "fruit", "volatility": "low",
                "active": True, "markets": None}
        info.update(overrides.get(key, {}))
        slots.append(SlotInfo(**info))
    return Catalogue.from_slots(slots)


def _circle(n=12) -> np.ndarray:
    """Slot ``i`` at ``i * 12`` degrees: its nearest neighbours are ``i +- 1``, then ``i +- 2`` ..."""
    angles = np.radians(np.arange(n) * 12.0)
    return np.stack([np.cos(angles), np.sin(angles), np.zeros(n), np.zeros(n)], axis=1).astype(np.float32)


def _model(catalogue, keys=None, item_gmf=None):
    keys = np.arange(1, 13) if keys is None else keys
    similarity = _circle()[keys - 1]
    gmf = similarity[:, :2].copy() if item_gmf is None else item_gmf
    weights = {"config": NCFConfig(model="gmf", factors=2).to_dict(),
               "weights": {"predict.weight": np.ones((1, 2), np.float32), "predict.bias": np.zeros(1, np.float32)}}
    return build_serving_model(7, keys, similarity, {"gmf": gmf}, np.zeros(keys.size, bool), weights, catalogue,
                               "IDMap,Flat")


def _candidates(catalogue, model, *, k=3, context=1, config=None, stats=None, personalised=False, seed=0, **kw):
    stats = stats or SlotStats()
    return generate_candidates(
        k=k, catalogue=catalogue, stats=stats, popular=popularity_order(catalogue, stats), model=model,
        market=kw.get("market"), context_key=context, recent_keys=kw.get("recent", np.zeros(0, np.int64)),
        top_n_keys=kw.get("top_n", np.zeros(0, np.int64)), personalised=personalised,
        config=config or Ranking(exploration_share=0.0, provider_cap=10), rng=np.random.default_rng(seed),
    )


def _everything(candidates):
    return np.ones(candidates.all_keys().size, dtype=bool)


# --- provisional vectors -------------------------------------------------------------------------


def test_provisional_vectors_come_from_the_most_specific_group_with_members():
    slots = [
        SlotInfo(1, "known-1", "acme", "fruit", "low", True, None),
        SlotInfo(2, "known-2", "acme", "fruit", "high", True, None),
        SlotInfo(3, "known-3", "zeta", "egypt", "low", True, None),
        SlotInfo(4, "same-all-three", "acme", "fruit", "low", True, None),
        SlotInfo(5, "same-theme-volatility", "other", "fruit", "high", True, None),
        SlotInfo(6, "same-provider", "zeta", "space", "medium", True, None),
        SlotInfo(7, "nothing-shared", "new", "space", "medium", True, None),
    ]
    known = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    out = provisional_vectors(Catalogue.from_slots(slots), np.array([1, 2, 3]), known, np.array([4, 5, 6, 7]))
    np.testing.assert_allclose(out, [[1, 0], [0, 1], [-1, 0], [0, 1 / 3]], atol=1e-6)


def test_a_slot_added_after_training_gets_a_row_in_the_index():
    catalogue = _catalogue({12: {"provider": "a", "theme": "space"}})
    # The version knows slots 1..11; slot 12 is new. Its group (theme "space") has no trained member,
    # so it takes the provider's mean: slots 1-4.
    model = _model(catalogue, keys=np.arange(1, 12))
    assert model.trained_rows == 11 and model.slot_keys.size == 12
    assert model.provisional.tolist() == [False] * 11 + [True]
    expected = _circle()[:4].mean(axis=0)
    np.testing.assert_allclose(model.similarity[model.rows(np.array([12]))[0]], expected / np.linalg.norm(expected),
                               atol=1e-6)
    keys, _ = model.index.search(model.similarity[11], 1)
    assert keys[0, 0] == 12


def test_a_new_slot_is_scored_with_its_group_s_item_bias():
    catalogue = _catalogue({12: {"provider": "a", "theme": "space"}})
    keys = np.arange(1, 12)
    similarity = _circle()[keys - 1]
    bias = np.arange(11, dtype=np.float32)[:, None]  # slots 1-4 (provider a): 0, 1, 2, 3
    weights = {"config": NCFConfig(model="gmf", factors=2, item_bias=True).to_dict(),
               "weights": {"predict.weight": np.zeros((1, 2), np.float32), "predict.bias": np.zeros(1, np.float32),
                           "item_bias.weight": bias}}
    model = build_serving_model(7, keys, similarity, {"gmf": similarity[:, :2]}, np.zeros(11, bool), weights,
                                catalogue, "IDMap,Flat")
    logits = model_logits(model, {"gmf": np.ones(2, np.float32)}, np.array([12, 3]))
    np.testing.assert_allclose(logits, [1.5, 2.0])  # the zero predict layer leaves the bias: mean of 0..3, and 2


def test_a_player_unknown_to_the_version_gets_a_vector_from_the_slots_they_played():
    catalogue = _catalogue({12: {"provider": "a", "theme": "space"}})
    keys = np.arange(1, 12)  # slot 12 came after training: it has no played-items row
    similarity = _circle()[keys - 1]
    y = np.arange(22, dtype=np.float32).reshape(11, 2)
    weights = {"config": NCFConfig(model="gmf", factors=2, user_history="only", history_alpha=0.5).to_dict(),
               "weights": {"predict.weight": np.ones((1, 2), np.float32), "predict.bias": np.zeros(1, np.float32),
                           "item_hist_gmf.weight": y}}
    model = build_serving_model(7, keys, similarity, {"gmf": similarity[:, :2]}, np.zeros(11, bool), weights,
                                catalogue, "IDMap,Flat")
    towers = towers_from_played(model, np.array([3, 12, 9, 3]))  # slot 12 is skipped, slot 3 counts once
    np.testing.assert_allclose(towers["gmf"], (y[2] + y[8]) / np.sqrt(2))
    assert towers_from_played(model, np.array([12])) is None
    # A version whose players have only free rows cannot do this.
    assert towers_from_played(_model(catalogue), np.array([3])) is None


# --- candidates and ranking ----------------------------------------------------------------------


def test_the_context_neighbourhood_is_ranked_by_similarity():
    catalogue = _catalogue()
    model = _model(catalogue)
    candidates = _candidates(catalogue, model, context=6)
    items = rank(candidates, _everything(candidates), k=4, catalogue=catalogue, stats=SlotStats(),
                 config=Ranking(exploration_share=0.0, provider_cap=10))
    assert [i.slot_key for i in items][:2] in ([5, 7], [7, 5])
    assert {i.slot_key for i in items} == {4, 5, 7, 8}
    assert all(i.reason == "similar" and not i.explored for i in items)
    assert [i.score for i in items] == sorted([i.score for i in items], reverse=True)
    assert 6 not in candidates.all_keys()  # never the context slot itself


def test_excluded_slots_never_appear():
    catalogue = _catalogue()
    model = _model(catalogue)
    candidates = _candidates(catalogue, model, context=6)
    allowed = ~np.isin(candidates.all_keys(), [5, 7])  # the database said: played
    items = rank(candidates, allowed, k=4, catalogue=catalogue, stats=SlotStats(),
                 config=Ranking(exploration_share=0.0, provider_cap=10))
    assert {i.slot_key for i in items} == {3, 4, 8, 9}


def test_disabled_slots_and_other_markets_are_not_candidates():
    catalogue = _catalogue({5: {"active": False}, 7: {"markets": ("SE",)}})
    model = _model(catalogue)
    for market, expected_absent in (("GB", {5, 7}), ("SE", {5}), (None, {5, 7})):
        keys = set(_candidates(catalogue, model, context=6, market=market).all_keys().tolist())
        assert not keys & expected_absent
        assert keys >= {4, 8}


def test_the_provider_cap_keeps_the_list_diverse():
    catalogue = _catalogue()
    model = _model(catalogue)
    config = Ranking(exploration_share=0.0, provider_cap=2)
    candidates = _candidates(catalogue, model, context=2, config=config)
    items = rank(candidates, _everything(candidates), k=6, catalogue=catalogue, stats=SlotStats(), config=config)
    providers = [PROVIDERS[i.slot_key - 1] for i in items]
    assert len(items) == 6
    assert max(providers.count(p) for p in set(providers)) == 2


def test_the_model_score_is_blended_with_similarity():
    catalogue = _catalogue()
    # GMF item vectors: slot 9 is the one the player likes most; slot 5 and 7 are the context's neighbours.
    gmf = np.zeros((12, 2), dtype=np.float32)
    gmf[8] = [4.0, 0.0]
    model = _model(catalogue, item_gmf=gmf)
    player = {"gmf": np.array([1.0, 0.0], dtype=np.float32)}
    config = Ranking(exploration_share=0.0, provider_cap=10, blend_weight=0.5)
    candidates = _candidates(catalogue, model, context=6, config=config, personalised=True)
    logits = model_logits(model, player, candidates.primary)
    items = rank(candidates, _everything(candidates), k=3, catalogue=catalogue, stats=SlotStats(), config=config,
                 logits=logits)
    assert items[0].slot_key == 9  # sigmoid(4) outweighs being a nearer neighbour
    cos = float(model.similarity[8] @ model.similarity[5])
    assert items[0].score == pytest.approx(0.5 / (1 + np.exp(-4.0)) + 0.5 * (1 + cos) / 2, rel=1e-5)


def test_the_player_s_top_n_is_blended_with_its_similarity_to_the_context_too():
    catalogue = _catalogue()
    gmf = np.zeros((12, 2), dtype=np.float32)
    gmf[[3, 9]] = [2.0, 0.0]  # slots 4 and 10: the player's top-N, liked alike
    model = _model(catalogue, item_gmf=gmf)
    player = {"gmf": np.array([1.0, 0.0], dtype=np.float32)}
    config = Ranking(exploration_share=0.0, provider_cap=10, blend_weight=0.5, candidate_pool=2)
    candidates = _candidates(catalogue, model, context=1, config=config, personalised=True,
                             top_n=np.array([10, 4]))
    # Slot 4 (36 degrees from the context) is nearer than slot 10 (108 degrees): scored on one scale with
    # the neighbourhood, it ranks above slot 10 although the player's top-N listed 10 first.
    cosines = dict(zip(candidates.primary.tolist(), candidates.cosine.tolist(), strict=True))
    assert cosines[4] == pytest.approx(np.cos(np.radians(36)), abs=1e-6)
    assert cosines[10] == pytest.approx(np.cos(np.radians(108)), abs=1e-6)
    logits = model_logits(model, player, candidates.primary)
    items = rank(candidates, _everything(candidates), k=4, catalogue=catalogue, stats=SlotStats(), config=config,
                 logits=logits)
    keys = [item.slot_key for item in items]
    assert keys.index(4) < keys.index(10)
    assert items[keys.index(10)].score == pytest.approx(
        0.5 / (1 + np.exp(-2.0)) + 0.5 * (1 + np.cos(np.radians(108))) / 2, rel=1e-5)


def test_exploration_takes_its_share_and_favours_what_feedback_supports():
    catalogue = _catalogue()
    model = _model(catalogue)
    config = Ranking(exploration_share=0.25, provider_cap=10, explore_max_impressions=50)
    assert explore_count(4, 0.25) == 1 and explore_count(10, 0.2) == 2 and explore_count(10, 0.0) == 0
    # Slots 1 and 12 are far from the context (6); everything else has plenty of impressions.
    impressions = {key: 1000 for key in range(1, 13)}
    impressions.update({1: 20, 12: 20})
    stats = SlotStats(impressions=SlotStats.by_key(impressions), successes=SlotStats.by_key({1: 15, 12: 0}))
    picked = []
    for seed in range(100):
        candidates = _candidates(catalogue, model, k=4, context=6, config=config, stats=stats, seed=seed)
        items = rank(candidates, _everything(candidates), k=4, catalogue=catalogue, stats=stats, config=config)
        explored = [i for i in items if i.explored]
        assert len(items) == 4 and len(explored) == 1 and explored[0].reason == "explore"
        picked.append(explored[0].slot_key)
    # Beta(16, 6) against Beta(1, 21): the slot that gets clicked wins nearly always.
    assert picked.count(1) > 95


def test_a_snapshot_s_lists_share_a_bank_of_thompson_draws():
    from recsys.serving.candidates import EXPLORE_BANK, EXPLORE_DEPTH, ExploreBank

    pool = np.arange(1, 1001, dtype=np.int64)
    stats = SlotStats(impressions=SlotStats.by_key({key: 10 for key in range(1, 1001)}),
                      successes=SlotStats.by_key({key: key % 10 for key in range(1, 1001)}))
    bank = ExploreBank(pool, stats)
    rng = np.random.default_rng(0)
    taken = [bank.take(rng, set(), 22) for _ in range(4000)]
    orders = {tuple(keys.tolist()) for keys, _ in taken}
    # Every list gets the best 22 of one draw, best first; 4,000 lists share the bank's 256 draws.
    assert all(keys.size == 22 and (np.diff(draws) <= 0).all() for keys, draws in taken)
    assert len(orders) == EXPLORE_BANK
    # The context slot is taken out of the banked draw, which still fills the list.
    context = int(taken[-1][0][0])
    assert all(context not in bank.take(rng, {context}, 22)[0] and bank.take(rng, {context}, 22)[0].size == 22
               for _ in range(200))
    # A longer list than a banked draw keeps, or a seeded policy, draws for itself.
    assert {tuple(bank.take(rng, set(), EXPLORE_DEPTH + 1)[0].tolist()) for _ in range(300)} - orders
    fresh = [tuple(bank.take(np.random.default_rng(seed), set(), 22, shared=False)[0].tolist()) for seed in range(300)]
    assert len(set(fresh)) == 300
    # Thompson sampling still: a slot with 9 clicks of 10 impressions leads far more draws than one with 1 of 10.
    firsts = [int(keys[0]) % 10 for keys, _ in taken]
    assert firsts.count(9) > 5 * max(firsts.count(1), 1)


def test_the_backup_list_fills_what_the_neighbourhood_cannot():
    catalogue = _catalogue()
    model = _model(catalogue)
    stats = SlotStats(players=SlotStats.by_key({10: 50, 11: 40}))
    config = Ranking(exploration_share=0.0, provider_cap=10, candidate_pool=4)
    candidates = _candidates(catalogue, model, context=6, stats=stats, config=config)
    assert set(candidates.primary.tolist()) == {4, 5, 7, 8}
    allowed = np.isin(candidates.all_keys(), [5, 10, 11])
    items = rank(candidates, allowed, k=3, catalogue=catalogue, stats=stats, config=config)
    assert [(i.slot_key, i.reason) for i in items] == [(5, "similar"), (10, "cold_start"), (11, "cold_start")]


def test_without_a_model_the_list_is_the_popular_one():
    catalogue = _catalogue()
    stats = SlotStats(players=SlotStats.by_key({3: 9, 8: 30, 11: 20}))
    candidates = _candidates(catalogue, None, context=None, stats=stats)
    assert candidates.source == "popular"
    items = rank(candidates, _everything(candidates), k=3, catalogue=catalogue, stats=stats,
                 config=Ranking(exploration_share=0.0, provider_cap=10))
    assert [(i.slot_key, i.reason) for i in items] == [(8, "popular"), (11, "popular"), (3, "popular")]


def test_recent_slots_seed_the_neighbourhood_without_context():
    catalogue = _catalogue()
    model = _model(catalogue)
    candidates = _candidates(catalogue, model, context=None, recent=np.array([3, 5]))
    assert candidates.source == "recent"
    assert candidates.primary[0] == 4  # between the two recent slots
    assert {3, 5} <= set(candidates.all_keys().tolist())  # played or not is the database's call


def test_similar_slots_leave_out_the_slot_disabled_slots_and_other_markets():
    catalogue = _catalogue({5: {"active": False}, 7: {"markets": ("SE",)}})
    model = _model(catalogue)
    keys, scores = similar_slots(model, catalogue, 6, 3, None)
    assert keys.tolist() == [7, 4, 8] or keys.tolist() == [7, 8, 4]
    assert scores[0] == pytest.approx(np.cos(np.radians(12)), rel=1e-5)
    keys, _ = similar_slots(model, catalogue, 6, 3, "GB")
    assert set(keys.tolist()) == {4, 8, 3} or set(keys.tolist()) == {4, 8, 9}


def test_a_slot_s_neighbourhood_is_the_index_s_answer_searched_once():
    model = _model(_catalogue())
    keys, cosines = model.neighbourhood(5, 4)  # slot 6's row
    expected_keys, expected_cosines = model.index.search(model.similarity[5], 4)
    assert keys.tolist() == expected_keys[0].tolist() and cosines.tolist() == expected_cosines[0].tolist()
    assert keys[0] == 6 and set(keys[1:3].tolist()) == {5, 7}
    again = model.neighbourhood(5, 4)
    assert again[0] is keys and again[1] is cosines  # kept, and shared: read-only
    assert not keys.flags.writeable and not cosines.flags.writeable
    assert model.neighbourhood(5, 2)[0].tolist() == model.index.search(model.similarity[5], 2)[0][0].tolist()


def test_keys_outside_the_catalogue_have_no_row_and_are_never_allowed():
    catalogue = _catalogue({3: {"active": False}, 5: {"markets": ("SE",)}})
    model = _model(catalogue)
    keys = np.array([-7, -1, 0, 1, 3, 5, 12, 13, 10**12])
    assert model.rows(keys).tolist() == [-1, -1, -1, 0, 2, 4, 11, -1, -1]
    assert model.rows(np.zeros(0, np.int64)).tolist() == []
    assert catalogue.allowed(keys, "SE").tolist() == [False, False, False, True, False, True, True, False, False]
    assert catalogue.allowed(keys, "GB").tolist() == [False, False, False, True, False, False, True, False, False]
    assert catalogue.allowed(keys, None).tolist() == [False, False, False, True, False, False, True, False, False]
    assert catalogue.allowed(keys, None, every_market=True).tolist() == [
        False, False, False, True, False, True, True, False, False]
    assert catalogue.offered("SE").tolist() == [False] + [k not in (3,) for k in range(1, 13)]
