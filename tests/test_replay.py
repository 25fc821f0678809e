"""The trigger replay's lists and figures on a small world with known answers (no database)."""

import dataclasses
import math

import numpy as np
import pytest

from recsys.index import DEFAULT_FACTORY
from recsys.metrics import Figures
from recsys.replay import ReplayCase, World, counted_cases, hit_and_gain, replay, served_list
from recsys.serving.catalogue import Catalogue, SlotInfo, SlotStats, popularity_order
from recsys.serving.model import build_serving_model
from recsys.settings import Settings

KEYS = np.arange(1, 13)  # slots 1..12, each of its own provider (the provider cap never bites)


def _world(weights=None) -> World:
    catalogue = Catalogue.from_slots([SlotInfo(int(k), f"s{k}", f"p{k}", "t", "low", True, None) for k in KEYS])
    # Slot k sits at angle k * 10 degrees: slot 1's neighbours are 2, 3, 4, ... in that order.
    angles = np.radians(KEYS * 10.0)
    similarity = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    model = build_serving_model(1, KEYS, similarity, {}, np.zeros(KEYS.size, dtype=bool), weights, catalogue,
                                DEFAULT_FACTORY)
    players = np.zeros(13, dtype=np.int64)
    players[KEYS] = KEYS  # slot 12 the most popular, slot 1 the least
    stats = SlotStats(players=players)
    return World(model, catalogue, stats, popularity_order(catalogue, stats),
                 cooccurrence=lambda key, n: np.array([5, 4, 3, 2])[:n])


def _case(targets=(3,), played=(2, 1), hidden=()):
    return ReplayCase(player_key=7, context_key=1, played_keys=np.array(played), hidden_keys=np.array(hidden),
                      target_keys=np.array(targets), towers=None)


def test_a_list_hits_at_the_place_of_its_first_target():
    assert hit_and_gain([9, 4, 3, 8], np.array([3, 8])) == (1.0, 1 / math.log2(4))
    assert hit_and_gain([9, 4], np.array([3])) == (0.0, 0.0)
    assert hit_and_gain(list(range(20)), np.array([10])) == (0.0, 0.0)  # past the 10th place


def test_each_simple_policy_leaves_out_the_played_and_ranks_its_own_way():
    world = _world()
    config = Settings().ranking
    figures = replay([_case()], world, config, policies=("faiss", "itemknn", "popularity"))
    # FAISS: 1's neighbours 2, 3, ... with 1 and 2 played: 3 first.
    assert figures["faiss"] == Figures(1.0, 1.0)
    # Item-kNN: 5, 4, 3 (2 played): third place.
    assert figures["itemknn"] == Figures(1.0, 1 / math.log2(4))
    # Popularity: 12, 11, ..., 3 fill the ten places, 3 the last.
    assert figures["popularity"] == Figures(1.0, pytest.approx(1 / math.log2(11)))
    # A hidden slot (trained on, played later) is in no list: 3 moves up a place in popularity's.
    hidden = replay([_case(hidden=(12,))], world, config, policies=("popularity",))
    assert hidden["popularity"] == Figures(1.0, pytest.approx(1 / math.log2(10)))


def test_the_served_policy_without_a_model_is_the_neighbourhood_and_exploration_takes_places():
    world = _world()
    config = dataclasses.replace(Settings().ranking, exploration_share=0.0)
    listed = served_list(_case(), world, config, _excluded(world), np.random.default_rng(0))
    assert listed[:5] == [3, 4, 5, 6, 7] and 1 not in listed and 2 not in listed
    figures = replay([_case()], world, config, policies=("served", "served_exploit", "faiss"))
    assert figures["served"] == figures["served_exploit"] == figures["faiss"] == Figures(1.0, 1.0)
    # Two of ten places to exploration: the list still holds 3, never a played slot.
    explore = dataclasses.replace(config, exploration_share=0.2)
    drawn = served_list(_case(), world, explore, _excluded(world), np.random.default_rng(1))
    assert len(drawn) == 10 and 3 in drawn and not {1, 2} & set(drawn)


def test_cases_without_a_target_are_not_counted():
    world = _world()
    cases = [_case(), _case(targets=())]
    assert counted_cases(cases) == 1
    assert replay(cases, world, Settings().ranking, policies=("faiss",)) == {"faiss": Figures(1.0, 1.0)}
    assert replay([_case(targets=())], world, Settings().ranking) == {}


def _excluded(world):
    from recsys.replay import _excluded

    return _excluded(world, _case())
