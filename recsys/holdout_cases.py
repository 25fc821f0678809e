"""The cases a training run measures its version on: the time holdout, its sampled negatives, and the
validation half that picks epochs and the baselines' settings (no I/O)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from recsys.db.training_data import InteractionData
from recsys.holdout import Holdout, split_latest
from recsys.settings import Training

EPOCH_DAY = date(1970, 1, 1)


def time_holdout(data: InteractionData, training: Training) -> Holdout:
    """The worker's holdout: each player's latest slot discovered in the last ``holdout_days`` of
    ``data``'s window (at most ``eval_max_players``, with enough unplayed slots to rank against)."""
    holdout_start = data.end - timedelta(days=training.holdout_days - 1)
    return split_latest(
        data.player_idx,
        data.slot_idx,
        data.first_day,
        (holdout_start - EPOCH_DAY).days,
        max_cases=training.eval_max_players,
        seed=training.seed,
        n_slots=len(data.slot_keys),
        min_unplayed=holdout_negatives(len(data.slot_keys)),
    )


def evaluation_cases(data: InteractionData, holdout: Holdout, training: Training):
    """The training pairs and the cases a version is measured on, cut from ``holdout``.

    Each holdout player's test slot gets its sampled negatives (seeded by ``seed``); with early
    stopping the cases split into a validation half, which picks epochs (and the baselines'
    settings), and a test half, which alone gives the metrics and the gate. A case tuple is
    ``(player_idx, slot_idx, negatives)``.

    Returns
    -------
    train_u, train_i : np.ndarray, shape (t,)
    test_cases : tuple of np.ndarray
    validation_cases : tuple of np.ndarray, or None without a validation half
    """
    from recsys.evaluation import sample_test_negatives

    n_slots = len(data.slot_keys)
    train_u, train_i = data.player_idx[holdout.train], data.slot_idx[holdout.train]
    negatives = sample_test_negatives(
        train_u, train_i, holdout.test_player_idx, holdout.test_slot_idx, n_slots, holdout_negatives(n_slots),
        seed=training.seed,
    )
    cases = (holdout.test_player_idx, holdout.test_slot_idx, negatives)
    validation, test = validation_split(cases[0].size, training)
    validation_cases = None if validation is None else tuple(c[validation] for c in cases)
    return train_u, train_i, tuple(c[test] for c in cases), validation_cases


def validation_split(n_cases: int, training: Training) -> tuple[np.ndarray | None, np.ndarray]:
    """With ``early_stopping``, half the holdout cases (a seeded draw) for picking epochs and
    the rest for the metrics; too few cases (under 20) leave early stopping off."""
    everything = np.arange(n_cases)
    if not training.early_stopping or n_cases < 20:
        return None, everything
    shuffled = np.random.default_rng(training.seed).permutation(n_cases)
    return np.sort(shuffled[: n_cases // 2]), np.sort(shuffled[n_cases // 2 :])


def holdout_negatives(n_slots: int) -> int:
    """Sampled negatives per test case: the protocol's 99, fewer for a catalogue under 200 slots."""
    return min(99, n_slots // 2)
