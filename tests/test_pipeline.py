"""The daily pipeline end to end on a small synthetic casino: idempotent, redone cleanly after a kill,
one at a time, with exit codes that name what happened, and a report whose pictures exist."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from datetime import time as clock
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from recsys.cli import main
from recsys.cli.pipeline import EXIT_BUSY, EXIT_REFUSED, EXIT_STAGE_FAILED, next_run_at, run_once
from recsys.db import pipeline_runs, versions
from recsys.db.synth_store import write_casino
from recsys.pipeline import PipelineBusy, run_pipeline, settings_environment
from recsys.report import colour_groups
from recsys.settings import Settings
from recsys.synth import SynthConfig
from tests.factories import fast_pipeline

CASINO = SynthConfig(
    players=1000, slots=150, days=30, seed=11, start=date(2026, 1, 1), mean_daily_sessions=1.0, clusters=6
)


@pytest.fixture
def casino(db):
    write_casino(db, CASINO)
    return db


@pytest.fixture
def fast(settings, tmp_path):
    """A few seconds of GMF training; the gate lets any version through (tests/test_worker.py tests it)."""
    return fast_pipeline(settings, tmp_path)


def _state(engine) -> dict:
    """Everything a pipeline run writes, as comparable values."""
    with engine.connect() as conn:
        return {
            "versions": conn.execute(sa.text("SELECT id, status FROM model_versions ORDER BY id")).all(),
            "interactions": conn.execute(
                sa.text("SELECT count(*), md5(string_agg(i::text, ',' ORDER BY player_key, slot_key, day)) "
                        "FROM interactions i")
            ).one(),
            "watermarks": conn.execute(sa.text("SELECT job, watermark FROM job_watermarks ORDER BY job")).all(),
            "embeddings": conn.execute(sa.text("SELECT count(*) FROM player_embeddings")).scalar_one(),
            "offline": conn.execute(sa.text("SELECT count(*) FROM offline_recommendations")).scalar_one(),
        }


def test_a_second_run_with_nothing_new_changes_nothing(casino, fast):
    first = run_pipeline(casino, fast)
    assert first.status == "succeeded"
    assert versions.active_version(casino).id == first.version_id
    before = _state(casino)

    second = run_pipeline(casino, fast)

    assert second.status == "skipped"
    assert second.message.startswith(f"nothing new since run {first.run_id} ")
    assert _state(casino) == before
    runs = pipeline_runs.list_runs(casino)
    assert [(r.id, r.status, r.version_id) for r in runs] == [
        (second.run_id, "skipped", first.version_id),
        (first.run_id, "succeeded", first.version_id),
    ]


def test_new_play_makes_the_next_run_consolidate_it_and_train_again(casino, fast):
    first = run_pipeline(casino, fast)
    with casino.begin() as conn:
        conn.execute(sa.text("UPDATE play_sessions SET seconds = seconds + 600, updated_at = now() WHERE id = 1"))

    second = run_pipeline(casino, fast)

    assert second.status == "succeeded" and second.version_id == first.version_id + 1
    consolidation = second.stages["consolidate"]
    assert (consolidation["mode"], consolidation["players"]) == ("incremental", 1)  # only that session's player
    assert versions.get_version(casino, first.version_id).status == "retired"


def test_changed_settings_count_as_new(casino, fast):
    run_pipeline(casino, fast)
    again = run_pipeline(casino, fast.replace(train_factors=8))
    assert again.status == "succeeded"


def test_a_killed_run_is_redone_cleanly_and_its_leftovers_marked_failed(casino, fast, database_url):
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": database_url,
        "RECSYS_DATA_DIR": str(fast.database.data_dir),
        "RECSYS_TRAIN_MODEL": "neumf",
        "RECSYS_TRAIN_EPOCHS": "200",
        "RECSYS_HOLDOUT_DAYS": "5",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "recsys", "pipeline", "run"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while not versions.list_versions(casino) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        time.sleep(1.0)  # inside training now
        alive = process.poll() is None
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert alive, "the pipeline ended before it could be killed"
    (killed_run,) = pipeline_runs.list_runs(casino)
    (killed_version,) = versions.list_versions(casino)
    assert (killed_run.status, killed_run.stage) == ("running", "train")
    assert killed_version.status == "training"
    assert versions.active_version(casino) is None
    _wait_for_the_lock_to_be_released(casino)

    outcome = run_pipeline(casino, fast)

    assert outcome.status == "succeeded"
    assert versions.active_version(casino).id == outcome.version_id != killed_version.id
    killed_run = pipeline_runs.get_run(casino, killed_run.id)
    assert (killed_run.status, killed_run.version_id) == ("failed", killed_version.id)
    assert "without finishing" in killed_run.error
    assert versions.get_version(casino, killed_version.id).status == "failed"
    recovered = pipeline_runs.get_run(casino, outcome.run_id).stages["recover"]
    assert recovered == {"failed_runs": [killed_run.id], "failed_versions": [killed_version.id]}


def _wait_for_the_lock_to_be_released(engine, seconds: float = 15.0) -> None:
    """PostgreSQL ends a killed client's session (and its advisory lock) once it sees the socket close."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with pipeline_runs.pipeline_lock(engine):
                return
        except PipelineBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_second_pipeline_exits_at_once_with_code_4(db, settings, monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_DATABASE_URL", settings.database.url)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(settings.database.data_dir))
    with pipeline_runs.pipeline_lock(db):
        running = pipeline_runs.start_run(db, inputs={}, host="worker-a", pid=4242)
        code = main(["pipeline", "run"])  # a waiting pipeline would hang here: this thread holds the lock

    assert code == EXIT_BUSY == 4
    message = capsys.readouterr().err
    assert f"another pipeline is running (run {running.id}, started " in message
    assert "pid 4242 on worker-a" in message
    assert [r.id for r in pipeline_runs.list_runs(db)] == [running.id]  # the second one wrote nothing


def test_a_failing_stage_is_named_with_exit_code_1(db, settings, monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_DATABASE_URL", settings.database.url)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(settings.database.data_dir))

    code = main(["pipeline", "run"])  # an empty casino: nothing to train on

    assert code == EXIT_STAGE_FAILED == 1
    assert re.search(r"stage train failed: .*no interactions to train on", capsys.readouterr().err)
    (run,) = pipeline_runs.list_runs(db)
    assert (run.status, run.stage, run.version_id) == ("failed", "train", None)
    assert run.error.startswith(f"pipeline run {run.id}: stage train failed")
    assert "consolidate" in run.stages  # the stage before it finished and was recorded


def test_a_version_refused_by_the_gate_exits_with_code_3(casino, fast, capsys):
    code = run_once(casino, fast.replace(gate_min_hr=1.0))
    assert code == EXIT_REFUSED == 3
    assert "NOT activated" in capsys.readouterr().out
    (run,) = pipeline_runs.list_runs(casino)
    assert run.status == "refused"
    assert versions.get_version(casino, run.version_id).status == "ready"
    assert versions.active_version(casino) is None


def test_no_activate_gates_as_usual_and_leaves_a_passing_version_ready(casino, fast, capsys):
    first = run_pipeline(casino, fast)
    assert run_once(casino, fast.replace(train_factors=8), activate=False) == 0
    out = capsys.readouterr().out
    assert "passed the gate: ready, NOT activated (--no-activate)" in out
    candidate = pipeline_runs.list_runs(casino)[0]
    assert (candidate.status, candidate.stages["train"]["activated"]) == ("succeeded", False)
    assert versions.get_version(casino, candidate.version_id).status == "ready"
    assert versions.active_version(casino).id == first.version_id  # no activation, no NOTIFY
    report = Path(candidate.report_path).read_text()
    assert "passed the quality gate: ready, not activated (--no-activate)" in report
    # The same data and settings without --no-activate is not a repeat of the candidate run: it trains.
    assert run_pipeline(casino, fast.replace(train_factors=8)).status == "succeeded"
    # A refused version still exits 3 with --no-activate.
    assert run_once(casino, fast.replace(gate_min_hr=1.0), activate=False) == EXIT_REFUSED


def test_a_version_that_loses_to_popularity_exits_with_code_3(casino, fast, capsys):
    # One epoch at a rate that leaves the initial weights: it ranks at random, far below popularity.
    loser = fast.replace(train_epochs=1, train_lr=1e-7, gate_popularity_margin=0.0)
    code = run_once(casino, loser)
    assert code == EXIT_REFUSED
    (run,) = pipeline_runs.list_runs(casino)
    version = versions.get_version(casino, run.version_id)
    m = version.metrics
    reason = f"HR@10 {m['hr@10']:.3f} is below popularity's {m['popularity_hr@10']:.3f} on the same cases"
    assert (run.status, version.status, m["gate"]["reason"]) == ("refused", "ready", reason)
    assert f"NOT activated ({reason})" in capsys.readouterr().out
    assert versions.active_version(casino) is None


def test_the_report_shows_its_pictures_and_the_previous_version(casino, fast):
    first = run_pipeline(casino, fast)
    second = run_pipeline(casino, fast, force=True)  # same data: --force trains anyway

    runs = Path(fast.database.data_dir).resolve() / "runs"
    assert second.report_path == runs / f"pipeline-{second.run_id}" / "report.html"
    page = second.report_path.read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(images) == ["slot-neighbours.png", "training-curve.png"]
    for name in images:
        assert (second.report_path.parent / name).read_bytes().startswith(b"\x89PNG")
    assert f"<th>version {second.version_id}</th><th>version {first.version_id}</th>" in page
    assert pipeline_runs.get_run(casino, second.run_id).report_path == str(second.report_path)


def test_torchrun_training_keeps_the_exit_code_of_a_refused_version(casino, fast, capsys):
    # torchrun itself exits 1 for a refused version (3 in the leader): the pipeline reads the version row.
    # (tests/test_worker.py trains an activated version under torchrun.)
    two = fast.replace(train_processes=2, gate_min_hr=1.0, train_epochs=2)
    assert run_once(casino, two) == EXIT_REFUSED
    (refused,) = pipeline_runs.list_runs(casino)
    version = versions.get_version(casino, refused.version_id)
    assert (refused.status, version.status, version.metrics["train_processes"]) == ("refused", "ready", 2)
    reason = version.metrics["gate"]["reason"]
    assert reason.startswith("HR@10 ") and reason.endswith(" is below the floor 1.0")
    assert f"NOT activated ({reason})" in capsys.readouterr().out
    figures = refused.stages["train"]
    assert (figures["activated"], figures["hr@10"]) == (False, round(version.metrics["hr@10"], 4))
    assert figures["itemknn_hr@10"] == round(version.metrics["itemknn_hr@10"], 4)
    assert figures["train_seconds"] > 0 and figures["baselines_seconds"] >= 0  # the leader's timings came back
    assert versions.active_version(casino) is None


def test_torchrun_training_that_finds_the_lock_taken_exits_with_code_4(casino, fast, monkeypatch, capsys):
    import recsys.pipeline

    # A `recsys train` that takes the training lock after the pipeline checked it (recover() skipped here).
    monkeypatch.setattr(recsys.pipeline, "recover", lambda engine: {})
    with versions.training_lock(casino):
        code = run_once(casino, fast.replace(train_processes=2))
    assert code == EXIT_BUSY
    assert "another training run is in progress" in capsys.readouterr().err
    (run,) = pipeline_runs.list_runs(casino)
    assert (run.status, run.version_id) == ("failed", None)
    assert versions.list_versions(casino) == []


def test_the_settings_reach_a_child_process_unchanged(tmp_path):
    settings = Settings.from_env({}, database_url="postgresql://recsys@db.example:5432/recsys", data_dir=tmp_path)
    for changed in (
        settings.replace(data_dir=tmp_path, train_mlp_layers=(32, 16), train_early_stopping=False,
                            gate_itemknn_margin=0.25, explore_seed=None, night_hours="", train_processes=3),
        settings.replace(explore_seed=5, database_url=None, train_lr=1e-7, gate_beat_itemknn=False),
    ):
        env = settings_environment(changed)
        assert Settings.from_env(env) == changed
        assert env["RECSYS_TRAIN_PROCESSES"] == str(changed.training.processes)


def test_the_map_colours_the_most_common_labels_and_greys_the_rest():
    names, group = colour_groups(np.array(["b", "a", "c", "a", "b", "a", "d"], dtype=object), top=2)
    assert names == ["a", "b"]
    assert group.tolist() == [1, 0, -1, 0, 1, 0, -1]


@pytest.mark.parametrize(
    ("now", "at", "expected"),
    [
        (datetime(2026, 3, 1, 2, 59, tzinfo=UTC), clock(3, 0), datetime(2026, 3, 1, 3, 0, tzinfo=UTC)),
        (datetime(2026, 3, 1, 3, 0, tzinfo=UTC), clock(3, 0), datetime(2026, 3, 2, 3, 0, tzinfo=UTC)),
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), clock(0, 15), datetime(2027, 1, 1, 0, 15, tzinfo=UTC)),
    ],
)
def test_the_next_scheduled_run(now, at, expected):
    assert next_run_at(now, at) == expected


def test_the_scheduler_logs_its_next_run_and_stops_cleanly_on_sigterm(database_url, tmp_path):
    env = {**os.environ, "RECSYS_DATABASE_URL": database_url, "RECSYS_DATA_DIR": str(tmp_path)}
    at = (datetime.now(UTC).hour + 12) % 24
    process = subprocess.Popen(
        [sys.executable, "-m", "recsys", "pipeline", "schedule", "--at", f"{at:02d}:00"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        assert f"{at:02d}:00 UTC" in _wait_for(lines, "next pipeline run at", seconds=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        _wait_for(lines, "scheduler stopped", seconds=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_for(lines: queue.Queue, text: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if text in line:
            return line
    raise AssertionError(f"{text!r} not logged within {seconds} s")
