"""The embedded server stops when the last live process using it exits, even after a crash."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from pathlib import Path
from recsys.db.embedded import embedded_url
embedded_url(Path(sys.argv[1]))
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


def postmaster(pgdata: Path) -> psutil.Process | None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    try:
        return psutil.Process(int(pid_file.read_text().split()[0]))
    except psutil.NoSuchProcess:
        return None


def hold(data: Path, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(data), str(seconds)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_crashed_holder_does_not_keep_the_server_running(tmp_path):
    pgdata = tmp_path / "pg"
    crashed = hold(tmp_path, 600)
    server = postmaster(pgdata)
    assert server is not None and server.is_running()
    crashed.send_signal(signal.SIGKILL)  # its pid stays on the package's list
    crashed.wait()
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == [crashed.pid]

    last = hold(tmp_path, 0)  # joins (pruning the dead pid), then exits normally: the last live holder
    assert last.wait(timeout=60) == 0
    deadline = time.monotonic() + 30
    while server.is_running() and server.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == []
