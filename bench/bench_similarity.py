"""Which item vector finds "the next item"? A similar-slot proxy measured on MovieLens-1M.

For every user whose train rows carry real timestamps (timestamp > 0: users 0-2998 in the NCF
split, see the data's PROVENANCE.md), take the item rated last in train (latest timestamp; among
ties, the first such row in the file) and ask whether the user's test item (rated next) is among
its 10 most similar items, for each vector kind of ``recsys.ncf.vectors`` taken from one trained
NeuMF, against item-kNN cosine co-occurrence and against plain popularity. Two columns:

- ``hit@10``: among the 10 nearest items of the whole catalogue (the query item excluded);
- ``hit@10 unseen``: among the 10 nearest items the user has not rated in train, which is what a
  "similar slots you have not tried" list shows.

Run (a few minutes; the data stays in ../shared, nothing is copied):

    python bench/bench_similarity.py [--data ../shared/data/ml-1m-ncf] [--epochs N] [--gmf-epochs N] [--mlp-epochs N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-1m-ncf"
K = 10


def previous_items(user_idx: np.ndarray, item_idx: np.ndarray, timestamp: np.ndarray) -> dict[int, int]:
    """Per user with timestamps > 0: the train item with the latest timestamp (first row among ties)."""
    keep = np.flatnonzero(timestamp > 0)
    # Sort by user, then newest first, then file order; the first row of each user wins.
    order = keep[np.lexsort((keep, -timestamp[keep], user_idx[keep]))]
    users, first = np.unique(user_idx[order], return_index=True)
    return dict(zip(users.tolist(), item_idx[order[first]].tolist(), strict=True))


def hits(
    neighbours_of, queries: np.ndarray, targets: np.ndarray, seen: list[np.ndarray], n_items: int
) -> tuple[float, float]:
    """Share of queries whose target is in the top K, raw and after removing the user's seen items."""
    ranked = neighbours_of(queries)  # (q, n_items) item ids, most similar first, query excluded
    raw = np.mean([t in row[:K] for row, t in zip(ranked, targets, strict=True)])
    unseen_hits = []
    for row, t, s in zip(ranked, targets, seen, strict=True):
        unseen = row[~np.isin(row, s)]
        unseen_hits.append(t in unseen[:K])
    return float(raw), float(np.mean(unseen_hits))


def ranking_from_similarity(sim_rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    sim = np.array(sim_rows, dtype=np.float64)
    sim[np.arange(queries.shape[0]), queries] = -np.inf
    return np.argsort(-sim, axis=1, kind="stable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, help="NeuMF epochs (default: NCFConfig's)")
    parser.add_argument("--gmf-epochs", type=int, help="GMF pre-training epochs (default: NCFConfig's)")
    parser.add_argument("--mlp-epochs", type=int, help="MLP pre-training epochs (default: NCFConfig's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from recsys.baselines import ItemKNN, Popularity
    from recsys.ncf.config import NCFConfig
    from recsys.ncf.training import train
    from recsys.ncf.vectors import VECTOR_KINDS, item_vectors
    from recsys.ncf_files import read_ratings

    train_rows = read_ratings(args.data / "ml-1m.train.rating")
    test_rows = read_ratings(args.data / "ml-1m.test.rating")
    n_users = int(max(train_rows.user_idx.max(), test_rows.user_idx.max())) + 1
    n_items = int(max(train_rows.item_idx.max(), test_rows.item_idx.max())) + 1

    previous = previous_items(train_rows.user_idx, train_rows.item_idx, train_rows.timestamp)
    test_item = dict(zip(test_rows.user_idx.tolist(), test_rows.item_idx.tolist(), strict=True))
    users = np.array(sorted(u for u in previous if u in test_item), dtype=np.int64)
    queries = np.array([previous[u] for u in users], dtype=np.int64)
    targets = np.array([test_item[u] for u in users], dtype=np.int64)
    order = np.argsort(train_rows.user_idx, kind="stable")
    bounds = np.searchsorted(train_rows.user_idx[order], np.stack([users, users + 1]))
    seen = [train_rows.item_idx[order[a:b]] for a, b in bounds.T]

    changes = {"threads": args.threads}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.gmf_epochs is not None:
        changes["gmf_epochs"] = args.gmf_epochs
    if args.mlp_epochs is not None:
        changes["mlp_epochs"] = args.mlp_epochs
    config = NCFConfig().replace(**changes)
    started = time.perf_counter()
    model = train(config, train_rows.user_idx, train_rows.item_idx, n_users, n_items)
    print(f"NeuMF trained in {time.perf_counter() - started:.0f} s "
          f"(GMF {config.gmf_epochs} + MLP {config.mlp_epochs} pre-training epochs, NeuMF {config.epochs})")
    print(f"{users.shape[0]} users with timestamps; query = item rated last in train, target = test item\n")

    rows = []
    for kind in VECTOR_KINDS:
        vectors = item_vectors(model, kind)
        rows.append((f"neumf {kind}", *hits(lambda q, v=vectors: ranking_from_similarity(v[q] @ v.T, q),
                                            queries, targets, seen, n_items)))
    knn = ItemKNN(train_rows.user_idx, train_rows.item_idx, n_users, n_items, neighbors=None, shrink=0.0)
    rows.append(("item-kNN cosine", *hits(lambda q: ranking_from_similarity(knn.similarity[q], q),
                                          queries, targets, seen, n_items)))
    counts = Popularity(train_rows.user_idx, train_rows.item_idx, n_items).counts
    rows.append(("popularity", *hits(lambda q: ranking_from_similarity(np.tile(counts, (q.shape[0], 1)), q),
                                     queries, targets, seen, n_items)))

    print(f"{'vectors':<20}{'hit@10':>8}{'hit@10 unseen':>15}")
    for name, raw, unseen in rows:
        print(f"{name:<20}{raw:>8.4f}{unseen:>15.4f}")


if __name__ == "__main__":
    main()
