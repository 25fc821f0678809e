"""The temporary folders of the test runs' embedded PostgreSQL servers, and the removal of a dead run's.

Each pytest process that starts a server (an xdist worker, or the single process) makes its folder
``<tempdir>/recsys-test-<worker>-XXXX`` and writes its own pid and start time in it (:data:`OWNER`).
A run that ends normally stops its servers and removes its folders at exit (``atexit``). A run that
is killed (SIGKILL, or workers torn down by xdist after Ctrl-C) leaves them: the servers keep
running, as the package starts them detached. :func:`remove_stale` finds those by their owner's pid
and removes them, stopping each server first and removing nothing whose server does not stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import tempfile
import time
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

PREFIX = "recsys-test-"
OWNER = "owner"
"""The file in a folder naming the process that made it: ``<pid> <start time>`` (psutil's
``create_time``, which tells a reused pid from the owner)."""

LEGACY_AGE_S = 3600.0
"""A folder without an owner file (made by an older conftest) counts as stale only this long after
its last change, and only while no live process is on its servers' handle lists."""


def make_folder(worker: str, root: Path | None = None) -> Path:
    """A new folder for this process's servers, readable by the server's own system user, owned by this process."""
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{worker}-", dir=root))
    folder.chmod(0o755)
    me = psutil.Process()
    (folder / OWNER).write_text(f"{me.pid} {me.create_time()!r}\n")
    return folder


def owner_alive(folder: Path) -> bool | None:
    """Whether the process that made ``folder`` still runs; None when the folder names no owner."""
    try:
        pid, started = (folder / OWNER).read_text().split()
    except (OSError, ValueError):
        return None
    try:
        process = psutil.Process(int(pid))
        return process.create_time() == float(started) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def data_dirs(folder: Path) -> list[Path]:
    """The server data folders in ``folder``: ``pg`` (the worker's server) and ``*/pg`` (a test's own,
    such as ``demo/pg``)."""
    return sorted(p for pattern in ("pg", "*/pg") for p in folder.glob(pattern) if p.is_dir())


def postmaster(pgdata: Path) -> psutil.Process | None:
    """The running postmaster of ``pgdata``: the pid of its ``postmaster.pid``, if that process is a
    postgres serving this folder (not a dead server's pid since reused)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        process = psutil.Process(pid)
        return process if str(pgdata) in process.cmdline() else None
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def live_holders(pgdata: Path) -> list[int]:
    """The live pids on the package's list of processes holding the server (``.handle_pids.json``)."""
    try:
        text = (pgdata / ".handle_pids.json").read_text()
    except OSError:
        return []
    try:
        pids = json.loads(text)
    except ValueError:
        return []
    return [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)
            and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def is_stale(folder: Path, now: float | None = None) -> bool:
    """Whether ``folder`` belongs to a run that is gone: its owner is dead, or (no owner file) it is
    older than :data:`LEGACY_AGE_S` and no live process holds its servers."""
    alive = owner_alive(folder)
    if alive is not None:
        return not alive
    age = (now or time.time()) - folder.stat().st_mtime
    return age > LEGACY_AGE_S and not any(live_holders(pgdata) for pgdata in data_dirs(folder))


def stop_server(pgdata: Path, timeout_s: float = 30.0) -> bool:
    """Stop the server of ``pgdata`` if it runs (SIGINT: PostgreSQL's fast shutdown, which ends the
    sessions); whether none runs there now."""
    process = postmaster(pgdata)
    if process is None:
        return True
    try:
        process.send_signal(signal.SIGINT)
        process.wait(timeout_s)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return postmaster(pgdata) is None


def end_workers(timeout_s: float = 30.0) -> list[int]:
    """SIGTERM this process's children that still run (xdist's workers, after an interrupted run: the
    controller may finish before them, and a worker inside a long test would keep its server), wait
    for them to end as Ctrl-C ends them (their exit hooks stop their servers), and SIGKILL what does
    not; returns their pids. At the end of a normal run there are none."""
    children = [c for c in psutil.Process().children() if "postgres" not in c.name()]
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(children, timeout=timeout_s)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=5)
    return [c.pid for c in children]


def remove_stale(root: Path | None = None) -> list[Path]:
    """Stop the servers of every stale ``recsys-test-*`` folder in ``root`` (the temporary directory)
    and remove the folder; returns the folders removed. A folder whose server does not stop stays."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for folder in sorted(root.glob(f"{PREFIX}*")):
        try:
            if not folder.is_dir() or not is_stale(folder):
                continue
        except OSError:  # removed meanwhile by another run
            continue
        stopped = [stop_server(pgdata) for pgdata in data_dirs(folder)]
        if not all(stopped):
            log.warning("%s: a server there did not stop; the folder stays", folder)
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    if removed:
        log.warning("removed the servers and folders of dead test runs: %s", ", ".join(map(str, removed)))
    return removed

