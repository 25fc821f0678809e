import numpy as np

from recsys.holdout import split_latest

# player 0: played slot 0 on day 1, discovered slots 1 (day 10) and 2 (day 12) in the window
# player 1: only played in the window (no history: not a test case)
# player 2: played slot 0 before and again... only before the window (no discovery: not a test case)
# player 3: history, and two discoveries on the same last day: the lower slot index is the test
PLAYER = np.array([0, 0, 0, 1, 2, 3, 3, 3])
SLOT = np.array([0, 1, 2, 3, 0, 4, 6, 5])
DAY = np.array([1, 10, 12, 11, 2, 3, 12, 12])


def test_the_latest_discovery_of_each_player_with_history_is_held_out():
    holdout = split_latest(PLAYER, SLOT, DAY, holdout_start_day=10)
    assert holdout.test_player_idx.tolist() == [0, 3]
    assert holdout.test_slot_idx.tolist() == [2, 5]
    assert holdout.train.tolist() == [True, True, False, True, True, True, True, False]


def test_players_without_enough_unplayed_slots_are_not_tested():
    # with 8 slots and 3 negatives needed, player 0 (3 played) qualifies, player 3 (3 played) too;
    # needing 6, neither does
    assert split_latest(PLAYER, SLOT, DAY, 10, n_slots=8, min_unplayed=5).test_player_idx.tolist() == [0, 3]
    assert split_latest(PLAYER, SLOT, DAY, 10, n_slots=8, min_unplayed=6).test_player_idx.size == 0


def test_the_sample_is_bounded_and_seeded():
    a = split_latest(PLAYER, SLOT, DAY, 10, max_cases=1, seed=3)
    b = split_latest(PLAYER, SLOT, DAY, 10, max_cases=1, seed=3)
    assert a.test_player_idx.size == 1 and a.test_player_idx.tolist() == b.test_player_idx.tolist()
    assert a.train.sum() == len(PLAYER) - 1
