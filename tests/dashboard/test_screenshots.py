"""scripts/dashboard_screenshots.py saves every page and leaves no PostgreSQL behind (issue 23: its
temporary folder went before the server's exit hook ran, which then could not stop it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.dashboard.world import CHROMIUM, PAGES

pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium")]

ROOT = Path(__file__).resolve().parents[2]


def _servers_under(prefix: str) -> list[str]:
    """Command lines of the running postgres processes whose data folder starts with ``prefix``."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if process.info["name"] == "postgres" and prefix in cmdline:
            found.append(cmdline)
    return found


def test_a_run_saves_every_page_and_leaves_no_postgres(tmp_path, own_data_dir):
    # The script's temporary folder lands in own_data_dir (outside pytest's 0700 folder, which the
    # server's system user may not reach), so only this run's servers are looked for.
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "dashboard_screenshots.py"), str(tmp_path / "out")],
                          env={**os.environ, "TMPDIR": str(own_data_dir)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in [*PAGES, "login", "versions-read-only"]:
        assert (tmp_path / "out" / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name
    assert _servers_under(f"{own_data_dir}/recsys-dashboard-") == []
    assert "Failed to stop server" not in done.stderr
