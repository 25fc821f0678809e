"""Should the normalized score weight the positives? The worker's model trained both ways, measured.

A synthetic casino is generated in memory (``recsys.synth``, no database) and consolidated the way
``recsys consolidate`` does it (``recsys.scoring``'s formula per player x slot x UTC day, normalized by
the player's best interaction), then aggregated the way the worker reads it
(``recsys.db.training_data.load_interactions``: one pair per player x slot, weight = the pair's best
normalized score, first day = the pair's first day). The worker's time holdout
(``recsys.holdout.split_latest`` with the worker's arguments) keeps each eligible player's latest
slot discovered in the last ``holdout_days``; the worker's model (``recsys.worker.ncf_config`` at
default settings) is trained on the rest with the normalized score as positive weight
(``train_weighted=true``, the default) and without, for each seed, and ranked against 99 sampled
negatives (HR@10 / NDCG@10), with popularity for reference.

    python bench/bench_weighting.py [--players 200000] [--slots 1000] [--days 90] [--seed 0]
        [--seeds 0 1] [--model neumf|gmf|mlp] [--threads N]

The defaults train four times (two seeds, both ways): about 3.5 minutes on one thread.
docs/training.md quotes what this printed.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

import numpy as np
import pandas as pd

from recsys.db.training_data import InteractionData
from recsys.holdout_cases import EPOCH_DAY, holdout_negatives, time_holdout
from recsys.scoring import normalize, score_sessions
from recsys.settings import Scoring, Settings
from recsys.synth import SynthConfig


def consolidated_pairs(sessions: pd.DataFrame, formula: Scoring, window_days: int) -> InteractionData:
    """Sessions -> the worker's training pairs, as ``recsys consolidate`` + ``load_interactions`` give them.

    Interactions are player x slot x UTC day of the session's start, scored by ``formula`` (bonus play
    down-weighted), normalized by the player's best interaction over the whole history (the SQL clips
    at 1). The pairs are those with interactions in the ``window_days`` days ending at the latest day;
    a pair's weight is its best normalized score in the window, its first day its earliest day there.

    Parameters
    ----------
    sessions : pd.DataFrame
        ``play_sessions`` columns as ``recsys.synth`` generates them (``player_key``, ``slot_key``,
        ``started_at``, ``seconds``, ``spins``, ``total_bet``, ``bonus``).
    formula : Scoring
    window_days : int
        ``train_window_days``.

    Returns
    -------
    InteractionData
        ``player_keys`` / ``slot_keys`` are the synthetic keys (``slot_key - 1`` is a catalogue row).
    """
    w = np.where(sessions["bonus"].to_numpy(), formula.bonus_weight, 1.0)
    started = sessions["started_at"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    day = started.astype("datetime64[D]").astype(np.int64)
    per_session = pd.DataFrame(
        {
            "player_key": sessions["player_key"].to_numpy(np.int64),
            "slot_key": sessions["slot_key"].to_numpy(np.int64),
            "day": day,
            "seconds": w * sessions["seconds"].to_numpy(np.float64),
            "spins": w * sessions["spins"].to_numpy(np.float64),
            "stake": w * sessions["total_bet"].to_numpy(np.float64),
        }
    )
    per_day = per_session.groupby(["player_key", "slot_key", "day"], sort=True, as_index=False).sum()
    score = (
        formula.time_weight * np.log1p(per_day["seconds"].to_numpy() / 60.0)
        + formula.spins_weight * np.log1p(per_day["spins"].to_numpy())
        + formula.stake_weight * np.log1p(per_day["stake"].to_numpy())
    )
    best = pd.Series(score).groupby(per_day["player_key"].to_numpy()).transform("max").to_numpy()
    normalized = np.minimum(1.0, np.divide(score, best, out=np.zeros_like(score), where=best > 0))
    _check_against_reference(sessions, per_day, score, normalized, formula)

    per_day["normalized"] = normalized
    last = int(per_day["day"].max())
    first = last - window_days + 1
    per_day = per_day[per_day["day"] >= first]
    pairs = per_day.groupby(["player_key", "slot_key"], sort=True).agg(
        first_day=("day", "min"), weight=("normalized", "max")
    )
    player = pairs.index.get_level_values("player_key").to_numpy()
    slot = pairs.index.get_level_values("slot_key").to_numpy()
    player_keys, player_idx = np.unique(player, return_inverse=True)
    slot_keys, slot_idx = np.unique(slot, return_inverse=True)
    return InteractionData(
        player_keys=player_keys,
        slot_keys=slot_keys,
        player_idx=player_idx.astype(np.int64),
        slot_idx=slot_idx.astype(np.int64),
        weight=np.clip(pairs["weight"].to_numpy(np.float32), 0.0, 1.0),
        first_day=pairs["first_day"].to_numpy(np.int32),
        start=EPOCH_DAY + timedelta(days=first),
        end=EPOCH_DAY + timedelta(days=last),
    )


def _check_against_reference(
    sessions: pd.DataFrame, per_day: pd.DataFrame, score: np.ndarray, normalized: np.ndarray, formula: Scoring
) -> None:
    """The vectorized scores equal ``recsys.scoring.score_sessions`` and ``normalize`` on the first players."""
    players = per_day["player_key"].unique()[:50]
    mine = sessions[sessions["player_key"].isin(players)]
    days = mine["started_at"].dt.tz_convert("UTC").dt.date
    for player in players:
        rows = np.flatnonzero(per_day["player_key"].to_numpy() == player)
        reference = []
        for r in rows:
            slot, day = per_day["slot_key"].iat[r], EPOCH_DAY + timedelta(days=int(per_day["day"].iat[r]))
            group = mine[(mine["player_key"] == player) & (mine["slot_key"] == slot) & (days == day)]
            reference.append(
                score_sessions(
                    formula,
                    group["seconds"].to_numpy(),
                    group["spins"].to_numpy(),
                    group["total_bet"].to_numpy(),
                    group["bonus"].to_numpy(),
                )
            )
        np.testing.assert_allclose(score[rows], reference, rtol=1e-9)
        np.testing.assert_allclose(normalized[rows], normalize(np.array(reference)), rtol=1e-9)


def worker_casino(players: int, slots: int, days: int, seed: int, settings: Settings):
    """A synthetic casino in memory, its consolidated pairs and the worker's time holdout of them
    (``recsys.holdout_cases.time_holdout``): ``(casino, data, holdout)``."""
    from recsys.synth import generate_casino

    casino = generate_casino(SynthConfig(players=players, slots=slots, days=days, seed=seed))
    data = consolidated_pairs(casino.sessions, settings.scoring, settings.training.window_days)
    return casino, data, time_holdout(data, settings.training)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=200_000)
    parser.add_argument("--slots", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0, help="seed of the casino")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds (train_seed)")
    parser.add_argument("--model", choices=("neumf", "gmf", "mlp"), help="train_model (default: the setting's)")
    parser.add_argument("--threads", type=int, help="torch threads (default: train_threads)")
    args = parser.parse_args()

    from recsys.baselines import Popularity
    from recsys.evaluation import evaluate_full, evaluate_sampled, sample_test_negatives
    from recsys.ncf.training import train
    from recsys.worker import ncf_config

    settings = Settings()
    if args.model is not None:
        settings = settings.replace(train_model=args.model)
    started = time.perf_counter()
    casino, data, holdout = worker_casino(args.players, args.slots, args.days, args.seed, settings)
    n_players, n_slots = len(data.player_keys), len(data.slot_keys)
    train_u, train_i = data.player_idx[holdout.train], data.slot_idx[holdout.train]
    test_u, test_i = holdout.test_player_idx, holdout.test_slot_idx
    # The worker's evaluation: its negatives (seeded by train_seed) and its first 2,000 full-catalogue cases.
    negatives = sample_test_negatives(
        train_u, train_i, test_u, test_i, n_slots, holdout_negatives(n_slots), seed=settings.training.seed
    )
    full_cases = slice(0, min(2000, test_u.size))
    weight = data.weight[holdout.train]
    print(
        f"{args.players:,} players x {args.slots:,} slots x {args.days} days (casino seed {args.seed}): "
        f"{len(casino.sessions):,} sessions -> {data.n_pairs:,} pairs of {n_players:,} players x {n_slots:,} slots "
        f"({time.perf_counter() - started:.0f} s)"
    )
    print(
        f"holdout: the last {settings.training.holdout_days} days, {test_u.size:,} test players, "
        f"{int(holdout.train.sum()):,} train pairs, {negatives.shape[1]} sampled negatives per case"
    )
    print(
        f"train pairs' weight (best normalized score): mean {weight.mean():.3f}, median {np.median(weight):.3f}, "
        f"= 1 for {np.mean(weight == 1.0):.1%}, < 0.5 for {np.mean(weight < 0.5):.1%}\n"
    )

    rows = []
    popularity = Popularity(train_u, train_i, n_slots)
    pop = evaluate_sampled(popularity, test_u, test_i, negatives)
    pop_full = evaluate_full(popularity, test_u[full_cases], test_i[full_cases], train_u, train_i, n_slots)
    rows.append(("popularity", "-", pop.hit_ratio, pop.ndcg, pop_full.hit_ratio, 0.0))
    for seed in args.seeds:
        for weighted in (True, False):
            config = ncf_config(settings.training, data.n_pairs).replace(seed=seed)
            if args.threads is not None:
                config = config.replace(threads=args.threads)
            t = time.perf_counter()
            model = train(config, train_u, train_i, n_players, n_slots, weights=weight if weighted else None)
            seconds = time.perf_counter() - t
            sampled = evaluate_sampled(model, test_u, test_i, negatives)
            full = evaluate_full(model, test_u[full_cases], test_i[full_cases], train_u, train_i, n_slots)
            name = f"{config.model} {'weighted' if weighted else 'unweighted'}"
            rows.append((name, str(seed), sampled.hit_ratio, sampled.ndcg, full.hit_ratio, seconds))

    print(f"{'model':<20}{'seed':>5}{'HR@10':>8}{'NDCG@10':>9}{'full HR@10':>12}{'train s':>9}")
    for name, seed, hr, ndcg, full_hr, seconds in rows:
        print(f"{name:<20}{seed:>5}{hr:>8.3f}{ndcg:>9.3f}{full_hr:>12.3f}{seconds:>9.0f}")
    if len(args.seeds) > 1:
        print()
        for way in ("weighted", "unweighted"):
            mine = [r for r in rows if r[0].endswith(f" {way}")]
            print(
                f"{mine[0][0]:<20}{'mean':>5}{np.mean([r[2] for r in mine]):>8.3f}"
                f"{np.mean([r[3] for r in mine]):>9.3f}{np.mean([r[4] for r in mine]):>12.3f}"
            )
    towers = (f", {config.factors} factors" if config.model != "mlp" else "") + (
        f", MLP {config.mlp_layers}" if config.model != "gmf" else ""
    )
    print(
        f"\nconfig: {config.model}, {config.epochs} epochs of {config.optimizer} at lr {config.lr}{towers}, "
        f"{config.negatives} negatives, batch {config.batch_size}, reg {config.reg}, "
        f"positive_weight_floor {config.positive_weight_floor}, {config.threads} thread(s); "
        f"total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
