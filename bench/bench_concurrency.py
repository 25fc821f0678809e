"""Concurrent writers (issue 10, item 5): PUT batches of the same new ids in different orders, and
activations racing each other. Prints how many succeeded and what the others raised.

    python bench/bench_concurrency.py [--writers 24] [--ids 300] [--activations 12] [--code PATH]

Runs against an embedded PostgreSQL in a temporary folder, through the library calls the API's
handlers make (``recsys.db.records.put_records``, ``recsys.db.versions.activate``). ``--code`` runs
another checkout (say an export of an older commit) to compare before and after a change.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import random, sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import sqlalchemy as sa
from recsys.db import migrations, records, versions
from recsys.db.embedded import embedded_url
from recsys.db.engine import sqlalchemy_url
from tests.api.conftest import write_version
from tests.factories import add_player, add_slot

data, writers, n_ids, n_activations = Path(sys.argv[1]), *map(int, sys.argv[2:5])
url = embedded_url(data)
migrations.upgrade(url)
engine = sa.create_engine(sqlalchemy_url(url), pool_size=max(writers, n_activations))
ids = [f"player-{i:04d}" for i in range(n_ids)]

def put(seed):
    order = random.Random(seed).sample(ids, len(ids))
    try:
        records.put_records(engine, "players", [{"player_id": p, "market": "GB"} for p in order], "bench")
        return "ok"
    except Exception as exc:
        return type(exc).__name__ + ": " + str(getattr(exc, "orig", exc)).splitlines()[0][:60]

with ThreadPoolExecutor(writers) as pool:
    print("PUT batches:", dict(Counter(pool.map(put, range(writers)))))

with engine.begin() as conn:
    players = {f"p{i}": add_player(conn, f"p{i}") for i in range(3)}
    slots = {f"s{i}": add_slot(conn, f"s{i}") for i in range(1, 21)}
made = [write_version(engine, players, slots, seed=i, activate=False) for i in range(n_activations)]

def activate(version):
    try:
        versions.activate(engine, version)
        return "ok"
    except Exception as exc:
        return type(exc).__name__ + ": " + str(getattr(exc, "orig", exc)).splitlines()[0][:60]

with ThreadPoolExecutor(n_activations) as pool:
    print("activations:", dict(Counter(pool.map(activate, made))))
with engine.connect() as conn:
    print("active versions at the end:",
          conn.execute(sa.text("SELECT count(*) FROM model_versions WHERE status = 'active'")).scalar_one())
engine.dispose()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=24)
    parser.add_argument("--ids", type=int, default=300)
    parser.add_argument("--activations", type=int, default=12)
    parser.add_argument("--code", type=Path, default=ROOT)
    args = parser.parse_args()
    code = args.code.resolve()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "PYTHONPATH": str(code)}
        print(f"code: {code}", flush=True)
        subprocess.run([sys.executable, "-c", RUN, data, str(args.writers), str(args.ids), str(args.activations)],
                       cwd=code, env=env, check=True)


if __name__ == "__main__":
    main()
