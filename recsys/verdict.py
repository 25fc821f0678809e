"""The verdict of a model version against its baselines, in words, for the run report and ``recsys demo``.

Built from a version's flat metrics dict (``model_versions.metrics``): ``hr@10`` / ``ndcg@10`` of the
model, ``<baseline>_hr@10`` / ``<baseline>_ndcg@10`` of each baseline measured on the same holdout
cases, and ``gate`` (``passed``, ``reason``) once the quality gate has decided. A baseline whose keys
are missing was not measured for that version (older versions) and is left out of the sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Baselines in the order the sentence names them: (metrics key prefix, name in words).
BASELINES = (("popularity", "popularity"), ("itemknn", "item-kNN"), ("ease", "EASE"))
METRIC = "hr@10"
SECOND_METRIC = "ndcg@10"


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


def verdict(metrics: dict[str, Any], model: str = "neumf") -> Verdict:
    """The verdict of a version with these ``metrics`` (a ``model_versions.metrics`` dict).

    >>> v = verdict({"hr@10": 0.74, "popularity_hr@10": 0.56, "gate": {"passed": True, "reason": "ok"}})
    >>> v.baseline_sentence()
    'NeuMF (HR@10 0.740) beats popularity by +0.180 HR@10.'
    """
    hr, ndcg = _number(metrics.get(METRIC)), _number(metrics.get(SECOND_METRIC))
    comparisons = []
    for prefix, name in BASELINES:
        base_hr = _number(metrics.get(f"{prefix}_{METRIC}"))
        if hr is None or base_hr is None:
            continue
        base_ndcg = _number(metrics.get(f"{prefix}_{SECOND_METRIC}"))
        delta_ndcg = None if ndcg is None or base_ndcg is None else ndcg - base_ndcg
        comparisons.append(Comparison(name, hr, base_hr, hr - base_hr, delta_ndcg))
    gate = metrics.get("gate") or {}
    passed = gate.get("passed")
    return Verdict(
        model=MODEL_NAMES.get(model, model),
        hr=hr,
        ndcg=ndcg,
        comparisons=tuple(comparisons),
        gate_passed=None if passed is None else bool(passed),
        gate_reason=str(gate.get("reason") or ""),
    )


MODEL_NAMES = {"neumf": "NeuMF", "gmf": "GMF", "mlp": "MLP"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
