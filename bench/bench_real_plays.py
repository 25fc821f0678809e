"""Real play counts on every seed: Last.fm 2K split by ``recsys split-plays`` with several seeds, and
HR@10 / NDCG@10 of the worker's NeuMF, EASE, iALS, item-kNN and popularity on each seed's test cut,
with the mean over seeds and its standard error.

The data is licensed for research only: it is read from ``--data`` (``/work/shared/data/lastfm-2k``
by default) and each seed's files go to a temporary folder, never into the repository. EASE's λ and
iALS's factors and regularisation are chosen by ``recsys evaluate`` on the validation cut it makes
with the same seed; NeuMF runs with ``--neumf`` (the settings docs/training.md chose on seed 0's
validation cut). Every model is one ``recsys evaluate --json`` process (``--threads`` torch and
BLAS threads), so a run can be cut short and still print what it finished.

    python bench/bench_real_plays.py --seeds 0 1 2 3 4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("neumf", "ease", "ials", "itemknn", "pop")
NEUMF = ("--preset worker --factors 64 --gmf-epochs 16 --mlp-epochs 8 --set negatives=8 --set reg=0.003 "
         "--set mlp_reg=0.003")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/lastfm-2k/user_artists.dat"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--neumf", default=NEUMF, help="recsys evaluate options of the NeuMF run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    # A SIGTERM ends the run like Ctrl-C: the running evaluation is killed and the temporary folder, which
    # holds derived copies of the licensed data, is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    env = {**os.environ, "RECSYS_TRAIN_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    results: dict[str, dict[int, dict]] = {model: {} for model in args.models}
    with tempfile.TemporaryDirectory(prefix="bench-real-plays-") as folder:
        for seed in args.seeds:
            out = Path(folder) / f"seed-{seed}"
            _run([sys.executable, "-m", "recsys", "split-plays", str(args.data), "--out", str(out), "--prefix",
                  "plays", "--seed", str(seed)], env)
            files = ["--train", str(out / "plays.train.rating"), "--test", str(out / "plays.test.rating"),
                     "--negatives", str(out / "plays.test.negative")]
            for model in args.models:
                extra = [*args.neumf.split(), "--threads", str(args.threads)] if model == "neumf" else []
                started = time.perf_counter()
                line = _run([sys.executable, "-m", "recsys", "evaluate", *files, "--model", model, "--seed", str(seed),
                             "--json", *extra], env)
                result = json.loads(line.strip().splitlines()[-1])
                results[model][seed] = result
                print(f"seed {seed} {model:<8} HR@10 {result['hr@10']:.4f}  NDCG@10 {result['ndcg@10']:.4f}  "
                      f"({time.perf_counter() - started:.0f} s{_settings(result)})", flush=True)
    print(f"\n{'model':<8}  " + "  ".join(f"{'seed ' + str(s):>15}" for s in args.seeds)
          + f"  {'mean ± s.e. HR@10':>20}  {'mean ± s.e. NDCG@10':>20}")
    for model in args.models:
        runs = results[model]
        cells = [f"{runs[s]['hr@10']:.3f} / {runs[s]['ndcg@10']:.3f}" if s in runs else "-" for s in args.seeds]
        print(f"{model:<8}  " + "  ".join(f"{c:>15}" for c in cells)
              + f"  {_mean(runs, 'hr@10'):>20}  {_mean(runs, 'ndcg@10'):>20}")
    return 0


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:4])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def _settings(result: dict) -> str:
    if "ease_lambda" in result:
        return f", lambda {result['ease_lambda']:g}"
    if "ials_factors" in result:
        return f", {result['ials_factors']} factors, reg {result['ials_reg']:g}"
    return ""


def _mean(runs: dict[int, dict], key: str) -> str:
    """``0.812 ± 0.004``: the mean over seeds and its standard error (s / sqrt(n)); one seed: no error."""
    values = [r[key] for r in runs.values()]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.3f} ± {sd / math.sqrt(len(values)):.3f}"


if __name__ == "__main__":
    sys.exit(main())
