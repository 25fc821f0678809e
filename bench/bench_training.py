"""Training throughput and peak memory of NeuMF at casino scale: sparse vs dense embedding updates.

10^6 users x 5,000 items, a few million synthetic interactions (uniform users, power-law items),
a limited number of training steps. Four setups of the same model and the same training loop
(``recsys.ncf.training``), each in its own process so that peak RSS is its own:

- ``sparse-adam``: ``nn.Embedding(sparse=True)`` stepped by ``SparseAdam``, dense layers by ``Adam``
  (the worker's default, ``RECSYS_TRAIN_OPTIMIZER=adam``);
- ``sparse-sgd``: ``nn.Embedding(sparse=True)`` stepped by plain SGD, dense layers by ``Adam`` (the
  ML-1M defaults of ``NCFConfig``'s pre-training stages);
- ``dense-adam``: plain ``nn.Embedding`` with ``Adam`` over every parameter (the usual PyTorch loop);
- ``ddp-sparse-sgd``: ``sparse-sgd`` under ``torchrun --nproc-per-node 2`` (DDP, gloo), each process
  with half the threads and half of every batch (RSS is one process's).

Prints samples/s, seconds per step and peak RSS for each, and the ratios. Run:

    python bench/bench_training.py [--users 1000000] [--items 5000] [--rows 3000000] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SETUPS = ("sparse-adam", "sparse-sgd", "dense-adam", "ddp-sparse-sgd")


def measure(setup: str, users: int, items: int, rows: int, steps: int, threads: int) -> dict:
    import numpy as np
    import torch

    from recsys.ncf import distributed
    from recsys.ncf.config import NCFConfig
    from recsys.ncf.model import NCFNet
    from recsys.ncf.sampling import ObservedPairs
    from recsys.ncf.training import build_optimizers, train_epoch

    config = NCFConfig(
        optimizer="sgd" if setup.endswith("sparse-sgd") else "adam", lr=0.001, sparse=setup != "dense-adam",
        threads=threads, pretrain=False,
    )
    distributed.init_from_env()
    torch.set_num_threads(distributed.threads_per_process(threads))
    rng = np.random.default_rng(0)
    user_idx = rng.integers(0, users, rows)
    # Power-law slot popularity (Zipf-like ranks), as in casino play.
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    item_idx = rng.choice(items, size=rows, p=popularity / popularity.sum())
    observed = ObservedPairs(user_idx, item_idx, items)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    torch.manual_seed(0)
    net = NCFNet(users, items, config, sparse=config.sparse)
    optimizers = build_optimizers(net, config)
    forward = distributed.data_parallel(net)
    per_step = config.batch_size // (1 + config.negatives)
    # Two warm-up steps (allocation of optimizer state, first-touch of pages), then the timed ones.
    warm = slice(0, 2 * per_step)
    train_epoch(forward, optimizers, config, user_idx[warm], item_idx[warm], None, observed, rng)
    timed = slice(2 * per_step, (2 + steps) * per_step)
    started = time.perf_counter()
    _, samples = train_epoch(forward, optimizers, config, user_idx[timed], item_idx[timed], None, observed, rng)
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "setup": setup,
        "samples": samples,
        "seconds": seconds,
        "samples_per_s": samples / seconds,
        "ms_per_step": 1e3 * seconds / steps,
        "peak_rss_mib": rss / 1024,
        "model_and_optimizer_mib": (rss - rss_data) / 1024,
        "parameters": sum(p.numel() for p in net.parameters()),
        "batch_size": config.batch_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", choices=SETUPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = measure(args.one, args.users, args.items, args.rows, args.steps, args.threads)
        from recsys.ncf import distributed

        if distributed.is_leader():
            print(json.dumps(result))
        distributed.shutdown()
        return

    results = {}
    for setup in SETUPS:
        launcher = [sys.executable]
        if setup.startswith("ddp-"):
            launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        done = subprocess.run(
            [*launcher, __file__, "--one", setup, "--users", str(args.users), "--items", str(args.items),
             "--rows", str(args.rows), "--steps", str(args.steps), "--threads", str(args.threads)],
            capture_output=True, text=True, check=True,
        )
        results[setup] = json.loads(done.stdout.strip().splitlines()[-1])

    print(f"NeuMF, {args.users:,} users x {args.items:,} items, {args.rows:,} interactions, "
          f"{args.steps} steps of {results['dense-adam']['batch_size']}, {args.threads} threads, "
          f"{results['dense-adam']['parameters']:,} parameters")
    print(f"{'setup':<16}{'samples/s':>12}{'ms/step':>10}{'peak RSS MiB':>14}{'model+opt MiB':>15}")
    for setup, r in results.items():
        print(f"{setup:<16}{r['samples_per_s']:>12,.0f}{r['ms_per_step']:>10.1f}"
              f"{r['peak_rss_mib']:>14,.0f}{r['model_and_optimizer_mib']:>15,.0f}")
    dense = results["dense-adam"]
    for setup in ("sparse-adam", "sparse-sgd", "ddp-sparse-sgd"):
        r = results[setup]
        print(f"{setup} vs dense-adam: {r['samples_per_s'] / dense['samples_per_s']:.1f}x throughput, "
              f"{r['model_and_optimizer_mib'] / max(dense['model_and_optimizer_mib'], 1):.2f}x model+optimizer memory")


if __name__ == "__main__":
    main()
