"""What the worker's baselines (popularity, item-kNN, EASE with its l2 grid) cost at casino scale.

A synthetic casino is generated in memory and cut the way the worker cuts it
(``bench_weighting.worker_casino``: consolidated pairs, the worker's time holdout, its sampled
negatives and validation / test halves); then ``recsys.run_baselines.measure_baselines`` runs exactly as in
a training run, timed as a whole, and its parts are timed once more one by one. The process's
resident memory is sampled every 0.1 s: the peak above what it held before the baselines is what
they add to a training run.

    python bench/bench_baselines.py [--players 200000] [--slots 1000] [--days 90] [--seed 0]
    python bench/bench_baselines.py --players 1000000 --slots 5000      # bench_pipeline's scale

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_weighting import worker_casino  # noqa: E402

from recsys.settings import Settings  # noqa: E402


class PeakRSS:
    """Samples this process's resident memory (``/proc/self/statm``) every ``interval`` seconds."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def added_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=200_000)
    parser.add_argument("--slots", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0, help="seed of the casino")
    args = parser.parse_args()

    from recsys.baselines import EASE_L2_GRID, ItemKNN, Popularity, TrainItems, ease_weights
    from recsys.evaluation import evaluate_sampled
    from recsys.holdout_cases import evaluation_cases
    from recsys.metrics import VersionMetrics
    from recsys.run_baselines import measure_baselines

    settings = Settings()
    started = time.perf_counter()
    casino, data, holdout = worker_casino(args.players, args.slots, args.days, args.seed, settings)
    n_players, n_slots = len(data.player_keys), len(data.slot_keys)
    train_u, train_i, test_cases, validation_cases = evaluation_cases(data, holdout, settings.training)
    negatives = test_cases[2]
    history_lengths = np.diff(TrainItems(train_u, train_i, n_players, n_slots).indptr).astype(np.float64)
    pair_cells = float((history_lengths**2).sum())
    print(
        f"{args.players:,} players x {args.slots:,} slots x {args.days} days (casino seed {args.seed}): "
        f"{len(casino.sessions):,} sessions -> {train_u.size:,} training pairs of {n_players:,} players x "
        f"{n_slots:,} slots, sum |I_u|^2 = {pair_cells:,.0f}; {test_cases[0].size:,} test and "
        f"{validation_cases[0].size:,} validation cases x {negatives.shape[1]} negatives "
        f"({time.perf_counter() - started:.0f} s to build)"
    )
    del casino

    with PeakRSS() as memory:
        t = time.perf_counter()
        figures = VersionMetrics(baselines=measure_baselines(
            train_u, train_i, n_players, n_slots, test_cases, validation_cases, ials=False)).to_json()
        total = time.perf_counter() - t
    print(
        f"\nmeasure_baselines (iALS apart): {total:.1f} s, peak resident memory +{memory.added_mib:,.0f} MiB\n"
        f"  popularity HR@10 {figures['popularity_hr@10']:.3f} NDCG@10 {figures['popularity_ndcg@10']:.3f}\n"
        f"  item-kNN   HR@10 {figures['itemknn_hr@10']:.3f} NDCG@10 {figures['itemknn_ndcg@10']:.3f}\n"
        f"  EASE       HR@10 {figures['ease_hr@10']:.3f} NDCG@10 {figures['ease_ndcg@10']:.3f} "
        f"(lambda {figures['ease_lambda']:g}; validation HR@10 by lambda {figures['ease_lambda_grid']})"
    )

    print("\nits parts, once more:")
    t = time.perf_counter()
    evaluate_sampled(Popularity(train_u, train_i, n_slots), *test_cases)
    print(f"  popularity fit + test: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    knn = ItemKNN(train_u, train_i, n_players, n_slots)
    fit = time.perf_counter() - t
    t = time.perf_counter()
    evaluate_sampled(knn, *test_cases)
    print(f"  item-kNN fit (X^T X, cosine, top 50): {fit:.1f} s, test cases: {time.perf_counter() - t:.1f} s")
    del knn
    t = time.perf_counter()
    train = TrainItems(train_u, train_i, n_players, n_slots)
    gram = train.gram()
    print(f"  X^T X ({n_slots:,} x {n_slots:,}): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    ease_weights(gram, EASE_L2_GRID[0])
    print(f"  one EASE inverse: {time.perf_counter() - t:.1f} s (x {len(EASE_L2_GRID)} lambdas on the grid)")


if __name__ == "__main__":
    main()
