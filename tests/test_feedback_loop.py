"""The loop closes: pipeline -> simulated live play and feedback through the running API -> pipeline,
and the second version has learned from the new play (a slot made popular moves up)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import date, timedelta

import httpx
import numpy as np
import sqlalchemy as sa

from recsys.db import versions
from recsys.db.apikeys import create_key
from recsys.db.simulation import simulation_population
from recsys.db.synth_store import write_casino
from recsys.pipeline import run_pipeline
from recsys.simulate import SimulationConfig, simulate
from recsys.synth import SynthConfig
from tests.factories import fast_pipeline


def _share_with(engine, version_id: int, slot_key: int) -> float:
    """Share of the players who never played ``slot_key`` whose precomputed top-N holds it (players who
    played it never get it recommended)."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT avg((:s = ANY(o.slot_keys))::int)::float8 FROM offline_recommendations o "
                "WHERE o.version_id = :v AND NOT EXISTS "
                "(SELECT 1 FROM play_sessions p WHERE p.player_key = o.player_key AND p.slot_key = :s)"
            ),
            {"s": slot_key, "v": version_id},
        ).scalar_one()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_slot_made_popular_by_live_play_moves_up(db, settings, database_url, tmp_path):
    days = 20
    write_casino(
        db,
        SynthConfig(
            players=800,
            slots=120,
            days=days,
            seed=3,
            clusters=4,
            mean_daily_sessions=1.0,
            start=date.today() - timedelta(days=days),
        ),
    )
    # as at casino scale (20,000 of 10^6 players), the holdout is a small sample: the new play trains
    fast = fast_pipeline(settings, tmp_path, holdout_days=2, eval_max_players=40)
    first = run_pipeline(db, fast)
    assert first.status == "succeeded"

    # The trending slot: an active slot few players have in their top-10 today.
    with db.connect() as conn:
        slot_id, slot_key = conn.execute(
            sa.text(
                "SELECT s.slot_id, s.id FROM slots s WHERE s.active AND s.markets IS NULL "
                "AND s.id = ANY(SELECT slot_key FROM slot_embeddings WHERE version_id = :v) "
                "ORDER BY (SELECT count(*) FROM play_sessions p WHERE p.slot_key = s.id), s.id LIMIT 1"
            ),
            {"v": first.version_id},
        ).one()
    before = _share_with(db, first.version_id, slot_key)

    key, _ = create_key(db, ["read", "ingest"], name="loop-test")
    port = _free_port()
    env = {**os.environ, "RECSYS_DATABASE_URL": database_url, "RECSYS_DATA_DIR": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "recsys", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        players, slots, weights = simulation_population(db, 800, seed=0)
        # ten minutes of play per wall second, short sessions: a few hundred sessions in 12 s (800 events/s:
        # what rate=400 sent before the simulator counted spins and ends in its rate)
        config = SimulationConfig(
            url=f"http://127.0.0.1:{port}",
            api_key=key,
            rate=800.0,
            duration=12.0,
            speed=600.0,
            median_session_minutes=5.0,
            recommend_share=0.2,
            trending_slot=slot_id,
            trending_share=0.6,
            seed=1,
        )
        summary = asyncio.run(simulate(config, players, slots, weights))
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert summary.errors == {}, summary.errors
    assert summary.sessions > 300 and summary.feedback_sent > 0

    second = run_pipeline(db, fast)
    assert second.status == "succeeded" and second.version_id != first.version_id
    assert versions.active_version(db).id == second.version_id
    after = _share_with(db, second.version_id, slot_key)
    assert after > before + 0.1, (before, after)
    assert np.isfinite(after)
