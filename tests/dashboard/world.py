"""A seeded casino for the dashboard, a real HTTP server over it, and Debian's chromium.

Used by tests/dashboard (pytest) and scripts/dashboard_screenshots.py. Playwright never downloads a
browser here: it drives ``/usr/bin/chromium`` (``.ci/run`` installs it with apt when missing).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn

from api.app import create_app
from recsys.db import apikeys, pipeline_runs, versions
from recsys.db import experiments as store
from recsys.db.schema import metadata
from recsys.experiments import Arm
from tests.api.conftest import SERVING, write_version
from tests.experiment_world import ClickModel, serve_experiment
from tests.factories import add_player, add_slot

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = {"overview": "/dashboard", "versions": "/dashboard/versions", "runs": "/dashboard/runs",
         "experiments": "/dashboard/experiments", "players": "/dashboard/players?player_id=p1"}
QUALITY = {"hr@10": 0.842, "ndcg@10": 0.597, "popularity_hr@10": 0.612, "popularity_ndcg@10": 0.401,
           "itemknn_hr@10": 0.790, "itemknn_ndcg@10": 0.552, "ease_hr@10": 0.816, "ease_ndcg@10": 0.586}


@dataclass(frozen=True)
class Casino:
    players: dict[str, int]
    slots: dict[str, int]
    active: int  # the active version
    candidate: int  # ready, passed the gate
    refused: int  # ready, refused by the gate
    keys: dict[str, str]  # scope -> API key


def seed(engine: sa.Engine, report_dir: Path) -> Casino:
    """Empty the database, then: 300 players (p7 self-excluded), 20 slots, three versions, a
    stopped experiment whose candidate is truly better, a pipeline run with its report, keys."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(t.name for t in metadata.sorted_tables)} RESTART IDENTITY CASCADE"))
        players = {f"p{i}": add_player(conn, f"p{i}", market="GB") for i in range(300)}
        conn.execute(sa.text("UPDATE players SET self_excluded_until = now() + interval '30 days' "
                             "WHERE player_id = 'p7'"))
        slots = {f"s{i}": add_slot(conn, f"s{i}", name=f"Slot {i}", provider=f"studio{(i - 1) // 4}",
                                   theme=("fruit", "egypt", "space")[i % 3]) for i in range(1, 21)}
    active = write_version(engine, players, slots, seed=1)
    candidate = write_version(engine, players, slots, seed=2, activate=False)
    refused = write_version(engine, players, slots, seed=3, activate=False)
    versions.set_metrics(engine, active, {**QUALITY, "gate": {"passed": True, "reason": "HR@10 0.842 >= 0.600"}})
    versions.set_metrics(engine, candidate, {**QUALITY, "hr@10": 0.851, "gate": {"passed": True, "reason": "passed"}})
    versions.set_metrics(engine, refused, {**QUALITY, "hr@10": 0.501,
                                           "gate": {"passed": False, "reason": "HR@10 0.501 below popularity 0.612"}})
    # Sized for a lift as large as the one seeded (60 %), so the report gives its verdict.
    pilot = store.start(engine, "pilot", (Arm("control", active, 50), Arm("candidate", candidate, 50)),
                        min_effect=0.6)
    serve_experiment(engine, pilot, players, list(slots.values()),
                     {"control": ClickModel(0.10, 4.0), "candidate": ClickModel(0.16, 6.0)}, seed=11)
    store.stop(engine, "pilot")
    report_dir.mkdir(parents=True, exist_ok=True)
    report = report_dir / "report.html"
    report.write_text("<!doctype html><title>run 1</title><h1>Pipeline run 1</h1><p>version "
                      f"{active}: HR@10 0.842</p>")
    run = pipeline_runs.start_run(engine, inputs={}, host="test", pid=1)
    pipeline_runs.finish_run(engine, run.id, "succeeded", version_id=active, report_path=str(report))
    keys = {scope: apikeys.create_key(engine, [scope], f"dashboard {scope}")[0] for scope in ("read", "admin")}
    return Casino(players, slots, active, candidate, refused, keys)


class Server:
    """The real app under uvicorn on a free local port, in a thread."""

    def __init__(self, settings) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings.replace(**SERVING)), host="127.0.0.1",
                                port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the API at {self.url} did not become ready in 30 s")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_lists(url: str, key: str, player_ids: list[str]) -> list[dict]:
    """Ask the API for one list per player (logged like any production list)."""
    headers = {"Authorization": f"Bearer {key}"}
    return [httpx.get(f"{url}/v1/players/{p}/recommendations?k=5", headers=headers, timeout=10).json()
            for p in player_ids]


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def sign_in(browser, url: str, key: str):
    """A new browser context signed in with ``key``; returns its page (on the overview)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{url}/dashboard")
    assert page.url.endswith("/dashboard/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/dashboard")
    return page
