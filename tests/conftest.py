"""Tests run against a real PostgreSQL migrated by Alembic: the embedded one by default.

``RECSYS_TEST_DATABASE_URL`` points them at another server instead (its test databases are wiped).

Under pytest-xdist (``make test``) each worker starts its own embedded server in its own temporary
folder: roles, role settings and ``ALTER SYSTEM`` belong to the whole cluster, and the migration and
analyst tests change them, so workers sharing one server would see each other's changes. It costs
no wall time against one shared server: the workers start theirs at the same moment, and migrating
a worker's database took as long as copying a migrated template would (1.8 s each, measured with
``CREATE DATABASE ... TEMPLATE`` at load average 18; the server's start took 13.8 s there). A
worker's databases carry its name (``recsys_test_gw0``), so that workers pointed at one shared
server (``RECSYS_TEST_DATABASE_URL``) do not collide either.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from recsys.db import migrations
from recsys.db.embedded import embedded_url
from recsys.db.engine import sqlalchemy_url, with_database
from recsys.db.schema import metadata
from recsys.settings import Settings
from tests import server_folders

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
"""``gw0``, ``gw1`` ... under xdist; empty in a single process."""


def worker_name(name: str) -> str:
    """``name`` made this worker's own: ``recsys_test`` -> ``recsys_test_gw0`` (unchanged without xdist)."""
    return f"{name}_{WORKER}" if WORKER else name


TEST_DATABASE = worker_name("recsys_test")


def _fresh_database(admin_url: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEST_DATABASE}")
    return with_database(admin_url, TEST_DATABASE)


def server_folder() -> Path:
    """A folder of its own for this process's embedded server, removed at exit after the server stops.

    Not under pytest's ``/tmp/pytest-of-<user>``: every pytest that starts (another worker, another
    checkout's run) sets that folder back to mode 0700, and the server, which runs as its own system
    user when the tests run as root, can then no longer reach its data (pg_ctl: "Permission denied").
    The folder names this process as its owner, so that the next run removes it (its server stopped
    first) if this one is killed before its exit hooks run (tests/server_folders.py).
    """
    folder = server_folders.make_folder(WORKER or "main")
    # atexit runs last-registered first: the server's own stop hook (registered by embedded_url,
    # after this) runs before the folder goes.
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@pytest.fixture
def own_data_dir() -> Path:
    """An empty ``RECSYS_DATA_DIR`` for a test that starts embedded servers the way a user does; they
    stop when the worker exits, and the folder goes after them."""
    return server_folder()


@pytest.fixture(scope="session")
def server_url() -> str:
    """libpq URL of the server's maintenance database (``postgres``)."""
    url = os.environ.get("RECSYS_TEST_DATABASE_URL")
    if url:
        return url
    data_dir = os.environ.get("RECSYS_TEST_DATA_DIR")
    data_dir = Path(data_dir) / (WORKER or "main") if data_dir else server_folder()
    return with_database(embedded_url(data_dir), "postgres")


@pytest.fixture(scope="session")
def database_url(server_url) -> str:
    """A fresh database at the head revision; shared by the session, emptied before each test."""
    url = _fresh_database(server_url)
    migrations.upgrade(url)
    return url


@pytest.fixture(scope="session")
def settings(database_url, tmp_path_factory) -> Settings:
    """The default settings on this worker's database, training on one thread.

    ``make test`` runs one worker per core, so the default two torch threads per worker ask for twice
    the cores there are, and torch's threads wait for each other: one GMF run of tests/test_worker.py
    trained in 39-71 s with two threads and 5-6 s with one (same figures), two cores at load 3.5.
    """
    return Settings.from_env({}, database_url=database_url, data_dir=tmp_path_factory.mktemp("data"),
                             train_threads=1)


@pytest.fixture(scope="session")
def engine(database_url):
    engine = sa.create_engine(sqlalchemy_url(database_url), pool_size=5)
    yield engine
    engine.dispose()


