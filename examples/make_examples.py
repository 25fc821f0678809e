"""Write the example files of the README's "your own data" path: a small synthetic casino as CSV.

    python examples/make_examples.py [FOLDER]

Deterministic (fixed seed and dates): running it again rewrites the same bytes. The files have the
columns of docs/import-format.md, as a casino's export would; they come from the synthetic generator
(docs/synthetic-data.md), so the players' tastes cluster by theme, volatility and provider.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pandas as pd

from recsys.synth import SynthConfig, generate_casino

CONFIG = SynthConfig(
    players=1000, slots=100, days=30, seed=7, start=date(2026, 10, 1), clusters=6, mean_daily_sessions=1.0
)
ISO = "%Y-%m-%dT%H:%M:%SZ"


def example_frames(config: SynthConfig = CONFIG) -> dict[str, pd.DataFrame]:
    """``players``, ``slots`` and ``sessions`` frames in the import format (text cells, as in the CSVs)."""
    casino = generate_casino(config)
    players = casino.players.assign(
        registered_at=_timestamps(casino.players["registered_at"]),
        self_excluded_until=_timestamps(casino.players["self_excluded_until"]),
        cooling_off_until=_timestamps(casino.players["cooling_off_until"]),
        marketing_consent=casino.players["marketing_consent"].map({True: "true", False: "false"}),
        risk_flag=casino.players["risk_flag"].map({True: "true", False: "false"}),
    ).drop(columns="id")
    slots = casino.slots.assign(
        active=casino.slots["active"].map({True: "true", False: "false"}),
        markets=casino.slots["markets"].map(lambda m: "" if m is None else "|".join(m)),
    ).drop(columns="id")
    player_ids = casino.players.set_index("id")["player_id"]
    slot_ids = casino.slots.set_index("id")["slot_id"]
    s = casino.sessions
    sessions = pd.DataFrame({
        "session_id": s["session_id"],
        "player_id": player_ids.loc[s["player_key"]].to_numpy(),
        "slot_id": slot_ids.loc[s["slot_key"]].to_numpy(),
        "started_at": _timestamps(s["started_at"]),
        "ended_at": _timestamps(s["ended_at"]),
        "spins": s["spins"],
        "total_bet": s["total_bet"].map("{:.2f}".format),
        "total_win": s["total_win"].map("{:.2f}".format),
        "bonus": s["bonus"].map({True: "true", False: "false"}),
    })
    return {"players": players, "slots": slots, "sessions": sessions}


def write_examples(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, frame in example_frames().items():
        # The sessions are gzipped (the importer reads .csv.gz); mtime 0 keeps the bytes reproducible.
        paths[kind] = folder / (f"{kind}.csv.gz" if kind == "sessions" else f"{kind}.csv")
        compression = {"method": "gzip", "mtime": 0} if kind == "sessions" else None
        frame.to_csv(paths[kind], index=False, lineterminator="\n", compression=compression)
    return paths


def _timestamps(column: pd.Series) -> pd.Series:
    return column.dt.strftime(ISO).fillna("")


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    for kind, path in write_examples(folder).items():
        print(f"{path}: {len(pd.read_csv(path, dtype=str)):,} {kind}")
