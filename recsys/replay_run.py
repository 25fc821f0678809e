"""The trigger replay of a training run (``recsys.replay``): its cases read from the play sessions,
its world built from the version as written, the figures for every policy.

The cases are the long sessions (continuous play of at least ``RECSYS_SESSION_THRESHOLD_SECONDS``)
whose last event lies in the run's holdout days, of the players in ``players`` (the worker's test
half); the crossing is the session's start plus the threshold. Popularity is counted on the run's
training pairs (what the version knew), exploration reads the feedback counts as served.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import numpy as np

from recsys.db import catalogue as catalogue_db
from recsys.db import versions
from recsys.db.replay_data import first_plays, long_sessions
from recsys.db.training_data import InteractionData
from recsys.metrics import ReplayFigures
from recsys.replay import ReplayCase, World, replay
from recsys.settings import Settings


@dataclass(frozen=True)
class ReplayInputs:
    """The cases and the world of one version's replay (the bench sweeps policies over them)."""

    cases: list[ReplayCase]
    world: World


def holdout_window(settings: Settings, data: InteractionData) -> tuple[datetime, datetime]:
    """The run's holdout days as ``[start, end)`` in UTC."""
    holdout_start = data.end - timedelta(days=settings.training.holdout_days - 1)
    return _midnight(holdout_start), _midnight(data.end + timedelta(days=1))


def _midnight(day) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def replay_inputs(
    engine, settings: Settings, version_id: int, data: InteractionData, train: np.ndarray, *,
    window: tuple[datetime, datetime] | None = None, players: np.ndarray | None = None,
) -> ReplayInputs:
    """The replay of ``version_id``: ``data`` the window it trained on, ``train`` the mask of ``data``'s
    pairs it trained on; the long sessions ending in ``window`` (default: the holdout days) of the
    players at run rows ``players`` (``data``'s player_idx; default: every player)."""
    from recsys.baselines import ItemKNN
    from recsys.serving.catalogue import Catalogue, SlotStats, popularity_order
    from recsys.serving.model import build_serving_model

    start, end = window or holdout_window(settings, data)
    threshold = settings.realtime.threshold_seconds
    sessions = long_sessions(engine, threshold, start, end)
    wanted = np.ones(sessions.player_key.size, dtype=bool) if players is None else np.isin(
        sessions.player_key, data.player_keys[players])
    sessions_player, sessions_slot = sessions.player_key[wanted], sessions.slot_key[wanted]
    crossing = sessions.started[wanted] + threshold

    catalogue = Catalogue.from_rows(catalogue_db.load_slots(engine))
    vectors = versions.load_slot_vectors(engine, version_id)
    weights = versions.load_weights(engine, version_id)
    model = build_serving_model(vectors.version_id, vectors.slot_keys, vectors.similarity, vectors.towers,
                                vectors.provisional, weights, catalogue, settings.serving.index_factory)
    train_u, train_i = data.player_idx[train], data.slot_idx[train]
    n_keys = catalogue.active.size
    players_of_slot = np.bincount(data.slot_keys[train_i], minlength=n_keys)  # pairs are distinct per player
    counts = catalogue_db.load_counts(engine, settings.serving.popularity_days)
    stats = SlotStats(players=players_of_slot, impressions=SlotStats.by_key(counts.impressions),
                      successes=SlotStats.by_key(counts.successes))
    knn = ItemKNN(train_u, train_i, len(data.player_keys), len(data.slot_keys))
    row_of_key = np.full(max(n_keys, int(data.slot_keys.max(initial=-1)) + 1), -1, dtype=np.int64)
    row_of_key[data.slot_keys] = np.arange(data.slot_keys.size)

    def cooccurrence(context_key: int, n: int) -> np.ndarray:
        row = row_of_key[context_key] if 0 <= context_key < row_of_key.size else -1
        if row < 0:
            return np.zeros(0, dtype=np.int64)
        rows, _ = knn.similar_items(int(row), min(n, data.slot_keys.size - 1))
        return data.slot_keys[rows]

    world = World(model, catalogue, stats, popularity_order(catalogue, stats), cooccurrence,
                  top_n=settings.training.offline_top_n)
    cases = _cases(engine, version_id, data, train, sessions_player, sessions_slot, crossing,
                   settings.training.replay_hours * 3600.0)
    return ReplayInputs(cases, world)


def run_replay(engine, settings: Settings, version_id: int, data: InteractionData, players: np.ndarray,
               train: np.ndarray) -> ReplayFigures:
    """The stored figures of the replay with the served settings (``settings.ranking``)."""
    inputs = replay_inputs(engine, settings, version_id, data, train, players=players)
    figures = replay(inputs.cases, inputs.world, settings.ranking, seed=settings.training.seed)
    counted = sum(1 for case in inputs.cases if case.target_keys.size)
    return ReplayFigures(sessions=counted, hours=settings.training.replay_hours, policies=figures)


def _cases(engine, version_id: int, data: InteractionData, train: np.ndarray, session_player: np.ndarray,
           session_slot: np.ndarray, crossing: np.ndarray, window: float) -> list[ReplayCase]:
    """One case per session: what the player had played before its crossing, and what came after."""
    if session_player.size == 0:
        return []
    plays = first_plays(engine, session_player)
    towers_keys, towers = versions.load_player_vectors(engine, version_id, np.unique(session_player))
    tower_row = {int(k): i for i, k in enumerate(towers_keys.tolist())}
    trained: dict[int, set[int]] = {}
    pair_players = data.player_keys[data.player_idx]
    mine = train & np.isin(pair_players, session_player)  # the sessions' players' pairs only (10^6 players)
    for player, slot in zip(pair_players[mine].tolist(), data.slot_keys[data.slot_idx[mine]].tolist(), strict=True):
        trained.setdefault(player, set()).add(slot)
    bounds = np.searchsorted(plays.player_key, np.unique(session_player))
    starts = dict(zip(np.unique(session_player).tolist(), bounds.tolist(), strict=True))
    cases = []
    for player, slot, at in zip(session_player.tolist(), session_slot.tolist(), crossing.tolist(), strict=True):
        lo = starts[player]
        hi = int(np.searchsorted(plays.player_key, player, side="right"))
        keys, first = plays.slot_key[lo:hi], plays.first[lo:hi]
        before = first < at
        played = keys[before][::-1]  # latest first
        after = keys[~before]
        seen = trained.get(player, set())
        is_trained = np.array([k in seen for k in after.tolist()], dtype=bool)
        soon = first[~before] <= at + window
        row = tower_row.get(player)
        cases.append(ReplayCase(
            player_key=player,
            context_key=slot,
            played_keys=played.astype(np.int64),
            hidden_keys=after[is_trained].astype(np.int64),
            target_keys=after[~is_trained & soon].astype(np.int64),
            towers=None if row is None or not towers else {t: table[row] for t, table in towers.items()},
        ))
    return cases
