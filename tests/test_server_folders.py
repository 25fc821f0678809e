"""A killed or interrupted test run leaves no embedded PostgreSQL and no folder behind
(tests/server_folders.py, tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests import server_folders
from tests.server_folders import OWNER, PREFIX, is_stale, make_folder, postmaster, remove_stale

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.db  # the last two start servers of their own: not for `make test-fast`


@pytest.fixture
def root():
    """A short folder outside pytest's own (a server's socket path must stay under 108 bytes, and
    the server's system user must reach it)."""
    folder = Path(tempfile.mkdtemp(prefix="rt-"))
    folder.chmod(0o755)
    yield folder
    for pgdata in folder.glob(f"{PREFIX}*/pg"):
        server_folders.stop_server(pgdata)
    shutil.rmtree(folder, ignore_errors=True)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_only_the_folders_of_processes_that_are_gone_are_stale(root):
    mine = make_folder("gw0", root)
    dead = make_folder("gw1", root)
    (dead / OWNER).write_text(f"{_dead_pid()} 1.0\n")
    reused = make_folder("gw2", root)  # this process's pid, another process's start time
    (reused / OWNER).write_text(f"{os.getpid()} {psutil.Process().create_time() - 60!r}\n")
    legacy_new = root / f"{PREFIX}gw3-new"
    legacy_old = root / f"{PREFIX}gw4-old"
    legacy_held = root / f"{PREFIX}gw5-held"
    for folder in (legacy_new, legacy_old, legacy_held):
        (folder / "pg").mkdir(parents=True)
    (legacy_held / "pg" / ".handle_pids.json").write_text(f"[{os.getpid()}]")
    (legacy_old / "pg" / ".handle_pids.json").write_text(f"[{_dead_pid()}]")
    hours_ago = time.time() - 2 * server_folders.LEGACY_AGE_S
    for folder in (legacy_old, legacy_held):
        os.utime(folder, (hours_ago, hours_ago))

    assert [is_stale(f) for f in (mine, dead, reused, legacy_new, legacy_old, legacy_held)] == [
        False, True, True, False, True, False
    ]
    assert remove_stale(root) == sorted([dead, reused, legacy_old])
    assert sorted(root.iterdir()) == sorted([mine, legacy_new, legacy_held])


CHILD = """
import sys, time
from pathlib import Path
from recsys.db.embedded import embedded_url
from tests.server_folders import make_folder

folder = make_folder("gw0", Path(sys.argv[1]))
embedded_url(folder)
print(folder, flush=True)
time.sleep(600)
"""


def test_a_killed_runs_server_is_stopped_and_its_folder_removed(root):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        folder = Path(child.stdout.readline().strip())
    finally:
        child.kill()  # no exit hook runs: the server stays, as after SIGKILL or an OOM kill
        child.wait()
    server = postmaster(folder / "pg")
    assert server is not None and server.is_running()

    assert remove_stale(root) == [folder]

    assert not server.is_running() and not folder.exists()


SLEEPER = """
import time

def test_sleeps(database_url):
    print("server ready", flush=True)
    time.sleep(600)
"""


def test_sigterm_to_make_test_leaves_no_server_and_no_folder(root, tmp_path):
    (tmp_path / "test_sleeper.py").write_text(SLEEPER)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-n", "1",
         "--dist", "loadfile", "-q", "-s", str(tmp_path / "test_sleeper.py")],
        cwd=REPO, env={**outside_xdist(), "PYTHONPATH": str(REPO), "TMPDIR": str(root)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (servers := [postmaster(p) for p in root.glob(f"{PREFIX}*/pg")]) or None in servers:
            assert time.monotonic() < deadline and run.poll() is None, run.stdout.read() if run.poll() else ""
            time.sleep(0.5)
        time.sleep(1.0)  # the worker inside the test now
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode != 0
    # A stopped server may stay a zombie for a moment where nothing reaps orphans at once (a CI
    # container's first process): it counts as gone, as it serves nothing.
    assert wait_until_gone(servers, 30) == []
    assert list(root.glob(f"{PREFIX}*")) == []  # (pytest's and the package's own folders aside)


def outside_xdist() -> dict[str, str]:
    """This environment without xdist's worker variables: a run started from inside a worker (as under
    ``make test``) would otherwise take itself for a worker and leave the cleanup to a controller."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}


def wait_until_gone(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """The processes still alive (running, not a zombie) after at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [p for p in processes if _alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
