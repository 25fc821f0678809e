"""The item-kNN strategy's neighbours (pure) and the arms that name a strategy."""

import numpy as np
import pytest

from recsys.errors import InputError
from recsys.experiments import ITEMKNN, MODEL, POPULARITY, Arm, parse_arm
from recsys.serving.itemknn import ItemNeighbours


def neighbours() -> ItemNeighbours:
    """Slots 10, 20, 30, 40 (indexes 0-3): players 0-3 played 10 and 20, players 4-5 10 and 30,
    player 6 only 40."""
    pairs = [(p, 0) for p in range(6)] + [(p, 1) for p in range(4)] + [(4, 2), (5, 2), (6, 3)]
    players, slots = np.array(pairs).T
    return ItemNeighbours.build(players, slots, np.array([10, 20, 30, 40]), 7, None, None)


def test_a_slots_neighbours_are_the_slots_played_with_it_best_first():
    knn = neighbours()
    keys, sims = knn.around(10, np.zeros(0, np.int64), 5)
    assert keys.tolist() == [20, 30]  # 40 was never played with 10
    # cosine shrunk: 4 / (sqrt(6 * 4) + 10), 2 / (sqrt(6 * 2) + 10)
    assert sims.tolist() == pytest.approx([4 / (24 ** 0.5 + 10), 2 / (12 ** 0.5 + 10)], rel=1e-5)
    assert knn.around(40, np.zeros(0, np.int64), 5) is None  # no co-player, no recent slots


def test_without_a_known_context_the_recent_slots_sum_their_neighbours():
    knn = neighbours()
    keys, sims = knn.around(99, np.array([20, 30]), 5)  # 99: outside the window
    assert keys.tolist() == [10]  # 20 and 30 were never played together
    assert sims[0] == pytest.approx(4 / (24 ** 0.5 + 10) + 2 / (12 ** 0.5 + 10), rel=1e-5)
    assert knn.around(None, np.array([99]), 5) is None


def test_an_empty_window_has_no_neighbours():
    empty = ItemNeighbours.build(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 0, None, None)
    assert empty.around(1, np.array([2]), 5) is None


def test_an_arm_names_a_version_or_a_strategy():
    assert parse_arm("control=12:50") == Arm("control", 12, 50, MODEL)
    assert parse_arm("pop=popularity:20") == Arm("pop", None, 20, POPULARITY) == Arm("pop", None, 20)
    assert parse_arm("knn=itemknn:30") == Arm("knn", None, 30, ITEMKNN)
    assert parse_arm("knn=itemknn:30").version_label == "itemknn"
    with pytest.raises(InputError, match="'popularity', 'itemknn'"):
        parse_arm("knn=ItemKNN:30")
