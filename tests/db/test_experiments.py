"""Experiments in PostgreSQL: start/stop rules, promotion through activation and the guardrails,
per-player outcomes."""

import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa

from recsys.db import experiments as store
from recsys.db import versions
from recsys.db.experiments import ExperimentError
from recsys.db.versions import VersionError
from recsys.errors import InputError
from recsys.experiments import GUARDRAILS, METRICS, Arm, results
from tests.api.conftest import write_version
from tests.experiment_world import ClickModel, serve_experiment, two_versions

ARMS = (Arm("control", None, 50), Arm("candidate", None, 50))


@pytest.fixture
def casino(db):
    return two_versions(db, 600)


def test_one_experiment_runs_at_a_time_and_names_are_never_reused(casino, db):
    _, _, old, new = casino
    started = store.start(db, "first", (Arm("control", old, 50), Arm("candidate", new, 50)))
    assert (started.status, started.control.version_id, started.version_ids()) == ("running", old, {old, new})
    with pytest.raises(ExperimentError, match="'first' is running"):
        store.start(db, "second", ARMS)
    store.stop(db, "first")
    with pytest.raises(ExperimentError, match="exists already"):
        store.start(db, "first", ARMS)
    with pytest.raises(ExperimentError, match="not running"):
        store.stop(db, "first")
    assert store.running(db) is None
    assert [e.name for e in store.list_all(db)] == ["first"]


def test_an_arm_needs_a_servable_version(casino, db):
    with pytest.raises(ExperimentError, match="version 999 does not exist"):
        store.start(db, "bad", (Arm("control", None, 1), Arm("candidate", 999, 1)))
    failed = versions.create_version(db, "neumf", {})
    versions.fail_version(db, failed, "boom")
    with pytest.raises(ExperimentError, match=f"version {failed}"):
        store.start(db, "bad", (Arm("control", None, 1), Arm("candidate", failed, 1)))
    assert store.list_all(db) == []  # nothing written


def test_promotion_goes_through_activation_and_its_gate(casino, db):
    _, _, old, new = casino
    versions.set_metrics(db, new, {"gate": {"passed": False, "reason": "HR@10 below the floor"}})
    store.start(db, "gate", (Arm("control", old, 50), Arm("candidate", new, 50)), force=True)
    with pytest.raises(VersionError, match="quality gate refused"):
        store.stop(db, "gate", promote="candidate")
    assert store.get(db, "gate").status == "running"  # a refused promotion stops nothing
    with pytest.raises(InputError, match="no arm 'nope'"):
        store.stop(db, "gate", promote="nope")
    stopped = store.stop(db, "gate", promote="candidate", force=True)
    assert (stopped.status, stopped.promoted_arm) == ("stopped", "candidate")
    assert versions.active_version(db).id == new
    assert "forced_activation" in versions.get_version(db, new).metrics


def test_the_analyst_view_counts_each_arms_outcomes(casino, db):
    players, slots, old, new = casino
    experiment = store.start(db, "counts", (Arm("control", old, 50), Arm("candidate", new, 50)))
    per_arm = serve_experiment(db, experiment, players, list(slots.values()),
                               {"control": ClickModel(0.1), "candidate": ClickModel(0.2)}, seed=3)
    outcomes = store.outcomes(db, experiment)
    assert [o.arm for o in outcomes] == ["control", "candidate"]
    with db.connect() as conn:
        expected = dict(conn.execute(sa.text(
            "SELECT r.arm, count(*) FROM feedback f JOIN recommendations r ON r.id = f.recommendation_id "
            "WHERE f.action = 'click' GROUP BY r.arm")).all())
        seconds = dict(conn.execute(sa.text(
            "SELECT r.arm, sum(s.seconds) FROM play_sessions s JOIN recommendations r ON r.id = s.recommendation_id "
            "GROUP BY r.arm")).all())
        medians = dict(conn.execute(sa.text(
            "SELECT r.arm, percentile_cont(0.5) WITHIN GROUP (ORDER BY s.seconds) / 60 FROM play_sessions s "
            "JOIN recommendations r ON r.id = s.recommendation_id GROUP BY r.arm")).all())
    for o in outcomes:
        assert (o.players, o.lists, o.items, o.impressions) == (per_arm[o.arm], per_arm[o.arm], 5 * per_arm[o.arm],
                                                                5 * per_arm[o.arm])
        assert o.clicks == expected[o.arm] == o.plays == int(o.sums.clicks.sum())
        assert o.sums.click_minutes.sum() == pytest.approx(seconds[o.arm] / 60)
        assert o.median_click_minutes == pytest.approx(medians[o.arm])  # every click played once
        assert (o.suppressed, o.reality_checks) == (0, 0)
        # One list per player: each player's sums are that list's.
        assert o.sums.lists.tolist() == [1.0] * o.players and o.sums.items.max() == 5


@pytest.mark.parametrize(("candidate_click", "verdict"), [(0.16, "better"), (0.10, "no difference")])
def test_a_better_arm_is_detected_and_equal_arms_are_not(casino, db, candidate_click, verdict):
    players, slots, old, new = casino
    # 300 players an arm find a lift of 60 % (10 % -> 16 %) with 80 % power.
    experiment = store.start(db, "ab", (Arm("control", old, 50), Arm("candidate", new, 50)), min_effect=0.6)
    serve_experiment(db, experiment, players, list(slots.values()),
                     {"control": ClickModel(0.10), "candidate": ClickModel(candidate_click)}, seed=4)
    control, candidate = results(store.outcomes(db, experiment), experiment.min_effect)
    assert candidate.sample.reached
    click = candidate.estimates["click_rate"]
    assert candidate.verdict(METRICS[0]) == verdict
    if verdict == "better":
        assert click.diff_low > 0 and click.diff_low < 0.06 < click.diff_high
    else:
        assert click.diff_low < 0 < click.diff_high
    assert np.isclose(click.diff, click.value - control.estimates["click_rate"].value)


