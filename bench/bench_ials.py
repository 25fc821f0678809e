"""What one iALS fit costs at a casino's shape (recsys.baselines.IALS, the ``implicit`` package on the CPU).

Synthetic interactions of the shape asked (players x slots, pairs drawn with a Zipf slot popularity),
one fit per factor count at regularisation 1, 15 sweeps, timed; and the share of a daily pipeline's
``--pipeline-seconds`` (docs/benchmarks.md: 1,106.7 s for the 10^6 cycle) that the worker's grid of
``len(IALS_FACTORS_GRID) + len(IALS_REG_GRID) - 1`` fits would take at these times.

    python bench/bench_ials.py --players 1000000 --slots 4995 --pairs 3199220 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from recsys.baselines import IALS, IALS_FACTORS_GRID, IALS_REG_GRID


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=1_000_000)
    parser.add_argument("--slots", type=int, default=4_995)
    parser.add_argument("--pairs", type=int, default=3_199_220)
    parser.add_argument("--factors", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, default=1, help="implicit's threads (0: every core)")
    parser.add_argument("--pipeline-seconds", type=float, default=1106.7)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    users = rng.integers(0, args.players, args.pairs)
    items = np.minimum(rng.zipf(1.3, args.pairs) - 1, args.slots - 1)
    print(f"{args.players:,} players x {args.slots:,} slots, {args.pairs:,} pairs drawn; {args.threads} thread(s)")
    seconds = {}
    for factors in args.factors:
        started = time.perf_counter()
        IALS(users, items, args.players, args.slots, factors, 1.0, threads=args.threads)
        seconds[factors] = time.perf_counter() - started
        share = 100 * seconds[factors] / args.pipeline_seconds
        print(f"  {factors:>4} factors: {seconds[factors]:.1f} s ({share:.0f} % of the "
              f"{args.pipeline_seconds:,.0f} s pipeline)", flush=True)
    fits = len(IALS_FACTORS_GRID) + len(IALS_REG_GRID) - 1
    cheapest = min(seconds.values())
    print(f"the worker's grid: {fits} fits, at least {fits * cheapest:,.0f} s "
          f"({100 * fits * cheapest / args.pipeline_seconds:.0f} % of the pipeline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
