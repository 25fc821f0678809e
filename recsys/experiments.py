"""A/B experiments between model versions: arms, the player's arm, and per-arm results with intervals.

An experiment splits the players who pass the protection gate between its arms by weight. Each arm
ranks with one model version, or with a baseline strategy: popularity alone (``version``
``popularity``) or item-kNN co-occurrence of the training window (``itemknn``). The first arm is
the control every other arm is compared with.

Assignment needs no stored table: a player's arm is a function of the experiment's name, the
player's id and the arms (SHA-256, so every replica and every restart agrees). Results come from
what the product already records about each list an experiment made: impressions, clicks, plays
attributed to the list, minutes played after a click and dismissals (docs/experiments.md). The
intervals and tests are statsmodels', not formulas written here.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, test_proportions_2indep
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from recsys.errors import InputError

MODEL = "model"
"""An arm's strategy when it ranks with a model version."""
POPULARITY = "popularity"
"""An arm's version for "no model": the popularity list every version falls back to."""
ITEMKNN = "itemknn"
"""An arm's version for item-kNN: each slot's neighbours by co-occurrence (cosine of the players
who played both) in the active version's training window (``recsys.serving.itemknn``)."""
STRATEGIES = (POPULARITY, ITEMKNN)
"""The baseline strategies an arm may name instead of a model version."""
NAME_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Experiment and arm names (the database checks the same shape)."""
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Arm:
    name: str
    version_id: int | None  # None: a baseline strategy
    weight: int
    strategy: str = MODEL  # MODEL with a version; else one of STRATEGIES (version None: POPULARITY)

    def __post_init__(self) -> None:
        if self.version_id is None and self.strategy == MODEL:  # an arm stored before strategies
            object.__setattr__(self, "strategy", POPULARITY)

    @property
    def version_label(self) -> str:
        """The arm's ``VERSION`` as ``NAME=VERSION:WEIGHT`` spells it: a version id or a strategy."""
        return self.strategy if self.version_id is None else str(self.version_id)


@dataclass(frozen=True)
class Experiment:
    id: int
    name: str
    status: str  # running, stopped
    arms: tuple[Arm, ...]  # arms[0] is the control
    started_at: datetime
    stopped_at: datetime | None = None
    promoted_arm: str | None = None

    @property
    def control(self) -> Arm:
        return self.arms[0]

    def arm(self, name: str) -> Arm | None:
        return next((a for a in self.arms if a.name == name), None)

    def version_ids(self) -> set[int]:
        """The model versions the serving snapshot must hold while this experiment runs."""
        return {a.version_id for a in self.arms if a.version_id is not None}


def check_name(name: str, source: str, field_name: str) -> str:
    if not isinstance(name, str) or not NAME_SHAPE.fullmatch(name):
        raise InputError(source, f"{name!r} is not a name: 1-64 letters, digits, '_', '.' or '-', "
                                 "starting with a letter or digit", field=field_name)
    return name


def parse_arm(text: str, source: str = "--arm") -> Arm:
    """``NAME=VERSION:WEIGHT`` (``control=12:50``, ``baseline=popularity:20``, ``knn=itemknn:20``)
    as an :class:`Arm`."""
    name, sep, rest = text.partition("=")
    version, sep2, weight = rest.rpartition(":")
    if not sep or not sep2:
        raise InputError(source, f"{text!r} is not NAME=VERSION:WEIGHT (e.g. control=12:50)", field="arm")
    return make_arm(name, version, weight, source)


def make_arm(name: str, version: str | int, weight: str | int, source: str) -> Arm:
    check_name(name, source, "name")
    if str(version) in STRATEGIES:
        return Arm(name, None, _weight(name, weight, source), str(version))
    try:
        version_id = int(version)
    except ValueError:
        version_id = 0
    if version_id < 1:
        raise InputError(source, f"arm {name!r}: version {version!r} is neither a model version id nor "
                                 f"one of {', '.join(map(repr, STRATEGIES))}", field="version")
    return Arm(name, version_id, _weight(name, weight, source))


def _weight(name: str, weight: str | int, source: str) -> int:
    try:
        weight_value = int(weight)
    except ValueError:
        weight_value = 0
    if not 1 <= weight_value <= 1_000_000:
        raise InputError(source, f"arm {name!r}: weight {weight!r} is not a whole number from 1 to 1000000",
                         field="weight")
    return weight_value


def check_arms(arms: list[Arm], source: str) -> tuple[Arm, ...]:
    """At least two arms with distinct names. Versions may repeat (an A/A test checks the split)."""
    if len(arms) < 2:
        raise InputError(source, "an experiment needs at least two arms (the first is the control)", field="arms")
    if len(arms) > 16:
        raise InputError(source, f"{len(arms)} arms; at most 16", field="arms")
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise InputError(source, f"arm names repeat: {', '.join(names)}", field="arms")
    return tuple(arms)


