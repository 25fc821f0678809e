"""The time-based holdout the worker evaluates on (no I/O).

Leave-latest-out on time, as in the NCF paper, restricted to what the product recommends: for each
player with play before the holdout window, the test pair is the slot they discovered last inside
the window (first played on or after ``holdout_start``); every other pair trains. A slot replayed
from before the window is not a test case: the serving API removes played slots anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Holdout:
    """``train`` is a boolean mask over the pairs; test cases are ``(test_player_idx, test_slot_idx)``."""

    train: np.ndarray  # (n_pairs,) bool
    test_player_idx: np.ndarray  # (n_test,) int64
    test_slot_idx: np.ndarray  # (n_test,) int64


def split_latest(
    player_idx: np.ndarray,
    slot_idx: np.ndarray,
    first_day: np.ndarray,
    holdout_start_day: int,
    *,
    max_cases: int | None = None,
    seed: int = 0,
    n_slots: int | None = None,
    min_unplayed: int = 0,
) -> Holdout:
    """Pick one test pair per eligible player; at most ``max_cases`` players, sampled with ``seed``.

    Parameters
    ----------
    player_idx, slot_idx, first_day : np.ndarray, shape (n_pairs,)
        ``first_day`` is the pair's first day (days since the epoch).
    holdout_start_day : int
        First day of the holdout window (days since the epoch).
    n_slots, min_unplayed : int
        Players who left fewer than ``min_unplayed`` of the ``n_slots`` unplayed are not test cases:
        the protocol needs that many negatives to rank the test slot against.
    """
    n = player_idx.shape[0]
    in_window = first_day >= holdout_start_day
    has_history = np.zeros(int(player_idx.max(initial=-1)) + 1, dtype=bool)
    has_history[player_idx[~in_window]] = True
    eligible = has_history
    if min_unplayed:
        pairs = np.bincount(player_idx, minlength=has_history.shape[0])
        eligible = has_history & (n_slots - pairs >= min_unplayed)
    candidates = np.flatnonzero(in_window & eligible[player_idx])
    # Latest first day per player; ties broken by the lower slot index, deterministically.
    order = np.lexsort((slot_idx[candidates], -first_day[candidates], player_idx[candidates]))
    ranked = candidates[order]
    first_of_player = np.ones(ranked.shape[0], dtype=bool)
    first_of_player[1:] = player_idx[ranked][1:] != player_idx[ranked][:-1]
    test = ranked[first_of_player]
    if max_cases is not None and test.shape[0] > max_cases:
        test = np.sort(np.random.default_rng(seed).choice(test, size=max_cases, replace=False))
    train = np.ones(n, dtype=bool)
    train[test] = False
    return Holdout(train=train, test_player_idx=player_idx[test], test_slot_idx=slot_idx[test])
