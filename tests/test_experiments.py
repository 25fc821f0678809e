"""Assignment and statistics of recsys.experiments, without a database.

The statistics are checked in simulation, on worlds whose truth is known (tests/experiment_world.py):
seeded, pure numpy, a few seconds in all.
"""

import warnings
from datetime import UTC, datetime

import numpy as np
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep

from recsys.cli.experiment import report_lines
from recsys.errors import InputError
from recsys.experiments import (
    ALL_METRICS,
    GUARDRAILS,
    METRICS,
    Arm,
    ArmOutcome,
    Experiment,
    PlayerSums,
    assign,
    bucket,
    check_arms,
    check_min_effect,
    estimate,
    parse_arm,
    ratio,
    results,
)
from tests.experiment_world import heavy_tailed_arm

EXPERIMENT = Experiment(1, "ranker-v13", "running", (Arm("control", 12, 50), Arm("candidate", 13, 50)), None)


def test_arms_parse_from_the_command_line():
    assert parse_arm("control=12:50") == Arm("control", 12, 50)
    assert parse_arm("base=popularity:20") == Arm("base", None, 20)


@pytest.mark.parametrize(("text", "field"), [
    ("control12:50", "arm"), ("control=12", "arm"), ("control=twelve:50", "version"), ("control=0:50", "version"),
    ("control=12:0", "weight"), ("control=12:half", "weight"), ("=12:50", "name"), ("bad name=12:50", "name"),
])
def test_bad_arms_name_the_field(text, field):
    with pytest.raises(InputError) as caught:
        parse_arm(text)
    assert caught.value.field == field


def test_an_experiment_needs_two_distinct_arms():
    with pytest.raises(InputError, match="at least two"):
        check_arms([Arm("a", 1, 1)], "--arm")
    with pytest.raises(InputError, match="repeat"):
        check_arms([Arm("a", 1, 1), Arm("a", 2, 1)], "--arm")


def test_arm_names_are_unique_without_regard_to_case():
    with pytest.raises(InputError, match="repeat") as caught:
        check_arms([Arm("Control", 1, 1), Arm("control", 2, 1)], "--arm")
    assert caught.value.field == "arms"


@pytest.mark.parametrize("text", ["0", "-0.1", "11", "ten", "nan"])
def test_a_min_effect_is_a_positive_lift(text):
    with pytest.raises(InputError) as caught:
        check_min_effect(text, "--min-effect")
    assert caught.value.field == "min_effect"
    assert check_min_effect("0.05", "--min-effect") == 0.05


def test_assignment_is_a_pure_function_of_experiment_and_player():
    assert bucket("ranker-v13", "p1") == bucket("ranker-v13", "p1")
    # Known values: any replica, any restart, any Python computes the same.
    assert bucket("ranker-v13", "p1") == pytest.approx(int.from_bytes(
        __import__("hashlib").sha256(b"ranker-v13\x00p1").digest()[:8], "big") / 2**64)
    arms = [assign(EXPERIMENT, f"p{i}").name for i in range(20_000)]
    assert arms == [assign(EXPERIMENT, f"p{i}").name for i in range(20_000)]
    # 50:50 within 1.5 points on 20,000 players (sd of the share: 0.35 points).
    assert abs(arms.count("control") / len(arms) - 0.5) < 0.015


def test_weights_set_the_shares_and_experiments_split_independently():
    skewed = Experiment(2, "skewed", "running", (Arm("a", 1, 90), Arm("b", 2, 10)), None)
    arms = [assign(skewed, f"p{i}").name for i in range(20_000)]
    assert abs(arms.count("b") / len(arms) - 0.10) < 0.01
    other = Experiment(3, "other", "running", EXPERIMENT.arms, None)
    same = sum(assign(EXPERIMENT, f"p{i}").name == assign(other, f"p{i}").name for i in range(20_000))
    assert abs(same / 20_000 - 0.5) < 0.015  # a new experiment reshuffles players


CLICKS = METRICS[0]
# The simulated worlds: 2,000 players per arm, clicks per impression 10 %, players' propensities
# Beta(0.5, 4.5), impressions 1 + 4 x Pareto(1.5) capped at 1,000 (a median of 3; about 14 players
# in 2,000 with 100 or more, the largest about 500).
WORLD = {"spread": 5.0, "tail": 1.5}
PLAYERS = 2000
RUNS = 200


def _outcome(name: str, sums: PlayerSums, median: float | None = None) -> ArmOutcome:
    return ArmOutcome(name, None, 1, sums, median)


def test_the_delta_method_is_the_ratio_of_per_player_sums_with_their_covariance():
    x = np.array([0.0, 1.0, 3.0, 2.0, 10.0])
    y = np.array([2.0, 4.0, 5.0, 3.0, 30.0])
    value, variance = ratio(x, y)
    n, r = x.size, x.sum() / y.sum()
    sxx, syy, sxy = np.var(x, ddof=1), np.var(y, ddof=1), np.cov(x, y, ddof=1)[0, 1]
    assert value == pytest.approx(16 / 44)
    assert variance == pytest.approx((sxx - 2 * r * sxy + r * r * syy) / (n * y.mean() ** 2))
    mean, mean_variance = ratio(x, None)  # per player: the mean and s^2 / n
    assert (mean, mean_variance) == (pytest.approx(3.2), pytest.approx(np.var(x, ddof=1) / 5))


