"""A/B experiments between model versions: arms, the player's arm, and per-arm results with intervals.

An experiment splits the players who pass the protection gate between its arms by weight. Each arm
ranks with one model version, or with a baseline strategy: popularity alone (``version``
``popularity``) or item-kNN co-occurrence of the training window (``itemknn``). The first arm is
the control every other arm is compared with.

Assignment needs no stored table: a player's arm is a function of the experiment's name, the
player's id and the arms (SHA-256, so every replica and every restart agrees). Results come from
what the product already records about each list an experiment made, summed per player: players
are what is randomized, so every metric is a ratio of per-player sums and its interval comes from
the delta method over players (Deng, Knoblich and Lu 2018), never from items treated as
independent. Guardrails (suppressed lists, reality checks, long continuous play after a click) are
ratios of the same kind; a candidate worse on one is flagged whatever its clicks say
(docs/experiments.md).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from statistics import NormalDist

import numpy as np

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
POWER = 0.80
"""The chance the planned sample detects a true lift of ``min_effect`` (docs/experiments.md, peeking)."""
DEFAULT_MIN_EFFECT = 0.10
"""The smallest relative lift in clicks per impression an experiment is sized for, unless given."""


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
    min_effect: float = DEFAULT_MIN_EFFECT  # relative lift in clicks per impression the sample is sized for

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
    """At least two arms with distinct names, without regard to case ("Control" and "control" would
    read as one arm in a report). Versions may repeat (an A/A test checks the split)."""
    if len(arms) < 2:
        raise InputError(source, "an experiment needs at least two arms (the first is the control)", field="arms")
    if len(arms) > 16:
        raise InputError(source, f"{len(arms)} arms; at most 16", field="arms")
    names = [a.name for a in arms]
    if len({n.casefold() for n in names}) != len(names):
        raise InputError(source, f"arm names repeat (case does not count): {', '.join(names)}", field="arms")
    return tuple(arms)


def check_min_effect(value: float | str, source: str) -> float:
    """A relative lift in clicks per impression: above 0 and at most 10 (1000 %)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0 < number <= 10:
        raise InputError(source, f"min effect {value!r} is not a relative lift above 0 and at most 10 "
                                 "(0.05 = 5 % more clicks per impression)", field="min_effect")
    return number


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

Z = NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / 2)
"""The normal quantile of a two-sided 95 % interval (1.96)."""
Z_POWER = NormalDist().inv_cdf(POWER)
"""The normal quantile of 80 % power (0.84)."""

SUM_NAMES = ("lists", "suppressed", "reality_checks", "items", "impressions", "clicks", "plays", "dismissals",
             "click_minutes", "long_clicks")


@dataclass(frozen=True)
class PlayerSums:
    """One arm's per-player sums: entry ``j`` of every array, shape ``(n,)``, is one player the arm served.

    ``suppressed``: lists without games (the protection gate, or the late-session rule);
    ``reality_checks``: lists whose action was a reality check; ``items``: items of its lists;
    ``impressions`` / ``clicks`` / ``dismissals``: items with that feedback; ``plays``: items with
    a play session attributed to the list; ``click_minutes``: minutes of continuous play in the
    sessions attributed to clicked items (0 for a click without play); ``long_clicks``: clicked
    items whose attributed continuous play reached the session threshold.
    """

    lists: np.ndarray
    suppressed: np.ndarray
    reality_checks: np.ndarray
    items: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    plays: np.ndarray
    dismissals: np.ndarray
    click_minutes: np.ndarray
    long_clicks: np.ndarray

    @classmethod
    def of(cls, **columns) -> PlayerSums:
        """From per-player sequences by name (float64 arrays); a name left out is zeros for every player."""
        n = len(next(iter(columns.values()))) if columns else 0
        return cls(**{name: np.asarray(columns[name], dtype=np.float64) if name in columns else np.zeros(n)
                      for name in SUM_NAMES})

    @property
    def players(self) -> int:
        return int(self.lists.size)

    def total(self, name: str) -> int:
        return int(round(float(getattr(self, name).sum())))

    def ratio(self, numerator: str, denominator: str | None) -> tuple[float | None, float | None]:
        """:func:`ratio` of two of the sums by name (``denominator`` None: per player)."""
        return ratio(getattr(self, numerator), None if denominator is None else getattr(self, denominator))


