"""How often experiment intervals call "different" when nothing differs, and cover a known effect.

    python bench/bench_experiment_stats.py [--runs 200] [--players 2000] [--seed 20]

Draws ``--runs`` A/A experiments on heavy-tailed worlds (tests/experiment_world.py,
``heavy_tailed_arm``: impressions per player 1 + 4 x Pareto(1.5) capped at 1,000, click propensity
Beta(0.5, 4.5) per player, clicks per impression 10 % in both arms) and ``--runs`` A/B experiments
(10 % -> 12 %, a true difference of +2 points). For each it computes, on the same worlds:

* per player: the delta method over players (``recsys.experiments.estimate``, what the report uses);
* per item: the intervals the report used before, Newcombe's interval of the difference of the
  pooled proportions (statsmodels ``confint_proportions_2indep``), every item independent.

Prints the share of A/A runs called "different" at 95 % (the false-positive rate; 5 % is right),
and the share of A/B runs whose interval covers the true difference (95 % is right). Pure numpy,
no database; seeded, a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from statsmodels.stats.proportion import confint_proportions_2indep

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.experiments import METRICS, estimate  # noqa: E402
from tests.experiment_world import heavy_tailed_arm  # noqa: E402

WORLD = {"spread": 5.0, "tail": 1.5}


def item_interval(arm, control) -> tuple[float, float]:
    low, high = confint_proportions_2indep(arm.clicks.sum(), arm.impressions.sum(), control.clicks.sum(),
                                           control.impressions.sum(), method="newcomb", compare="diff")
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--players", type=int, default=2000, help="players per arm")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    aa = {"per player": 0, "per item": 0}
    ab = {"per player": 0, "per item": 0}
    truth = 0.02
    for _ in range(args.runs):
        control, same = (heavy_tailed_arm(rng, args.players, 0.10, **WORLD) for _ in range(2))
        aa["per player"] += estimate(METRICS[0], same, control).significant
        low, high = item_interval(same, control)
        aa["per item"] += low > 0 or high < 0
        better = heavy_tailed_arm(rng, args.players, 0.12, **WORLD)
        e = estimate(METRICS[0], better, control)
        ab["per player"] += e.diff_low < truth < e.diff_high
        low, high = item_interval(better, control)
        ab["per item"] += low < truth < high
    print(f"{args.runs} A/A and {args.runs} A/B experiments, {args.players:,} players per arm, seed {args.seed} "
          f"({time.perf_counter() - started:.1f} s)")
    print(f"{'intervals':<12} {'A/A called different (5 % is right)':>38} {'A/B covers +2 points (95 % is right)':>38}")
    for kind in ("per player", "per item"):
        print(f"{kind:<12} {aa[kind] / args.runs:>38.1%} {ab[kind] / args.runs:>38.1%}")


if __name__ == "__main__":
    main()