def bucket(experiment: str, player_id: str) -> float:
    """The player's position in ``[0, 1)`` for this experiment: the first 8 bytes of
    SHA-256(``experiment``, NUL, ``player_id``) over 2^64. Independent between experiments."""
    digest = hashlib.sha256(f"{experiment}\x00{player_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(experiment: Experiment, player_id: str) -> Arm:
    """The player's arm: arms take consecutive shares of ``[0, 1)`` in their order, by weight."""
    position = bucket(experiment.name, player_id) * sum(a.weight for a in experiment.arms)
    for arm in experiment.arms:
        position -= arm.weight
        if position < 0:
            return arm
    return experiment.arms[-1]


# --- results ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArmOutcome:
    """What the log holds about one arm's lists (one row of ``v_experiment_outcomes``)."""

    arm: str
    version_id: int | None
    weight: int
    players: int
    lists: int
    items: int
    impressions: int
    clicks: int
    plays: int
    dismissals: int
    minutes_after_click: np.ndarray  # (clicks,) minutes played from each clicked item


@dataclass(frozen=True)
class Estimate:
    """A rate or mean of one arm, and its difference against the control (``arm - control``)."""

    value: float | None
    low: float | None
    high: float | None
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    p_value: float | None = None

    @property
    def significant(self) -> bool:
        """The difference's interval excludes zero."""
        return self.diff_low is not None and (self.diff_low > 0 or self.diff_high < 0)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str  # "%" for rates (shown x100), "min"
    higher_is_better: bool


METRICS = (
    Metric("click_rate", "clicks / impression", "%", True),
    Metric("play_rate", "plays / impression", "%", True),
    Metric("dismiss_rate", "dismissals / impression", "%", False),
    Metric("minutes_per_click", "minutes played / click", "min", True),
)


@dataclass(frozen=True)
class ArmResult:
    outcome: ArmOutcome
    is_control: bool
    estimates: dict[str, Estimate] = field(default_factory=dict)

    def verdict(self, metric: Metric) -> str:
        """``better``, ``worse`` or ``no difference`` than the control, at 95 % (``no data`` without an interval)."""
        estimate = self.estimates[metric.key]
        if self.is_control:
            return "control"
        if estimate.diff_low is None:
            return "no data"
        if not estimate.significant:
            return "no difference"
        return "better" if (estimate.diff > 0) == metric.higher_is_better else "worse"


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def rate(count: int, nobs: int, control: ArmOutcome | None, control_count: int | None) -> Estimate:
    """A proportion with its Wilson interval; against the control, Newcombe's interval of the
    difference and a two-sided Wald test (statsmodels)."""
    if nobs == 0:
        return Estimate(None, None, None)
    alpha = 1 - CONFIDENCE
    low, high = proportion_confint(count, nobs, alpha=alpha, method="wilson")
    estimate = Estimate(count / nobs, float(low), float(high))
    if control is None or control.impressions == 0:
        return estimate
    diff_low, diff_high = confint_proportions_2indep(count, nobs, control_count, control.impressions,
                                                     method="newcomb", compare="diff", alpha=alpha)
    p = test_proportions_2indep(count, nobs, control_count, control.impressions, method="wald",
                                compare="diff").pvalue
    return Estimate(estimate.value, low, high, count / nobs - control_count / control.impressions,
                    _finite(diff_low), _finite(diff_high), _finite(p))


def mean(values: np.ndarray, control: np.ndarray | None) -> Estimate:
    """A mean with its t interval; against the control, Welch's interval and test (statsmodels)."""
    if values.size < 2:
        return Estimate(float(values.mean()) if values.size else None, None, None)
    alpha = 1 - CONFIDENCE
    stats = DescrStatsW(values)
    low, high = stats.tconfint_mean(alpha=alpha)
    if control is None or control.size < 2:
        return Estimate(float(stats.mean), _finite(low), _finite(high))
    compare = CompareMeans(stats, DescrStatsW(control))
    diff_low, diff_high = compare.tconfint_diff(alpha=alpha, usevar="unequal")
    p = compare.ttest_ind(usevar="unequal")[1]
    return Estimate(float(stats.mean), _finite(low), _finite(high), float(stats.mean - control.mean()),
                    _finite(diff_low), _finite(diff_high), _finite(p))


def results(outcomes: list[ArmOutcome]) -> list[ArmResult]:
    """Each arm's rates and mean with 95 % intervals; every arm after the first against the first."""
    if not outcomes:
        return []
    control = outcomes[0]
    out = []
    for position, arm in enumerate(outcomes):
        base = None if position == 0 else control
        estimates = {
            "click_rate": rate(arm.clicks, arm.impressions, base, control.clicks),
            "play_rate": rate(arm.plays, arm.impressions, base, control.plays),
            "dismiss_rate": rate(arm.dismissals, arm.impressions, base, control.dismissals),
            "minutes_per_click": mean(arm.minutes_after_click, None if base is None else control.minutes_after_click),
        }
        out.append(ArmResult(arm, position == 0, estimates))
    return out


def shown(x: float | None, unit: str, *, signed: bool = False) -> str:
    """A value as the report and the dashboard print it: rates in percent (points for a difference)."""
    if x is None:
        return "-"
    value = x * 100 if unit == "%" else x
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def interval(estimate: Estimate, metric: Metric, *, diff: bool = False) -> str:
    """``12.30 % [10.10, 14.50]`` or, for a difference, ``+2.10 pp [+0.30, +3.90]``."""
    unit = "pp" if diff and metric.unit == "%" else metric.unit
    value, low, high = (estimate.diff, estimate.diff_low, estimate.diff_high) if diff else (
        estimate.value, estimate.low, estimate.high)
    if value is None:
        return "-"
    text = f"{shown(value, metric.unit, signed=diff)} {unit}"
    if low is not None:
        text += f" [{shown(low, metric.unit, signed=diff)}, {shown(high, metric.unit, signed=diff)}]"
    return text