@dataclass(frozen=True)
class SummedSums:
    """An arm's :class:`PlayerSums` reduced to what :func:`results` reads of them: the number of
    players, each sum's total, and each metric's :func:`ratio` (value and variance) computed from
    the per-player arrays. Exact (the same floats as from the arrays) and a few numbers whatever
    the number of players: a stopped experiment's statistics are stored this way (frozen)."""

    players: int
    totals: dict[str, float]  # SUM_NAMES -> the arm's total
    ratios: dict[str, tuple[float | None, float | None]]  # "numerator/denominator" -> (value, variance)

    @classmethod
    def of(cls, sums: PlayerSums) -> SummedSums:
        return cls(sums.players, {name: float(getattr(sums, name).sum()) for name in SUM_NAMES},
                   {_ratio_key(m.numerator, m.denominator): sums.ratio(m.numerator, m.denominator)
                    for m in ALL_METRICS})

    def total(self, name: str) -> int:
        return int(round(self.totals[name]))

    def ratio(self, numerator: str, denominator: str | None) -> tuple[float | None, float | None]:
        return self.ratios[_ratio_key(numerator, denominator)]

    def to_json(self) -> dict:
        return {"players": self.players, "totals": self.totals,
                "ratios": {k: list(v) for k, v in self.ratios.items()}}

    @classmethod
    def from_json(cls, data: dict) -> SummedSums:
        return cls(int(data["players"]), {k: float(v) for k, v in data["totals"].items()},
                   {k: (v[0], v[1]) for k, v in data["ratios"].items()})


def _ratio_key(numerator: str, denominator: str | None) -> str:
    return f"{numerator}/{denominator or 'player'}"


@dataclass(frozen=True)
class ArmOutcome:
    """What the log holds about one arm's lists: its per-player sums, and the median of the minutes
    of continuous play after each of its clicks (None without clicks)."""

    arm: str
    version_id: int | None
    weight: int
    sums: PlayerSums | SummedSums  # SummedSums: a frozen experiment's
    median_click_minutes: float | None = None

    @property
    def players(self) -> int:
        return self.sums.players

    # The arm's totals over its players.
    lists = property(lambda self: self.sums.total("lists"))
    suppressed = property(lambda self: self.sums.total("suppressed"))
    reality_checks = property(lambda self: self.sums.total("reality_checks"))
    items = property(lambda self: self.sums.total("items"))
    impressions = property(lambda self: self.sums.total("impressions"))
    clicks = property(lambda self: self.sums.total("clicks"))
    plays = property(lambda self: self.sums.total("plays"))
    dismissals = property(lambda self: self.sums.total("dismissals"))
    long_clicks = property(lambda self: self.sums.total("long_clicks"))


@dataclass(frozen=True)
class Estimate:
    """A ratio of one arm, and its difference against the control (``arm - control``), with 95 %
    intervals (delta method over players) and the difference's two-sided p-value."""

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
    """``sum(numerator) / sum(denominator)`` over an arm's players (``denominator`` None: per player)."""

    key: str
    label: str
    unit: str  # "%" for rates (shown x100), "min", "/player"
    higher_is_better: bool
    numerator: str
    denominator: str | None
    guardrail: bool = False


