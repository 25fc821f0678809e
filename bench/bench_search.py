"""Similar-slot search: the in-memory FAISS index against the pgvector query it falls back to.

    python bench/bench_search.py [--slots 5000] [--queries 500] [--k 10]

Both answer the same queries (one slot at a time, as the API asks) over the same version's
vectors in ``recsys_bench`` (seeded like bench/bench_api.py): FAISS through
``recsys.serving.model.similar_slots`` (catalogue filter included), pgvector through
``recsys.db.catalogue.similar_by_pgvector`` (``ORDER BY similarity <=> q``, the same filter in SQL).
Prints per-query p50 / p99, the ratio, and how often the two top-k lists agree.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_api import bench_database, seed_casino  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--factory", default="IDMap,Flat")
    args = parser.parse_args()

    import asyncio

    import psycopg

    from recsys.db import catalogue as catalogue_db
    from recsys.db import versions
    from recsys.db.engine import create_engine
    from recsys.index import set_threads
    from recsys.serving.catalogue import Catalogue
    from recsys.serving.model import build_serving_model, similar_slots
    from recsys.settings import Settings

    settings = Settings.from_env()
    url = bench_database(settings)
    engine = create_engine(settings, url)
    world = seed_casino(engine, slots=args.slots, players=200, sessions_per_player=1)
    set_threads(1)
    catalogue = Catalogue.from_rows(catalogue_db.load_slots(engine))
    vectors = versions.load_slot_vectors(engine, world["version"])
    started = time.perf_counter()
    model = build_serving_model(world["version"], vectors.slot_keys, vectors.similarity, vectors.towers,
                                vectors.provisional, None, catalogue, args.factory)
    build_ms = 1000 * (time.perf_counter() - started)

    rng = np.random.default_rng(0)
    queries = rng.choice(vectors.slot_keys, args.queries, replace=False)
    timings: dict[str, list[float]] = {"faiss": [], "pgvector": []}
    answers: dict[str, list[np.ndarray]] = {"faiss": [], "pgvector": []}
    async def search() -> None:  # pgvector as the API asks it: awaited on an asyncio connection
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0) as conn:
            for _ in range(2):  # the first pass warms caches; the second is measured
                for name in timings:
                    timings[name].clear()
                    answers[name].clear()
                for key in queries.tolist():
                    t = time.perf_counter()
                    found, _ = similar_slots(model, catalogue, key, args.k, None)
                    timings["faiss"].append(time.perf_counter() - t)
                    answers["faiss"].append(found)
                    t = time.perf_counter()
                    found, _ = await catalogue_db.similar_by_pgvector(conn, world["version"], key, args.k, None,
                                                                      every_market=True)
                    timings["pgvector"].append(time.perf_counter() - t)
                    answers["pgvector"].append(found)

    asyncio.run(search())
    engine.dispose()

    same = np.mean([set(a.tolist()) == set(b.tolist()) for a, b in zip(answers["faiss"], answers["pgvector"],
                                                                        strict=True)])
    ms = {name: np.array(t) * 1000 for name, t in timings.items()}
    print(f"{args.slots:,} slots x {vectors.similarity.shape[1]} dimensions, {args.queries} queries, k={args.k}; "
          f"index {args.factory!r} built in {build_ms:.1f} ms")
    print(f"{'search':<10} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in ms.items():
        print(f"{name:<10} {np.percentile(values, 50):>8.3f} {np.percentile(values, 99):>8.3f} {values.mean():>8.3f}")
    ratio = np.percentile(ms["pgvector"], 50) / np.percentile(ms["faiss"], 50)
    mean_ratio = ms["pgvector"].mean() / ms["faiss"].mean()
    print(f"FAISS is {ratio:.0f}x faster at p50 ({mean_ratio:.0f}x on the mean); "
          f"same top-{args.k} for {same:.1%} of queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
