"""Assignment and statistics of recsys.experiments, without a database."""

import numpy as np
import pytest

from recsys.errors import InputError
from recsys.experiments import (
    METRICS,
    Arm,
    ArmOutcome,
    Experiment,
    assign,
    bucket,
    check_arms,
    parse_arm,
    results,
)

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


def _arm(name: str, impressions: int, p_click: float, minutes: float, rng) -> ArmOutcome:
    clicks = int(rng.binomial(impressions, p_click))
    return ArmOutcome(name, None, 1, impressions // 5, impressions // 5, impressions, impressions, clicks,
                      clicks // 2, int(rng.binomial(impressions - clicks, 0.05)),
                      rng.exponential(minutes, size=clicks))


def test_a_truly_better_arm_is_detected():
    rng = np.random.default_rng(1)
    control, better = _arm("control", 5000, 0.10, 5.0, rng), _arm("candidate", 5000, 0.13, 7.0, rng)
    _, candidate = results([control, better])
    click = candidate.estimates["click_rate"]
    assert click.diff_low > 0 and click.diff_high < 0.06  # true difference 0.03 lies inside
    assert click.diff_low < 0.03 < click.diff_high
    assert candidate.verdict(METRICS[0]) == "better"
    assert candidate.estimates["minutes_per_click"].diff_low > 0


def test_equal_arms_show_no_difference():
    rng = np.random.default_rng(2)
    control, same = _arm("control", 5000, 0.10, 5.0, rng), _arm("candidate", 5000, 0.10, 5.0, rng)
    first, candidate = results([control, same])
    assert first.is_control and first.estimates["click_rate"].diff is None
    for metric in METRICS:
        estimate = candidate.estimates[metric.key]
        assert estimate.diff_low < 0 < estimate.diff_high, metric.key
        assert candidate.verdict(metric) == "no difference"


def test_intervals_cover_the_rate():
    rng = np.random.default_rng(3)
    (control,) = results([_arm("control", 2000, 0.2, 5.0, rng)])
    click = control.estimates["click_rate"]
    assert click.low < click.value < click.high and click.low < 0.2 < click.high


def test_an_arm_without_impressions_has_no_rate():
    empty = ArmOutcome("control", 1, 1, 0, 0, 0, 0, 0, 0, 0, np.array([]))
    (result,) = results([empty])
    assert result.estimates["click_rate"].value is None
    assert result.estimates["minutes_per_click"].value is None