METRICS = (
    Metric("click_rate", "clicks / impression", "%", True, "clicks", "impressions"),
    Metric("play_rate", "plays / impression", "%", True, "plays", "impressions"),
    Metric("dismiss_rate", "dismissals / impression", "%", False, "dismissals", "impressions"),
    Metric("minutes_per_click", "minutes played / click", "min", True, "click_minutes", "clicks"),
)
GUARDRAILS = (
    Metric("suppressed_share", "lists suppressed by protection / list", "%", False, "suppressed", "lists", True),
    Metric("reality_checks_per_player", "reality checks / player", "/player", False, "reality_checks", None, True),
    Metric("long_play_share", "clicks followed by continuous play past the session threshold / click", "%", False,
           "long_clicks", "clicks", True),
)
"""Protection guardrails: a candidate worse on one (interval clear of zero) is flagged, even where
its clicks win, and is not promoted without ``force``."""
ALL_METRICS = METRICS + GUARDRAILS
PRIMARY = METRICS[0]
"""The metric the sample is sized for (``min_effect``)."""


def ratio(numerator: np.ndarray, denominator: np.ndarray | None) -> tuple[float | None, float | None]:
    """``sum(x) / sum(y)`` over players and its variance by the delta method (Deng et al. 2018).

    With ``R = sum(x) / sum(y)`` and ``n`` players, ``Var(R) ~ Var(x - R y) / (n mean(y)^2)``: the
    players' residuals, not their items, carry the noise, so a few heavy players widen the interval
    as they should. ``denominator`` None: a mean per player. Returns ``(None, None)`` without
    players or with ``sum(y) == 0`` (no data), and a variance of None for a single player.
    """
    n = numerator.size
    y = np.ones(n) if denominator is None else denominator
    total = float(y.sum())
    if n == 0 or total <= 0:
        return None, None
    value = float(numerator.sum()) / total
    if n < 2:
        return value, None
    residual = numerator - value * y  # sums to zero: its second moment is its variance
    mean_y = total / n
    return value, float(residual @ residual) / (n - 1) / n / mean_y**2


