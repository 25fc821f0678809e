"""Which item vector finds similar slots? MovieLens-1M's next item, and a synthetic casino's clusters.

**MovieLens-1M.** For every user whose train rows carry real timestamps (timestamp > 0: users
0-2998 in the NCF split, see the data's PROVENANCE.md), take the item rated last in train (latest
timestamp; among ties, the first such row in the file) and ask whether the user's test item (rated
next) is among its 10 most similar items, for each vector kind of ``recsys.ncf.vectors`` taken from
one trained NeuMF, against item-kNN cosine co-occurrence and against plain popularity. The NeuMF is
the one the worker trains and serves (``--ml1m-model worker``, the default: ``recsys.worker.ncf_config``
at default settings, all epochs, no weights) or NCFConfig's ML-1M defaults (``--ml1m-model ncf``, the
``recsys evaluate`` model). With players built from their items, the item-to-item scores of the
played-item tables are measured too (``played_item_scores``). Two columns:

- ``hit@10``: among the 10 nearest items of the whole catalogue (the query item excluded);
- ``hit@10 unseen``: among the 10 nearest items the user has not rated in train, which is what a
  "similar slots you have not tried" list shows.

**Synthetic casino.** A casino generated in memory by ``recsys.synth`` (whose slots each belong to
one latent taste cluster, kept as ground truth in ``Casino.slot_clusters``), consolidated into the
worker's training pairs as ``bench/bench_weighting.py`` does it (no database), minus the worker's
time holdout. The worker's model (``recsys.worker.ncf_config`` at default settings: NeuMF from
scratch, no pre-training, positives weighted by the normalized score) and, for comparison, a
GMF-only and an MLP-only model at the same settings are trained on those pairs. For every vector
kind a model has: the share of each slot's 10 most similar slots (cosine,
``recsys.ncf.vectors.most_similar``) that share its cluster, against item-kNN cosine co-occurrence,
popularity (the 10 most played slots) and random neighbours. The random share is exact: a slot of a
cluster with ``n_c`` of the ``N`` slots expects ``(n_c - 1) / (N - 1)``, averaged over the slots.
Columns: every slot with training pairs, then the slots played by at least ``--well-played``
players in training and the others (their vectors got few updates).

**Co-occurrence vectors.** Both parts also measure ``recsys.baselines.spectral_item_vectors`` on
the same training pairs: the worker's kind ``cooc`` (served by default), each of its two bands alone
and plain truncations (``spectral_variants``); the casino part adds item-kNN with shrink 10 and 50
neighbours (``bench/bench_casino_quality.py``'s). ``--skip-models`` trains no NCF model and prints
these rows only.

Run (the ML-1M data stays in ../shared, nothing is copied; the casino lives in memory):

    python bench/bench_similarity.py [--ml1m-only | --synthetic-only] [--threads N] [--skip-models]
        [--data ../shared/data/ml-1m-ncf] [--ml1m-model worker|ncf] [--epochs N] [--gmf-epochs N] [--mlp-epochs N]
        [--players 200000] [--slots 1000] [--days 90] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

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


def played_item_scores(model) -> dict:
    """Item-to-item scores of a model whose users are built from their played items (FISM; none
    otherwise), each ``f(queries) -> (q, n_items)`` scores, not served (one vector per slot is):

    - ``hist``: cosine of the played-item vectors ``y_j`` (``item_hist_gmf``), one vector per item;
    - ``hist+gmf``: ``y_j`` and ``q_j`` normalised side by side, one vector per item;
    - ``y_j . h q_i``: the GMF logit of a user who played only the query item, bias left out (asymmetric:
      a query vector ``y_j`` searched against the item vectors ``h q_i``);
    - ``y_j . h q_i + b_i``: the same with the item bias, i.e. the GMF part of the model's own score.
    """
    from recsys.ncf.vectors import normalize_rows

    w = model.weights
    if "item_hist_gmf.weight" not in w:
        return {}
    y = w["item_hist_gmf.weight"]
    hq = w["item_gmf.weight"] * w["predict.weight"][0, : y.shape[1]]
    bias = w["item_bias.weight"][:, 0] if "item_bias.weight" in w else np.zeros(y.shape[0], dtype=np.float32)
    hist = normalize_rows(y)
    both = normalize_rows(np.concatenate([hist, normalize_rows(w["item_gmf.weight"])], axis=1))
    return {
        "hist": lambda q: hist[q] @ hist.T,
        "hist+gmf": lambda q: both[q] @ both.T,
        "y_j . h q_i": lambda q: y[q] @ hq.T,
        "y_j . h q_i + b_i": lambda q: y[q] @ hq.T + bias,
    }


def spectral_variants(
    user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int, served_kind: str
) -> dict:
    """Co-occurrence vectors (``recsys.baselines.spectral_item_vectors``): the worker's kind ``cooc``
    and each of its two bands alone, plus the plain truncations it was chosen against."""
    from recsys.baselines import SPECTRAL_ALPHA, SPECTRAL_BANDS, spectral_item_vectors

    variants = {"cooc (served)" if served_kind == "cooc" else "cooc": SPECTRAL_BANDS}
    for _, dim, power in SPECTRAL_BANDS:
        variants[f"cooc d{dim} p{power}"] = ((1.0, dim, power),)
    for dim in (64, 128):
        variants[f"cooc d{dim} p0.5"] = ((1.0, dim, 0.5),)
    return {
        name: spectral_item_vectors(user_idx, item_idx, n_users, n_items, bands=bands, alpha=SPECTRAL_ALPHA)
        for name, bands in variants.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--ml1m-only", action="store_true", help="run the MovieLens-1M part only")
    only.add_argument("--synthetic-only", action="store_true", help="run the synthetic-casino part only")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every training run")
    parser.add_argument("--skip-models", action="store_true", help="train no NCF model: co-occurrence rows only")
    ml1m = parser.add_argument_group("MovieLens-1M")
    ml1m.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ml1m.add_argument(
        "--ml1m-model", choices=("worker", "ncf"), default="worker",
        help="worker: the model the worker trains and serves (recsys.worker.ncf_config at default settings); "
        "ncf: NCFConfig's ML-1M defaults (the `recsys evaluate` model; --epochs etc. apply to it)",
    )
    ml1m.add_argument("--epochs", type=int, help="NeuMF fine-tuning epochs after pre-training (default: NCFConfig's)")
    ml1m.add_argument("--gmf-epochs", type=int, help="GMF pre-training epochs (default: NCFConfig's)")
    ml1m.add_argument("--mlp-epochs", type=int, help="MLP pre-training epochs (default: NCFConfig's)")
    synthetic = parser.add_argument_group("synthetic casino")
    synthetic.add_argument("--players", type=int, default=200_000)
    synthetic.add_argument("--slots", type=int, default=1_000)
    synthetic.add_argument("--days", type=int, default=90)
    synthetic.add_argument("--seed", type=int, default=0, help="seed of the casino (training keeps the worker's)")
    synthetic.add_argument("--well-played", type=int, default=20, help="players that make a slot well played")
    args = parser.parse_args()

    if not args.synthetic_only:
        print("== MovieLens-1M: the next item among the previous item's 10 nearest ==")
        next_item_on_ml1m(args)
    if not args.ml1m_only:
        if not args.synthetic_only:
            print()
        print("== Synthetic casino: a slot's 10 nearest slots in its latent cluster ==")
        clusters_on_synthetic_casino(args)


def next_item_on_ml1m(args: argparse.Namespace) -> None:
    from recsys.baselines import ItemKNN, Popularity
    from recsys.ncf_files import read_ratings
    from recsys.settings import Settings

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

    settings = Settings()
    rows = []
    if not args.skip_models:
        rows = neumf_rows(args, settings, train_rows, n_users, n_items, queries, targets, seen)
    print(f"{users.shape[0]} users with timestamps; query = item rated last in train, target = test item\n")

    for name, vectors in spectral_variants(
        train_rows.user_idx, train_rows.item_idx, n_users, n_items, settings.training.similarity_vector
    ).items():
        rows.append((name, *hits(lambda q, v=vectors: ranking_from_similarity(v[q] @ v.T, q),
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


def neumf_rows(args, settings, train_rows, n_users: int, n_items: int, queries, targets, seen) -> list:
    """Train the ML-1M NeuMF (``--ml1m-model``) and measure each vector kind and played-item score of it."""
    from recsys.ncf.config import NCFConfig
    from recsys.ncf.training import train
    from recsys.ncf.vectors import VECTOR_KINDS, item_vectors
    from recsys.worker import ncf_config

    if args.ml1m_model == "worker":
        config = ncf_config(settings.training, len(train_rows)).replace(threads=args.threads)
        label = f"the worker's NeuMF (players from their items: {config.user_history}, {config.factors} factors)"
    else:
        changes = {"threads": args.threads}
        if args.epochs is not None:
            changes["finetune_epochs"] = args.epochs
        if args.gmf_epochs is not None:
            changes["gmf_epochs"] = args.gmf_epochs
        if args.mlp_epochs is not None:
            changes["mlp_epochs"] = args.mlp_epochs
        config = NCFConfig().replace(**changes)
        label = "NeuMF with the ML-1M defaults of NCFConfig"
    started = time.perf_counter()
    model = train(config, train_rows.user_idx, train_rows.item_idx, n_users, n_items)
    print(f"{label} trained in {time.perf_counter() - started:.0f} s "
          f"(GMF {config.stage('gmf').epochs} + MLP {config.stage('mlp').epochs} pre-training epochs, "
          f"{config.finetune_epochs} fine-tuning; served slot vector: {settings.training.similarity_vector})")
    rows = []
    for kind in VECTOR_KINDS:
        vectors = item_vectors(model, kind)
        served = " (served)" if kind == settings.training.similarity_vector else ""
        rows.append((f"neumf {kind}{served}", *hits(lambda q, v=vectors: ranking_from_similarity(v[q] @ v.T, q),
                                            queries, targets, seen, n_items)))
    for name, score_rows in played_item_scores(model).items():
        rows.append((name, *hits(lambda q, f=score_rows: ranking_from_similarity(f(q), q),
                                 queries, targets, seen, n_items)))
    return rows


def clusters_on_synthetic_casino(args: argparse.Namespace) -> None:

    from bench_weighting import worker_casino

    from recsys.baselines import ItemKNN, Popularity
    from recsys.ncf.training import train
    from recsys.ncf.vectors import VECTOR_KINDS, item_vectors, most_similar, usable_kind
    from recsys.settings import Settings
    from recsys.worker import ncf_config

    settings = Settings()
    started = time.perf_counter()
    casino, data, holdout = worker_casino(args.players, args.slots, args.days, args.seed, settings)
    n_players, n_slots = len(data.player_keys), len(data.slot_keys)
    train_u, train_i = data.player_idx[holdout.train], data.slot_idx[holdout.train]
    weights = data.weight[holdout.train] if settings.training.weighted else None
    slot_cluster = casino.slot_clusters.set_index("slot_key")["cluster"]
    cluster = slot_cluster.loc[data.slot_keys].to_numpy()
    print(
        f"{args.players:,} players x {args.slots:,} slots x {args.days} days (seed {args.seed}, "
        f"{casino.config.clusters} clusters): {len(casino.sessions):,} sessions -> {data.n_pairs:,} pairs of "
        f"{n_players:,} players x {n_slots:,} slots; {int(holdout.train.sum()):,} train pairs after the holdout "
        f"({time.perf_counter() - started:.0f} s)"
    )

    players_per_slot = np.bincount(train_i, minlength=n_slots)
    groups = {
        "all": np.ones(n_slots, dtype=bool),
        f">={args.well_played} players": players_per_slot >= args.well_played,
        f"<{args.well_played} players": players_per_slot < args.well_played,
    }
    slots = np.arange(n_slots)
    rows: list[tuple[str, list[float]]] = []

    def add(name: str, neighbours: np.ndarray) -> None:
        same = (cluster[neighbours] == cluster[:, None]).mean(axis=1)
        rows.append((name, [float(same[mask].mean()) if mask.any() else float("nan") for mask in groups.values()]))

    for model_kind in () if args.skip_models else ("neumf", "gmf", "mlp"):
        config = ncf_config(settings.replace(train_model=model_kind).training, data.n_pairs)
        config = config.replace(threads=args.threads)
        t = time.perf_counter()
        model = train(config, train_u, train_i, n_players, n_slots, weights=weights)
        label = "worker's NeuMF" if model_kind == settings.training.model else f"{model_kind.upper()}-only"
        print(
            f"{label}: {config.epochs} epochs of {config.optimizer} at lr {config.lr}"
            + (f", {config.factors} factors" if model_kind != "mlp" else "")
            + (f", MLP {config.mlp_layers}" if model_kind != "gmf" else "")
            + f", trained in {time.perf_counter() - t:.0f} s "
            f"(last epoch's loss {model.history[-1].loss:.3f})"
        )
        for kind in VECTOR_KINDS:
            if usable_kind(model, kind) == kind:
                add(f"{model_kind} {kind}", most_similar(item_vectors(model, kind), slots, K))

    served_kind = settings.training.similarity_vector
    for name, vectors in spectral_variants(train_u, train_i, n_players, n_slots, served_kind).items():
        add(name, most_similar(vectors, slots, K))
    knn = ItemKNN(train_u, train_i, n_players, n_slots, neighbors=None, shrink=0.0)
    add("item-kNN cosine", ranking_from_similarity(knn.similarity, slots)[:, :K])
    knn = ItemKNN(train_u, train_i, n_players, n_slots)  # bench_casino_quality's: shrink 10, 50 neighbours
    add("item-kNN s10 n50", ranking_from_similarity(knn.similarity, slots)[:, :K])
    counts = Popularity(train_u, train_i, n_slots).counts
    add("popularity", ranking_from_similarity(np.tile(counts, (n_slots, 1)), slots)[:, :K])
    sizes = np.bincount(cluster)
    expected = (sizes[cluster] - 1) / (n_slots - 1)
    rows.append(
        ("random (exact)", [float(expected[mask].mean()) if mask.any() else float("nan") for mask in groups.values()])
    )

    print(f"\nshare of a slot's {K} nearest slots in its cluster, by how many players played the slot in training")
    header = "".join(f"{f'{name} ({int(mask.sum())})':>22}" for name, mask in groups.items())
    print(f"{'vectors':<20}{header}")
    for name, shares in rows:
        print(f"{name:<20}" + "".join(f"{share:>22.3f}" for share in shares))
    print(f"\nsynthetic section: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
