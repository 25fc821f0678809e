"""A model version's figures as types: the model's, each baseline's, the trigger replay's and the gate's.

``model_versions.metrics`` is JSON that analysts query (``metrics ->> 'hr@10'``), the API serves
(``GET /v1/models``) and docs/training.md lists, so its flat keys stay as they were
(``hr@10``, ``popularity_hr@10``, ``ease_lambda``, ``gate``, ...). This module is the one place that
names them: code reads a version's metrics with :meth:`VersionMetrics.from_json` and writes them
with :meth:`VersionMetrics.to_json`. A key an older version lacks reads as ``None`` (that figure was
not measured then); a key this module does not know is kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HR = "hr@10"
NDCG = "ndcg@10"


@dataclass(frozen=True)
class Baseline:
    """One baseline of every run: ``key`` prefixes its stored figures (``<key>_hr@10``), ``name`` is
    how the verdict, the report and the dashboard say it; ``params`` are the settings it was fitted
    with (stored as ``<key>_<param>``), ``grid`` the key of its validation HR@10 per setting tried."""

    key: str
    name: str
    params: tuple[str, ...] = ()
    grid: str | None = None


POPULARITY = Baseline("popularity", "popularity")
ITEMKNN = Baseline("itemknn", "item-kNN")
EASE = Baseline("ease", "EASE", params=("lambda",), grid="lambda_grid")
IALS = Baseline("ials", "iALS", params=("factors", "reg"), grid="grid")

# The one list of baselines: what the worker measures, in the order the verdict, the run report,
# the pipeline's train figures and the dashboard show them.
BASELINES: tuple[Baseline, ...] = (POPULARITY, ITEMKNN, EASE, IALS)


@dataclass(frozen=True)
class Figures:
    """HR@10 and NDCG@10 of one model or policy on one set of cases (None: not measured)."""

    hr: float | None = None
    ndcg: float | None = None


@dataclass(frozen=True)
class BaselineFigures:
    """A baseline's figures on the model's test cases, the settings it was fitted with, and its
    validation HR@10 per setting tried (``{"400": 0.61, ...}``; empty when nothing was chosen)."""

    hr: float | None = None
    ndcg: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GateDecision:
    """The quality gate's decision on a version, with the settings it applied and what it compared.

    ``compared_with`` / ``common_cases`` / ``new_hr_common`` / ``active_hr_common`` are set when an
    active version was compared on this run's holdout cases.
    """

    passed: bool
    reason: str
    hr: float | None = None
    min_hr: float | None = None
    max_drop: float | None = None
    popularity_margin: float | None = None
    itemknn_margin: float | None = None
    ials_margin: float | None = None
    compared_with: int | None = None
    common_cases: int | None = None
    new_hr_common: float | None = None
    active_hr_common: float | None = None

    _KEYS = (
        ("hr", HR), ("min_hr", "min_hr"), ("max_drop", "max_drop"), ("popularity_margin", "popularity_margin"),
        ("itemknn_margin", "itemknn_margin"), ("ials_margin", "ials_margin"), ("compared_with", "compared_with"),
        ("common_cases", "common_cases"), ("new_hr_common", "new_hr@10_common"),
        ("active_hr_common", "active_hr@10_common"),
    )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"passed": self.passed, "reason": self.reason}
        for attribute, key in self._KEYS:
            value = getattr(self, attribute)
            if value is not None or attribute in ("itemknn_margin",):
                out[key] = value
        return out

    @classmethod
    def from_json(cls, stored: Mapping[str, Any] | None) -> GateDecision | None:
        """The decision stored under ``gate``; None when the gate has not decided (no ``passed``)."""
        if not isinstance(stored, Mapping) or stored.get("passed") is None:
            return None
        values = {attribute: _number(stored.get(key)) for attribute, key in cls._KEYS}
        for attribute in ("compared_with", "common_cases"):
            values[attribute] = None if values[attribute] is None else int(values[attribute])
        return cls(passed=bool(stored["passed"]), reason=str(stored.get("reason") or ""), **values)


# Policies of the trigger replay (recsys.replay), in the order the report and the dashboard show them.
REPLAY_POLICIES: tuple[tuple[str, str], ...] = (
    ("served", "served policy (exploration on, mean over draws)"),
    ("served_exploit", "served policy, exploration off"),
    ("faiss", "FAISS neighbourhood of the context slot"),
    ("model", "model scores over the unplayed catalogue"),
    ("itemknn", "item-kNN co-occurrence of the context slot"),
    ("popularity", "popularity"),
)


@dataclass(frozen=True)
class ReplayFigures:
    """The trigger's list replayed (recsys.replay): per policy, HR@10 / NDCG@10 against the slots the
    player newly played in the ``hours`` after the crossing, over ``sessions`` long sessions."""

    sessions: int
    hours: int
    policies: dict[str, Figures]


# Counts of the run, stored flat under these keys, read as int (float for the seconds).
_RUN_INTS = ("test_players", "validation_players", "train_pairs", "players", "slots", "epochs", "train_processes")
_RUN_FLOATS = ("train_seconds", "baseline_seconds")


@dataclass(frozen=True)
class VersionMetrics:
    """Everything a training run measured of its version.

    Attributes
    ----------
    model : Figures
        HR@10 / NDCG@10 against 99 sampled negatives on the test half.
    full : Figures
        The same over the full catalogue (at most 2,000 cases).
    baselines : dict of str to BaselineFigures
        By :attr:`Baseline.key`, in ``BASELINES`` order; a baseline an older version did not measure
        is absent.
    replay : ReplayFigures or None
        The trigger replay (None: not run for this version).
    gate : GateDecision or None
        None until the gate has decided.
    kept_epochs : dict of str to int, or None
        Each stage's epoch that early stopping kept.
    test_players ... baseline_seconds : the run's counts and times (None when not recorded).
    extra : dict
        Stored keys this type does not know (``forced_activation``, ...), kept as they are.
    """

    model: Figures = field(default_factory=Figures)
    full: Figures = field(default_factory=Figures)
    baselines: dict[str, BaselineFigures] = field(default_factory=dict)
    replay: ReplayFigures | None = None
    gate: GateDecision | None = None
    kept_epochs: dict[str, int] | None = None
    test_players: int | None = None
    validation_players: int | None = None
    train_pairs: int | None = None
    players: int | None = None
    slots: int | None = None
    epochs: int | None = None
    train_processes: int | None = None
    train_seconds: float | None = None
    baseline_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hr(self) -> float | None:
        return self.model.hr

    @property
    def ndcg(self) -> float | None:
        return self.model.ndcg

    def baseline(self, baseline: Baseline | str) -> BaselineFigures | None:
        return self.baselines.get(baseline if isinstance(baseline, str) else baseline.key)

    def to_json(self) -> dict[str, Any]:
        """The flat dict stored in ``model_versions.metrics`` (keys as documented in docs/training.md)."""
        out: dict[str, Any] = dict(self.extra)
        out.update({HR: self.model.hr, NDCG: self.model.ndcg})
        out.update({f"full_{HR}": self.full.hr, f"full_{NDCG}": self.full.ndcg})
        for spec in BASELINES:
            figures = self.baselines.get(spec.key)
            if figures is None:
                continue
            out[f"{spec.key}_{HR}"] = figures.hr
            out[f"{spec.key}_{NDCG}"] = figures.ndcg
            for param in spec.params:
                out[f"{spec.key}_{param}"] = figures.params.get(param)
            if spec.grid is not None:
                out[f"{spec.key}_{spec.grid}"] = dict(figures.grid)
        if self.replay is not None:
            out["replay_sessions"] = self.replay.sessions
            out["replay_hours"] = self.replay.hours
            for policy, figures in self.replay.policies.items():
                out[f"replay_{policy}_{HR}"] = figures.hr
                out[f"replay_{policy}_{NDCG}"] = figures.ndcg
        out["kept_epochs"] = None if self.kept_epochs is None else dict(self.kept_epochs)
        for name in (*_RUN_INTS, *_RUN_FLOATS):
            out[name] = getattr(self, name)
        if self.gate is not None:
            out["gate"] = self.gate.to_json()
        return {key: value for key, value in out.items() if value is not None or key == "kept_epochs"}

    @classmethod
    def from_json(cls, stored: Mapping[str, Any] | None) -> VersionMetrics:
        """Read a version's stored metrics, of any age: what is missing reads as None."""
        stored = dict(stored or {})
        known = {HR, NDCG, f"full_{HR}", f"full_{NDCG}", "kept_epochs", "gate", "replay_sessions", "replay_hours",
                 *_RUN_INTS, *_RUN_FLOATS}
        baselines: dict[str, BaselineFigures] = {}
        for spec in BASELINES:
            keys = [f"{spec.key}_{HR}", f"{spec.key}_{NDCG}", *(f"{spec.key}_{p}" for p in spec.params)]
            if spec.grid is not None:
                keys.append(f"{spec.key}_{spec.grid}")
            known.update(keys)
            hr = _number(stored.get(f"{spec.key}_{HR}"))
            if hr is None:
                continue
            grid = stored.get(f"{spec.key}_{spec.grid}") if spec.grid is not None else None
            baselines[spec.key] = BaselineFigures(
                hr=hr,
                ndcg=_number(stored.get(f"{spec.key}_{NDCG}")),
                params={p: stored[f"{spec.key}_{p}"] for p in spec.params if stored.get(f"{spec.key}_{p}") is not None},
                grid={str(k): float(v) for k, v in grid.items()} if isinstance(grid, Mapping) else {},
            )
        replay = None
        if stored.get("replay_sessions") is not None:
            policies = {}
            for policy, _ in REPLAY_POLICIES:
                known.update({f"replay_{policy}_{HR}", f"replay_{policy}_{NDCG}"})
                hr = _number(stored.get(f"replay_{policy}_{HR}"))
                if hr is not None:
                    policies[policy] = Figures(hr, _number(stored.get(f"replay_{policy}_{NDCG}")))
            replay = ReplayFigures(int(stored["replay_sessions"]), int(stored.get("replay_hours") or 0), policies)
        kept = stored.get("kept_epochs")
        run = {name: _int(stored.get(name)) for name in _RUN_INTS}
        run.update({name: _number(stored.get(name)) for name in _RUN_FLOATS})
        return cls(
            model=Figures(_number(stored.get(HR)), _number(stored.get(NDCG))),
            full=Figures(_number(stored.get(f"full_{HR}")), _number(stored.get(f"full_{NDCG}"))),
            baselines=baselines,
            replay=replay,
            gate=GateDecision.from_json(stored.get("gate")),
            kept_epochs={str(k): int(v) for k, v in kept.items()} if isinstance(kept, Mapping) else None,
            extra={key: value for key, value in stored.items() if key not in known},
            **run,
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)