def test_a_gate_refused_version_serves_an_arm_only_with_force(casino, db, caplog):
    _, _, old, new = casino
    versions.set_metrics(db, new, {"gate": {"passed": False, "reason": "HR@10 0.478 is below popularity's 0.489"}})
    arms = (Arm("control", old, 50), Arm("candidate", new, 50))
    with pytest.raises(ExperimentError, match="quality gate refused model version .*force"):
        store.start(db, "refused", arms)
    assert store.list_all(db) == []
    started = store.start(db, "refused", arms, force=True)
    assert started.version_ids() == {old, new}
    assert f"arm 'candidate' serves model version {new}, which the quality gate refused" in caplog.text


def _log(conn, experiment, arm: str, player_key: int, *, suppressed: str | None = None,
         action: str | None = None) -> None:
    """One list of ``arm`` without games, as the serving path logs a gate's or the late rule's."""
    conn.execute(sa.text(
        "INSERT INTO recommendations (id, player_key, trigger, experiment_id, arm, suppressed_reason, action, "
        "created_at) VALUES (:id, :p, 'session_threshold', :e, :arm, :s, :a, :at)"),
        {"id": uuid.uuid4(), "p": player_key, "e": experiment.id, "arm": arm, "s": suppressed, "a": action,
         "at": datetime.now(UTC)})


def test_guardrails_count_suppressed_lists_and_reality_checks_and_block_promotion(casino, db, caplog):
    players, slots, old, new = casino
    experiment = store.start(db, "harm", (Arm("control", old, 50), Arm("candidate", new, 50)))
    serve_experiment(db, experiment, players, list(slots.values()),
                     {"control": ClickModel(0.10), "candidate": ClickModel(0.16)}, seed=4)
    from recsys.experiments import assign

    with db.begin() as conn:
        for player_id, key in players.items():
            if assign(experiment, player_id).name == "candidate":  # the candidate's players play on to the limit
                _log(conn, experiment, "candidate", key, suppressed="session_limit", action="reality_check")
    control, candidate = results(store.outcomes(db, experiment), experiment.min_effect)
    assert candidate.outcome.suppressed == candidate.outcome.reality_checks == candidate.outcome.players
    assert candidate.outcome.lists == 2 * candidate.outcome.players  # games, then a reality check
    assert candidate.estimates["suppressed_share"].value == 0.5
    assert candidate.estimates["reality_checks_per_player"].value == 1.0
    assert candidate.verdict(GUARDRAILS[0]) == candidate.verdict(GUARDRAILS[1]) == "worse"
    assert control.outcome.suppressed == 0
    with pytest.raises(ExperimentError, match="not promoting arm 'candidate': candidate is worse .*force"):
        store.stop(db, "harm", promote="candidate")
    assert store.get(db, "harm").status == "running" and versions.active_version(db).id == old
    stopped = store.stop(db, "harm", promote="candidate", force=True)
    assert stopped.promoted_arm == "candidate" and versions.active_version(db).id == new
    assert "promoting arm 'candidate' by force although candidate is worse" in caplog.text


def test_the_sample_size_is_kept_with_the_experiment(casino, db):
    _, _, old, new = casino
    store.start(db, "sized", (Arm("control", old, 50), Arm("candidate", new, 50)), min_effect=0.05)
    assert store.get(db, "sized").min_effect == 0.05
    with pytest.raises(sa.exc.IntegrityError), db.begin() as conn:
        conn.execute(sa.text("UPDATE experiments SET min_effect = 0 WHERE name = 'sized'"))


def test_retention_keeps_the_versions_of_the_running_experiment(casino, db):
    _, slots, old, new = casino
    newer = write_version(db, {}, slots, seed=3, activate=False)
    store.start(db, "keep", (Arm("control", old, 50), Arm("candidate", new, 50)))
    versions.activate(db, newer)
    assert versions.retire_old(db, keep=0) == []  # old and new serve arms
    store.stop(db, "keep")
    assert sorted(versions.retire_old(db, keep=0)) == sorted([old, new])


def test_the_documented_queries_run_as_the_analyst(casino, db):
    import re
    from pathlib import Path

    players, slots, old, new = casino
    experiment = store.start(db, "ranker-13", (Arm("control", old, 50), Arm("candidate", new, 50)))
    serve_experiment(db, experiment, players, list(slots.values()),
                     {"control": ClickModel(0.1), "candidate": ClickModel(0.2)}, seed=6)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "experiments.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", doc, flags=re.DOTALL)
    assert len(blocks) == 2
    with db.connect() as conn:
        conn.exec_driver_sql("SET ROLE recsys_analyst")
        by_day = conn.exec_driver_sql(blocks[0]).all()
        outcomes = conn.exec_driver_sql(blocks[1]).all()
    assert {row.arm for row in by_day} == {"control", "candidate"}
    assert [row.arm for row in outcomes] == ["control", "candidate"]
    assert sum(row.impressions for row in outcomes) == 5 * len(players)
