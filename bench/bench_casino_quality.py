"""The worker's model against popularity, item-kNN and EASE on synthetic casinos, the same cases for all.

For each seed a casino is generated in memory and cut the way the worker cuts it
(``bench_weighting.worker_casino``: consolidated pairs, the worker's time holdout, its sampled
negatives, validation and test halves). The baselines are ``recsys.run_baselines.measure_baselines``
(EASE's λ chosen on the validation half); the model is the worker's (``recsys.worker.ncf_config``
at the settings of the environment, ``RECSYS_TRAIN_*``, with the seed as ``train_seed``), each stage
keeping its best epoch on the validation half as the worker does. Everything is scored on the test
half: HR@10 / NDCG@10 against 99 sampled negatives.

It also prints, for the slot vectors the version would index (``RECSYS_SIMILARITY_VECTOR``), the
share of each played slot's 10 nearest slots that lie in its latent cluster (the generator's ground
truth), against item-kNN co-occurrence on the same pairs.

    python bench/bench_casino_quality.py --scale demo --seeds 1 2      # 20,000 x 800 x 60 days
    python bench/bench_casino_quality.py --scale bench --seeds 0 1     # 200,000 x 1,000 x 90 days

docs/training.md quotes what it printed. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_weighting import worker_casino  # noqa: E402

from recsys.settings import Settings  # noqa: E402

SCALES = {"demo": (20_000, 800, 60), "bench": (200_000, 1_000, 90)}


def cluster_share(neighbours: np.ndarray, queries: np.ndarray, cluster: np.ndarray) -> float:
    """Share of ``neighbours[q]`` (shape (q, k)) in the cluster of ``queries[q]``."""
    return float(np.mean(cluster[neighbours] == cluster[queries][:, None]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=tuple(SCALES), default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="casino and training seeds")
    args = parser.parse_args()

    from recsys.baselines import ItemKNN
    from recsys.epoch_log import kept_epochs as _kept_epochs
    from recsys.evaluation import evaluate_sampled, hit_ratio_callback
    from recsys.holdout_cases import evaluation_cases
    from recsys.metrics import VersionMetrics
    from recsys.ncf.training import train
    from recsys.ncf.vectors import most_similar
    from recsys.run_baselines import measure_baselines
    from recsys.worker import ncf_config, slot_similarity_vectors

    players, slots, days = SCALES[args.scale]
    rows = []
    for seed in args.seeds:
        settings = Settings.from_env().replace(train_seed=seed)
        started = time.perf_counter()
        casino, data, holdout = worker_casino(players, slots, days, seed, settings)
        n_players, n_slots = len(data.player_keys), len(data.slot_keys)
        train_u, train_i, test_cases, validation_cases = evaluation_cases(data, holdout, settings.training)
        print(
            f"seed {seed}: {players:,} x {slots:,} x {days} days -> {train_u.size:,} training pairs, "
            f"{test_cases[0].size:,} test / {validation_cases[0].size:,} validation cases "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        t = time.perf_counter()
        figures = VersionMetrics(baselines=measure_baselines(
            train_u, train_i, n_players, n_slots, test_cases, validation_cases)).to_json()
        baseline_seconds = time.perf_counter() - t

        config = ncf_config(settings.training, data.n_pairs)
        t = time.perf_counter()
        model = train(
            config, train_u, train_i, n_players, n_slots,
            weights=data.weight[holdout.train] if settings.training.weighted else None,
            evaluate=hit_ratio_callback(*validation_cases), keep_best=True,
        )
        train_seconds = time.perf_counter() - t
        ranked = evaluate_sampled(model, *test_cases)

        slot_cluster = casino.slot_clusters.set_index("slot_key")["cluster"].reindex(data.slot_keys).to_numpy()
        played = np.unique(train_i)
        kind, vectors = slot_similarity_vectors(model, settings.training, train_u, train_i, n_players, n_slots)
        served = cluster_share(most_similar(vectors, played), played, slot_cluster)
        knn = ItemKNN(train_u, train_i, n_players, n_slots)
        co = cluster_share(np.stack([knn.similar_items(int(i))[0] for i in played]), played, slot_cluster)
        rows.append((seed, figures, ranked, train_seconds, baseline_seconds, kind, served, co, config,
                     _kept_epochs(model.history)))
        print(
            f"  model HR@10 {ranked.hit_ratio:.3f} NDCG@10 {ranked.ndcg:.3f} in {train_seconds:.0f} s "
            f"(batch {config.batch_size}, kept epochs {_kept_epochs(model.history)}); baselines in "
            f"{baseline_seconds:.0f} s",
            flush=True,
        )

    config = rows[0][8]
    print(
        f"\n{args.scale} casino ({players:,} x {slots:,} x {days} days), HR@10 / NDCG@10 on the test half; "
        f"model: {config.model}, user_history={config.user_history}, {config.factors} factors, "
        f"{config.stage('gmf').epochs} epochs per stage of {config.optimizer} at {config.lr}"
    )
    print(f"{'seed':>4}  {'popularity':>13}  {'item-kNN':>13}  {'EASE (λ)':>22}  {'iALS (factors/reg)':>24}  "
          f"{'model':>13}  {'train s':>7}  {'cluster share: served / item-kNN':>33}")
    for seed, f, ranked, seconds, _, kind, served, co, _, _ in rows:
        ease = f"{f['ease_hr@10']:.3f} / {f['ease_ndcg@10']:.3f} ({f['ease_lambda']:g})"
        ials = f"{f['ials_hr@10']:.3f} / {f['ials_ndcg@10']:.3f} ({f['ials_factors']}/{f['ials_reg']:g})"
        print(
            f"{seed:>4}  {f['popularity_hr@10']:.3f} / {f['popularity_ndcg@10']:.3f}  "
            f"{f['itemknn_hr@10']:.3f} / {f['itemknn_ndcg@10']:.3f}  {ease:>22}  {ials:>24}  "
            f"{ranked.hit_ratio:.3f} / {ranked.ndcg:.3f}  {seconds:>7.0f}  {kind:>12} {served:.3f} / {co:.3f}"
        )


if __name__ == "__main__":
    main()