def empty(engine) -> None:
    """Truncate every table (identities restarted)."""
    names = ", ".join(table.name for table in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def db(engine):
    """An empty database (every table truncated) and the engine to reach it."""
    empty(engine)
    return engine


@pytest.fixture(scope="module")
def module_db(engine):
    """The database emptied once for a module's shared world, which its tests only read. The next test
    that asks for ``db`` empties it again: a module puts the tests that read its world first."""
    empty(engine)
    return engine


# --- markers: what `make test-fast` leaves out, and the order files start in ---------------------

SERVER_FIXTURES = {"server_url", "database_url", "engine", "db", "module_db", "settings", "own_data_dir"}

SLOW_FILES = {
    "tests/ncf/test_distributed.py": "torchrun: two processes importing torch, three launches",
    "tests/ncf/test_cli_evaluate.py": "each case runs `python -m recsys evaluate` in a new process",
}
"""Files without a server that still take tens of seconds: marked ``slow``."""

LONGEST_FIRST = (
    "tests/test_worker.py",
    "tests/test_pipeline.py",
    "tests/ncf/test_distributed.py",
    "tests/api/test_schemathesis.py",
    "tests/ncf/test_cli_evaluate.py",
    "tests/test_first_hour.py",
    "tests/test_deployment.py",
    "tests/api/test_operations.py",
    "tests/test_feedback_loop.py",
    "tests/test_server_folders.py",
    "tests/api/test_validation.py",
    "tests/api/test_events.py",
    "tests/dashboard/test_screenshots.py",
)
"""The files that took 20 s or more, longest first (173 s down to 20 s in the ``--progress-files``
lines of one ``make test`` on 2 cores while other work ran, 2026-12-07), started first: under ``--dist
loadfile`` a long file handed out last would leave the other workers idle at the end."""


def pytest_collection_modifyitems(config, items):
    """Mark ``db`` each test that reaches PostgreSQL (it asks, directly or not, for a server fixture,
    or lives in tests/db, where some start servers of their own), ``browser`` each test under
    tests/dashboard and ``slow`` the files of :data:`SLOW_FILES`; ``make test-fast`` deselects all
    three. Then move :data:`LONGEST_FIRST` to the front (a stable sort: the order within a file, and
    of the other files, stays)."""
    root = Path(str(config.rootpath))
    for item in items:
        path = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else str(item.path)
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or path.startswith("tests/db/"):
            item.add_marker(pytest.mark.db)
        if path.startswith("tests/dashboard/"):
            item.add_marker(pytest.mark.browser)
        if path in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}

    def position(item) -> int:
        path = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        return rank.get(path, len(rank))

    items.sort(key=position)


# --- progress: one line per test file ------------------------------------------------------------


def pytest_addoption(parser):
    parser.addoption("--progress-files", action="store_true",
                     help="print one line per test file as it finishes (its worker, counts and seconds) "
                          "instead of a dot per test; failures still print their letter")


class FileProgress:
    """Prints ``started tests/api/test_auth.py`` when a file's first test starts and
    ``[gw1] tests/api/test_auth.py: 14 passed in 6.2 s`` when its worker moves on from it.

    With ``--dist loadfile`` a file runs whole on one worker, so a worker's next file means the
    previous one is done; the files still running are printed at the end of the session.
    """

    def __init__(self, terminal) -> None:
        self.terminal = terminal
        self.current: dict[str, tuple[str, float, dict[str, int]]] = {}  # worker -> (file, start, counts)
        self.started: set[str] = set()
        self.done = 0

    def start(self, nodeid: str) -> None:
        path = nodeid.split("::")[0]
        if path not in self.started:
            self.started.add(path)
            self.terminal.write_line(f"started {path}")

    def report(self, report) -> None:
        worker = getattr(getattr(report, "node", None), "gateway", None)
        worker = worker.id if worker is not None else "main"
        path = report.nodeid.split("::")[0]
        file, start, counts = self.current.get(worker, (None, 0.0, {}))
        if file != path:
            if file is not None:
                self.finish(worker, file, start, counts)
            file, start, counts = path, time.monotonic(), {}
            self.current[worker] = (file, start, counts)
        if report.when == "call" or report.outcome != "passed":
            outcome = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
            outcome = "errors" if report.when != "call" and report.outcome == "failed" else outcome
            counts[outcome] = counts.get(outcome, 0) + 1

    def finish(self, worker: str, file: str, start: float, counts: dict[str, int]) -> None:
        self.done += 1
        words = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no tests"
        self.terminal.write_line(f"[{worker}] {file}: {words} in {time.monotonic() - start:.1f} s")

    def flush(self) -> None:
        for worker, (file, start, counts) in sorted(self.current.items()):
            self.finish(worker, file, start, counts)
        self.current.clear()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    # SIGTERM (a CI timeout, `kill`) ends the run as Ctrl-C does: pytest finishes the session and the
    # exit hooks stop the servers and remove their folders, instead of the process vanishing at once.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    if config.getoption("--progress-files") and not WORKER:
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:
            config._file_progress = FileProgress(terminal)


def pytest_runtest_logreport(report):
    progress = getattr(pytest_runtest_logreport, "progress", None)
    if progress is not None:
        progress.report(report)


def pytest_runtest_logstart(nodeid, location):
    progress = getattr(pytest_runtest_logreport, "progress", None)
    if progress is not None:
        progress.start(nodeid)


def pytest_sessionstart(session):
    pytest_runtest_logreport.progress = getattr(session.config, "_file_progress", None)
    if not WORKER:
        server_folders.remove_stale()  # a killed run's servers, before this run starts its own


def pytest_unconfigure(config):
    """After an interrupted ``make test``: the workers still running are ended (their exit hooks stop
    their servers), then the servers of those that xdist tore down before their exit hooks ran."""
    if not WORKER:
        server_folders.end_workers()
        server_folders.remove_stale()


def pytest_report_teststatus(report, config):
    """With ``--progress-files`` a passing or skipped test prints nothing (its file's line says it)."""
    if getattr(config, "_file_progress", None) is not None and not hasattr(report, "wasxfail"):
        if report.when == "call" and report.outcome == "passed":
            return "passed", "", "PASSED"
        if report.skipped:
            return "skipped", "", "SKIPPED"
    return None


def pytest_terminal_summary(terminalreporter, config):
    progress = getattr(config, "_file_progress", None)
    if progress is not None:
        progress.flush()