def test_aa_experiments_with_heavy_players_call_different_in_3_to_8_percent():
    """200 A/A experiments: per-player intervals call "different" about 5 % of the time; the
    item-level intervals used before (Newcombe on pooled items) on the same worlds, far more often."""
    rng = np.random.default_rng(20)
    per_player = items = 0
    for _ in range(RUNS):
        control, same = heavy_tailed_arm(rng, PLAYERS, 0.10, **WORLD), heavy_tailed_arm(rng, PLAYERS, 0.10, **WORLD)
        per_player += estimate(CLICKS, same, control).significant
        low, high = confint_proportions_2indep(same.clicks.sum(), same.impressions.sum(), control.clicks.sum(),
                                               control.impressions.sum(), method="newcomb", compare="diff")
        items += low > 0 or high < 0
    assert 0.03 <= per_player / RUNS <= 0.08, per_player
    assert items / RUNS > 0.3, items  # measured: 0.64 (bench/bench_experiment_stats.py prints both)


def test_an_ab_interval_covers_the_known_effect_in_90_to_98_percent():
    rng = np.random.default_rng(21)
    covered = detected = 0
    for _ in range(RUNS):
        control, better = heavy_tailed_arm(rng, PLAYERS, 0.10, **WORLD), heavy_tailed_arm(rng, PLAYERS, 0.12, **WORLD)
        e = estimate(CLICKS, better, control)
        covered += e.diff_low < 0.02 < e.diff_high
        detected += e.significant
    assert 0.90 <= covered / RUNS <= 0.98, covered
    assert detected > 0  # the effect is found in some runs; how often is the sample plan's business


def test_no_verdict_before_the_planned_sample():
    rng = np.random.default_rng(5)
    small = [_outcome("control", heavy_tailed_arm(rng, 100, 0.10, **WORLD)),
             _outcome("candidate", heavy_tailed_arm(rng, 100, 0.20, **WORLD))]
    _, candidate = results(small, min_effect=0.05)
    assert not candidate.sample.reached and candidate.sample.players_needed > 200
    assert candidate.verdict(CLICKS) == "too early"
    assert "sample not reached: 200 of about" in candidate.sample.words()
    large = [_outcome("control", heavy_tailed_arm(rng, 20_000, 0.10, **WORLD)),
             _outcome("candidate", heavy_tailed_arm(rng, 20_000, 0.20, **WORLD))]
    _, candidate = results(large, min_effect=0.5)
    assert candidate.sample.reached and candidate.verdict(CLICKS) == "better"


def test_a_guardrail_flags_a_candidate_whose_clicks_win():
    rng = np.random.default_rng(6)
    control = heavy_tailed_arm(rng, 5000, 0.10, **WORLD)
    better = heavy_tailed_arm(rng, 5000, 0.15, **WORLD)
    lists = better.lists
    # The candidate's players get a suppressed list a fifth of the time; the control's, never.
    harmful = PlayerSums.of(**{name: getattr(better, name) for name in ("lists", "items", "impressions", "clicks",
                                                                        "plays", "click_minutes", "long_clicks")},
                            suppressed=rng.binomial(lists.astype(np.int64), 0.2))
    rows = results([_outcome("control", control), _outcome("candidate", harmful)], min_effect=0.5)
    candidate = rows[1]
    assert candidate.verdict(CLICKS) == "better"
    assert candidate.verdict(GUARDRAILS[0]) == "worse"
    (flag,) = candidate.guardrail_flags()
    assert flag.startswith("candidate is worse than the control on a protection guardrail: lists suppressed")
    experiment = Experiment(1, "harm", "running", (Arm("control", 1, 1), Arm("candidate", 2, 1)),
                            datetime(2026, 12, 1, tzinfo=UTC), min_effect=0.5)
    lines = report_lines(experiment, [r.outcome for r in rows], colour=True)
    assert lines[-1] == f"\033[31mWARNING: {flag}; `stop --promote` refuses this arm without --force\033[0m"
    assert rows[0].guardrail_flags() == []


def test_arms_without_events_give_no_data_or_zero_and_no_warning():
    """0 dismissals, 0 clicks, no impressions, one player, no player: clean answers, no RuntimeWarning."""
    rng = np.random.default_rng(7)
    worlds = {
        "control": heavy_tailed_arm(rng, 300, 0.10, **WORLD),  # no dismissal, no suppression anywhere
        "no-clicks": PlayerSums.of(lists=[1, 2], items=[5, 10], impressions=[5, 10]),
        "unseen": PlayerSums.of(lists=[1, 1, 3]),  # lists but no impression reported
        "one": PlayerSums.of(lists=[1], items=[5], impressions=[5], clicks=[1], click_minutes=[3.0]),
        "empty": PlayerSums.of(),
    }
    outcomes = [_outcome(name, sums) for name, sums in worlds.items()]
    experiment = Experiment(1, "zeros", "running", tuple(Arm(name, 1, 1) for name in worlds),
                            datetime(2026, 12, 1, tzinfo=UTC))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = results(outcomes)
        lines = report_lines(experiment, outcomes, colour=False)
    control, no_clicks, unseen, one, empty = rows
    dismiss = control.estimates["dismiss_rate"]
    assert (dismiss.value, dismiss.low, dismiss.high) == (0.0, 0.0, 0.0)  # a clean zero
    assert no_clicks.estimates["dismiss_rate"].diff == 0.0 and no_clicks.estimates["dismiss_rate"].p_value == 1.0
    assert no_clicks.verdict(METRICS[3]) == "no data"  # minutes per click without a click
    assert all(unseen.verdict(m) == "no data" for m in METRICS)
    assert one.estimates["click_rate"].value == 0.2 and one.verdict(CLICKS) == "no data"  # no interval
    assert all(empty.verdict(m) == "no data" for m in ALL_METRICS) and empty.outcome.players == 0
    assert not any("nan" in line.lower() for line in lines)