def estimate(metric: Metric, sums: PlayerSums | SummedSums, control: PlayerSums | SummedSums | None) -> Estimate:
    """``metric`` of one arm with its interval; against ``control``, the difference, its interval
    (the arms are independent: variances add) and the p-value of a two-sided z test."""
    value, variance = sums.ratio(metric.numerator, metric.denominator)
    if value is None:
        return Estimate(None, None, None)
    low, high = _interval(value, variance)
    if control is None:
        return Estimate(value, low, high)
    base, base_variance = control.ratio(metric.numerator, metric.denominator)
    if base is None:
        return Estimate(value, low, high)
    diff = value - base
    if variance is None or base_variance is None:
        return Estimate(value, low, high, diff)
    se = math.sqrt(variance + base_variance)
    diff_low, diff_high = _interval(diff, variance + base_variance)
    # A zero standard error: both arms are constant (0 dismissals everywhere): no noise, no doubt.
    p = math.erfc(abs(diff) / se / math.sqrt(2)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return Estimate(value, low, high, diff, diff_low, diff_high, p)


def _interval(value: float, variance: float | None) -> tuple[float | None, float | None]:
    if variance is None:
        return None, None
    half = Z * math.sqrt(variance)
    return value - half, value + half


@dataclass(frozen=True)
class SamplePlan:
    """Whether an arm's comparison with the control has the sample it was sized for.

    The sample is reached when the standard error of the difference in clicks per impression is at
    most ``min_effect x control rate / (z_0.975 + z_0.8)``: a true lift of ``min_effect`` is then
    found with 80 % power at 95 %. ``players_needed`` (both arms) scales today's players by the
    ratio of the variances; None before both arms have impressions.
    """

    min_effect: float
    players: int
    players_needed: int | None
    reached: bool

    def words(self) -> str:
        sized = f"sized for a {self.min_effect:.0%} lift in clicks per impression at 80 % power"
        if self.reached:
            return f"sample reached: {self.players:,} players ({sized})"
        needed = "an unknown number (no impressions yet)" if self.players_needed is None else \
            f"about {self.players_needed:,}"
        return f"sample not reached: {self.players:,} of {needed} players ({sized}); no verdict before"


def sample_plan(min_effect: float, sums: PlayerSums | SummedSums, control: PlayerSums | SummedSums) -> SamplePlan:
    players = sums.players + control.players
    value, variance = sums.ratio("clicks", "impressions")
    base, base_variance = control.ratio("clicks", "impressions")
    if value is None or base is None or variance is None or base_variance is None or base == 0:
        return SamplePlan(min_effect, players, None, False)
    target = min_effect * base / (Z + Z_POWER)
    se2 = variance + base_variance
    needed = max(players, math.ceil(players * se2 / target**2))
    return SamplePlan(min_effect, players, needed, se2 <= target**2)


@dataclass(frozen=True)
class ArmResult:
    outcome: ArmOutcome
    is_control: bool
    estimates: dict[str, Estimate] = field(default_factory=dict)
    sample: SamplePlan | None = None  # None for the control

    def verdict(self, metric: Metric) -> str:
        """``better``, ``worse`` or ``no difference`` than the control at 95 %; ``no data`` without an
        interval; ``too early`` for an outcome metric before the sample is reached (a guardrail's
        verdict is never held back: harm is shown as soon as the data show it)."""
        estimate = self.estimates[metric.key]
        if self.is_control:
            return "control"
        if estimate.diff_low is None:
            return "no data"
        if not metric.guardrail and self.sample is not None and not self.sample.reached:
            return "too early"
        if not estimate.significant:
            return "no difference"
        return "better" if (estimate.diff > 0) == metric.higher_is_better else "worse"

    def guardrail_flags(self) -> list[str]:
        """One sentence per guardrail this arm is worse on than the control (interval clear of zero)."""
        flags = []
        for metric in GUARDRAILS:
            if self.verdict(metric) == "worse":
                e = self.estimates[metric.key]
                flags.append(f"{self.outcome.arm} is worse than the control on a protection guardrail: "
                             f"{metric.label} {interval(e, metric, diff=True)}")
        return flags


def results(outcomes: list[ArmOutcome], min_effect: float = DEFAULT_MIN_EFFECT) -> list[ArmResult]:
    """Each arm's metrics and guardrails with 95 % intervals; every arm after the first against the
    first, with its sample plan."""
    if not outcomes:
        return []
    control = outcomes[0]
    out = []
    for position, arm in enumerate(outcomes):
        base = None if position == 0 else control.sums
        estimates = {m.key: estimate(m, arm.sums, base) for m in ALL_METRICS}
        plan = None if base is None else sample_plan(min_effect, arm.sums, base)
        out.append(ArmResult(arm, position == 0, estimates, plan))
    return out


def shown(x: float | None, unit: str, *, signed: bool = False) -> str:
    """A value as the report and the dashboard print it: rates in percent (points for a difference)."""
    if x is None:
        return "-"
    value = x * 100 if unit == "%" else x
    digits = 3 if unit == "/player" else 2
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def unit_words(metric: Metric, *, diff: bool = False) -> str:
    return "pp" if diff and metric.unit == "%" else metric.unit


def interval(estimate: Estimate, metric: Metric, *, diff: bool = False) -> str:
    """``12.30 % [10.10, 14.50]`` or, for a difference, ``+2.10 pp [+0.30, +3.90]``."""
    unit = unit_words(metric, diff=diff)
    value, low, high = (estimate.diff, estimate.diff_low, estimate.diff_high) if diff else (
        estimate.value, estimate.low, estimate.high)
    if value is None:
        return "-"
    text = f"{shown(value, metric.unit, signed=diff)} {unit}"
    if low is not None:
        text += f" [{shown(low, metric.unit, signed=diff)}, {shown(high, metric.unit, signed=diff)}]"
    return text
