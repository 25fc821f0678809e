"""Memory of one more model version in an API process, as an experiment's arm holds it.

    python bench/bench_experiment_memory.py [--slots 5000 20000] [--versions 3]

For each catalogue size, builds ``--versions`` serving models (``recsys.serving.model.
build_serving_model``: FAISS index, slot vectors, scoring weights) with the worker's default
configuration (``Settings`` defaults through ``recsys.worker.ncf_config``) and random weights of
the right shapes, no database. Prints the process's resident memory (VmRSS) after each build, the
growth per version, and the bytes the model's own arrays hold. A first build, discarded, keeps
one-time allocations (torch, FAISS) out of the figures.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.db.versions import EMBEDDING_TABLES  # noqa: E402
from recsys.ncf.model import NCFNet  # noqa: E402
from recsys.ncf.played import PlayedItems  # noqa: E402
from recsys.ncf.vectors import normalize_rows  # noqa: E402
from recsys.serving.catalogue import Catalogue, SlotInfo  # noqa: E402
from recsys.serving.model import ServingModel, build_serving_model  # noqa: E402
from recsys.settings import Settings  # noqa: E402
from recsys.worker import ncf_config  # noqa: E402


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def model_bytes(model: ServingModel) -> int:
    """Bytes of the model's arrays: slot vectors, key maps, scoring tables and the index's vectors."""
    arrays = [model.slot_keys, model.row_of, model.similarity, model.provisional]
    if model.model is not None:
        arrays += list(model.model.weights.values())
    index_vectors = model.similarity.nbytes  # a Flat index keeps one float32 copy of every vector
    return sum(a.nbytes for a in arrays) + index_vectors


def version(n_slots: int, settings: Settings, seed: int, catalogue: Catalogue) -> ServingModel:
    import torch

    torch.manual_seed(seed)
    config = ncf_config(settings.training, n_pairs=1)
    played = PlayedItems(np.array([0]), np.array([0]), 1, n_slots)
    net = NCFNet(1, n_slots, config, played=played if config.user_history != "none" else None)
    weights = net.numpy_weights()
    towers = {t: weights[f"item_{t}.weight"] for t in ("gmf", "mlp") if f"item_{t}.weight" in weights}
    stored = {k: v for k, v in weights.items() if k not in EMBEDDING_TABLES}
    keys = np.arange(1, n_slots + 1, dtype=np.int64)
    return build_serving_model(seed, keys, normalize_rows(towers["gmf"]), towers, np.zeros(n_slots, dtype=bool),
                               {"config": config.to_dict(), "weights": stored}, catalogue,
                               settings.serving.index_factory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--versions", type=int, default=3)
    args = parser.parse_args()
    settings = Settings.from_env({})
    t = settings.training
    print(f"worker defaults: {t.model}, factors {t.factors}, MLP {t.mlp_layers}, user_history {t.user_history}, "
          f"index {settings.serving.index_factory!r}")
    for n_slots in args.slots:
        catalogue = Catalogue.from_slots([SlotInfo(k, f"s{k}", f"p{k % 40}", f"t{k % 12}", "medium", True, None)
                                          for k in range(1, n_slots + 1)])
        version(n_slots, settings, 0, catalogue)  # one-time allocations (torch, FAISS) out of the figures
        gc.collect()
        before = rss_mib()
        held, sizes = [], []
        for seed in range(1, args.versions + 1):
            held.append(version(n_slots, settings, seed, catalogue))
            gc.collect()
            sizes.append(rss_mib())
        steps = np.diff([before, *sizes])
        print(f"{n_slots:>6,} slots: RSS {before:.1f} MiB -> " + " -> ".join(f"{s:.1f}" for s in sizes)
              + f" MiB; per version {', '.join(f'{d:.1f}' for d in steps)} MiB "
              f"(median {np.median(steps):.1f}); the model's arrays {model_bytes(held[-1]) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
