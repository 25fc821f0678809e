"""The verdict of a model version against its baselines, in words, for the run report and ``recsys demo``.

Built from a version's :class:`~recsys.metrics.VersionMetrics` (or its stored dict): the model's
HR@10 / NDCG@10, each baseline's measured on the same holdout cases (``recsys.metrics.BASELINES``, in
that order), and the gate's decision once it has decided. A baseline an older version did not
measure is left out of the sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recsys.metrics import BASELINES, VersionMetrics


@dataclass(frozen=True)
class Comparison:
    """The model against one baseline on the same holdout cases: ``delta`` = model - baseline."""

    baseline: str
    model_hr: float
    baseline_hr: float
    delta_hr: float
    delta_ndcg: float | None

    @property
    def beats(self) -> bool:
        return self.delta_hr > 0

    def words(self) -> str:
        """``popularity by +0.180 HR@10`` (``+0.050 NDCG@10`` appended when measured)."""
        ndcg = "" if self.delta_ndcg is None else f" ({self.delta_ndcg:+.3f} NDCG@10)"
        return f"{self.baseline} by {self.delta_hr:+.3f} HR@10{ndcg}"


@dataclass(frozen=True)
class Verdict:
    """What a version's metrics say, as parts the report colours and the demo prints.

    Attributes
    ----------
    model : str
        The model's name in the sentence (``NeuMF``).
    hr, ndcg : float or None
        The model's HR@10 / NDCG@10 (None: not measured).
    comparisons : tuple of Comparison
        One per measured baseline, in ``BASELINES`` order.
    gate_passed : bool or None
        The quality gate's decision (None: the gate has not decided).
    gate_reason : str
        Why, as the gate wrote it.
    """

    model: str
    hr: float | None
    ndcg: float | None
    comparisons: tuple[Comparison, ...]
    gate_passed: bool | None
    gate_reason: str

    @property
    def beats_all(self) -> bool:
        """The model's HR@10 is above every measured baseline's (False when none was measured)."""
        return bool(self.comparisons) and all(c.beats for c in self.comparisons)

    def baseline_sentence(self) -> str:
        """``NeuMF beats popularity by +0.180 HR@10, item-kNN by +0.020 HR@10``, or says where it loses."""
        if self.hr is None:
            return f"{self.model} has no HR@10 measured."
        if not self.comparisons:
            return f"{self.model}: HR@10 {self.hr:.3f}; no baseline was measured for this version."
        won = [c for c in self.comparisons if c.beats]
        lost = [c for c in self.comparisons if not c.beats]
        parts = []
        if won:
            parts.append(f"beats {_join([c.words() for c in won])}")
        if lost:
            parts.append(f"does not beat {_join([c.words() for c in lost])}")
        return f"{self.model} (HR@10 {self.hr:.3f}) {' and '.join(parts)}."

    def gate_sentence(self) -> str:
        """``The quality gate activated it: <reason>.`` or ``... refused it: <reason>.``"""
        if self.gate_passed is None:
            return "The quality gate has not decided on this version."
        decision = "passed it" if self.gate_passed else "refused it (not activated)"
        reason = self.gate_reason.rstrip(".")
        return f"The quality gate {decision}: {reason}." if reason else f"The quality gate {decision}."

    def lines(self) -> list[str]:
        return [self.baseline_sentence(), self.gate_sentence()]


def verdict(metrics: VersionMetrics | Mapping[str, Any], model: str = "neumf") -> Verdict:
    """The verdict of a version with these ``metrics`` (typed, or a ``model_versions.metrics`` dict).

    >>> v = verdict({"hr@10": 0.74, "popularity_hr@10": 0.56, "gate": {"passed": True, "reason": "ok"}})
    >>> v.baseline_sentence()
    'NeuMF (HR@10 0.740) beats popularity by +0.180 HR@10.'
    """
    if not isinstance(metrics, VersionMetrics):
        metrics = VersionMetrics.from_json(metrics)
    hr, ndcg = metrics.model.hr, metrics.model.ndcg
    comparisons = []
    for baseline in BASELINES:
        figures = metrics.baseline(baseline)
        if hr is None or figures is None or figures.hr is None:
            continue
        delta_ndcg = None if ndcg is None or figures.ndcg is None else ndcg - figures.ndcg
        comparisons.append(Comparison(baseline.name, hr, figures.hr, hr - figures.hr, delta_ndcg))
    gate = metrics.gate
    return Verdict(
        model=MODEL_NAMES.get(model, model),
        hr=hr,
        ndcg=ndcg,
        comparisons=tuple(comparisons),
        gate_passed=None if gate is None else gate.passed,
        gate_reason="" if gate is None else gate.reason,
    )


MODEL_NAMES = {"neumf": "NeuMF", "gmf": "GMF", "mlp": "MLP"}


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
