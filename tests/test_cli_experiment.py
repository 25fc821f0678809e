"""`recsys experiment start|stop|report|list` end to end on the test database, and the walk-through
of docs/experiments.md from a fresh database to a promoted candidate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from recsys.cli import main
from recsys.db import experiments as store
from recsys.db import versions
from tests.api.conftest import write_version
from tests.experiment_world import ClickModel, serve_experiment
from tests.factories import add_player, add_slot, fast_pipeline


@pytest.fixture
def cli(monkeypatch, db, database_url, tmp_path):
    monkeypatch.setenv("RECSYS_DATABASE_URL", database_url)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    with db.begin() as conn:
        players = {f"p{i}": add_player(conn, f"p{i}") for i in range(400)}
        slots = {f"s{i}": add_slot(conn, f"s{i}") for i in range(1, 21)}
    old = write_version(db, {}, slots, seed=1)
    new = write_version(db, {}, slots, seed=2, activate=False)
    return players, slots, old, new


def test_start_report_and_stop_with_promotion(cli, db, capsys):
    players, slots, old, new = cli
    assert main(["experiment", "start", "ab", "--arm", f"control={old}:50", "--arm", f"candidate={new}:50",
                 "--min-effect", "1"]) == 0
    assert capsys.readouterr().out == (f"started experiment 'ab': control=version {old} (weight 50), "
                                       f"candidate=version {new} (weight 50)\n")
    serve_experiment(db, store.running(db), players, list(slots.values()),
                     {"control": ClickModel(0.10), "candidate": ClickModel(0.20)}, seed=5)
    assert main(["experiment", "report", "ab"]) == 0
    report = capsys.readouterr().out
    assert "candidate: sample reached: 400 players (sized for a 100% lift in clicks per impression" in report
    assert "guardrail: lists suppressed by protection / list (%)" in report and "WARNING" not in report
    click_lines = report.split("\nclicks / impression (%)")[1].splitlines()
    assert click_lines[2].split()[0] == "control" and click_lines[2].rstrip().endswith("control")
    assert click_lines[3].split()[0] == "candidate" and click_lines[3].rstrip().endswith("better")
    assert main(["experiment", "stop", "ab", "--promote", "candidate"]) == 0
    assert capsys.readouterr().out == f"stopped experiment 'ab'; activated version {new} (arm candidate)\n"
    assert versions.active_version(db).id == new
    assert main(["experiment", "list"]) == 0
    assert capsys.readouterr().out.startswith("ab ")


@pytest.mark.parametrize(("argv", "message"), [
    (["start", "x", "--arm", "control=1:50"], "at least two arms"),
    (["start", "x", "--arm", "control=1", "--arm", "b=2:1"], "NAME=VERSION:WEIGHT"),
    (["start", "x", "--arm", "a=1:1", "--arm", "b=999:1"], "version 999 does not exist"),
    (["start", "bad/name", "--arm", "a=1:1", "--arm", "b=1:1"], "field 'name'"),
    (["start", "x", "--arm", "Control=1:1", "--arm", "control=2:1"], "arm names repeat (case does not count)"),
    (["start", "x", "--arm", "a=1:1", "--arm", "b=2:1", "--min-effect", "0"], "field 'min_effect'"),
    (["start", "x", "--arm", "a=1:1", "--arm", "b=2:1"], "quality gate refused model version 2"),
    (["stop", "nope"], "experiment 'nope': does not exist"),
    (["report", "nope"], "experiment 'nope': does not exist"),
])
def test_mistakes_are_one_line_and_exit_2(cli, db, capsys, argv, message):
    versions.set_metrics(db, cli[3], {"gate": {"passed": False, "reason": "HR@10 0.478 is below popularity's 0.489"}})
    assert main(["experiment", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("recsys experiment: error:")


def _walk_through() -> list[str]:
    """The ``recsys`` commands of docs/experiments.md's walk-through, in order."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "experiments.md").read_text()
    block = doc.split("## From a fresh database to a running experiment")[1].split("```sh")[1].split("```")[0]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip().startswith(("recsys", "RECSYS"))]


def test_the_walk_through_from_a_fresh_database_to_a_promoted_candidate(db, settings, database_url, tmp_path,
                                                                        monkeypatch, capsys):
    """The documented steps, on a small casino and fast settings: train and activate a version, train
    a candidate with other settings and --no-activate, start, traffic, report, stop and promote.
    The traffic is the experiment world's (tests/experiment_world.py) where the walk-through runs
    `recsys serve` and `recsys simulate`: the same lists, logged with their arm, and their feedback."""
    steps = _walk_through()
    assert [s.split()[:3] for s in steps] == [
        ["recsys", "db", "upgrade"], ["recsys", "synth", "--players"], ["recsys", "pipeline", "run"],
        ["RECSYS_TRAIN_FACTORS=16", "recsys", "train"], ["recsys", "experiment", "start"],
        ["recsys", "apikey", "create"], ["recsys", "serve", "--port"], ["recsys", "simulate", "--url"],
        ["recsys", "experiment", "report"], ["recsys", "experiment", "stop"]]
    fast = fast_pipeline(settings, tmp_path, train_factors=8)
    for name, value in fast.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RECSYS_DATABASE_URL", database_url)

    def run(step: str, *, players: int | None = None) -> str:
        words = step.split()
        if words[0].startswith("RECSYS_"):
            name, value = words.pop(0).split("=")
            monkeypatch.setenv(name, value)
        if players is not None:  # a small casino: seconds, not minutes
            words = [*words[:2], *re.sub(r"--players \d+ --slots \d+ --days \d+",
                                         f"--players {players} --slots 80 --days 30", " ".join(words[2:])).split(),
                     "--no-progress"]
        assert main(words[1:]) == 0, step
        return capsys.readouterr().out

    upgrade, synth, pipeline, train, start, _key, _serve, _simulate, report, stop = steps
    run(upgrade)
    run(synth, players=600)
    assert "version 1 active" in run(pipeline)
    assert "ready, NOT activated (--no-activate)" in run(train)
    candidate = versions.get_version(db, 2)
    assert (candidate.status, candidate.params["factors"], versions.active_version(db).id) == ("ready", 16, 1)
    assert run(start).startswith("started experiment 'factors-16': control=version 1 (weight 50), candidate=version 2")

    experiment = store.running(db)
    with db.connect() as conn:
        players = dict(conn.execute(sa.text("SELECT player_id, id FROM players ORDER BY id")).all())
        slots = list(conn.execute(sa.text("SELECT id FROM slots WHERE active")).scalars())
    serve_experiment(db, experiment, players, slots,
                     {"control": ClickModel(0.10), "candidate": ClickModel(0.14)}, seed=9)
    out = run(report)
    assert "candidate: sample" in out and "guardrail: reality checks / player" in out and "WARNING" not in out
    assert run(stop) == "stopped experiment 'factors-16'; activated version 2 (arm candidate)\n"
    assert versions.active_version(db).id == 2
