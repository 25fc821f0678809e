"""The quality gate: whether a trained version may become active, and why (a :class:`GateDecision`).

In order: an absolute floor on HR@10; not below the baselines on the same cases
(:func:`baseline_refusal`); then no more than ``max_drop`` below the active version on this run's
holdout cases, scored through the keys both versions know.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from recsys.db import versions
from recsys.db.training_data import InteractionData
from recsys.holdout import Holdout
from recsys.metrics import IALS, ITEMKNN, POPULARITY, GateDecision, VersionMetrics
from recsys.settings import Gate


def quality_gate(
    engine, gate: Gate, model, data: InteractionData, holdout: Holdout, negatives: np.ndarray, metrics: VersionMetrics
) -> GateDecision:
    """The gate's decision on ``model``, whose ``metrics`` were measured on ``holdout``'s test cases
    (``negatives``: their sampled negatives, shape (n_test, k))."""
    from recsys.evaluation import evaluate_sampled
    from recsys.version_scorer import VersionScorer

    hit_ratio = metrics.model.hr
    decision = GateDecision(
        passed=False,
        reason="",
        hr=hit_ratio,
        min_hr=gate.min_hr,
        max_drop=gate.max_drop,
        popularity_margin=gate.popularity_margin,
        itemknn_margin=gate.itemknn_margin if gate.beat_itemknn else None,
        ials_margin=gate.ials_margin if gate.beat_ials and IALS.key in metrics.baselines else None,
    )

    def decide(passed: bool, reason: str, **compared) -> GateDecision:
        return dataclasses.replace(decision, passed=passed, reason=reason, **compared)

    if hit_ratio is None or hit_ratio < gate.min_hr:
        return decide(False, f"HR@10 {hit_ratio or 0:.3f} is below the floor {gate.min_hr}")
    refusal = baseline_refusal(gate, metrics)
    if refusal is not None:
        return decide(False, refusal)
    active = versions.active_version(engine)
    if active is None:
        return decide(True, "no active version to compare with")
    previous = VersionScorer.load(engine, active.id, data, holdout.test_player_idx)
    known = previous.knows(holdout.test_player_idx, holdout.test_slot_idx)
    compared = {"compared_with": active.id, "common_cases": int(known.sum())}
    if not known.any():
        return decide(True, f"version {active.id} knows none of the holdout players", **compared)
    cases = (holdout.test_player_idx[known], holdout.test_slot_idx[known], negatives[known])
    new_hr = evaluate_sampled(model, *cases).hit_ratio
    old_hr = evaluate_sampled(previous, *cases).hit_ratio
    compared.update(new_hr_common=new_hr, active_hr_common=old_hr)
    if new_hr < old_hr - gate.max_drop:
        return decide(False, f"HR@10 {new_hr:.3f} vs {old_hr:.3f} of version {active.id} on the same cases", **compared)
    return decide(True, f"HR@10 {new_hr:.3f} vs {old_hr:.3f} of version {active.id}", **compared)


def baseline_refusal(gate: Gate, metrics: VersionMetrics) -> str | None:
    """Why the gate refuses a version whose HR@10 loses to a baseline's on the same cases, or None.

    Popularity always counts (``popularity_margin``); item-kNN with ``beat_itemknn``
    (``itemknn_margin``); iALS with ``beat_ials`` (``ials_margin``) where the run measured it. A
    version exactly level with a baseline passes.
    """
    hit_ratio = metrics.model.hr or 0.0
    checks = [(POPULARITY, gate.popularity_margin)]
    if gate.beat_itemknn:
        checks.append((ITEMKNN, gate.itemknn_margin))
    if gate.beat_ials:
        checks.append((IALS, gate.ials_margin))
    for baseline, margin in checks:
        figures = metrics.baseline(baseline)
        if figures is None or figures.hr is None:
            continue
        if hit_ratio < figures.hr - margin:
            return (
                f"HR@10 {hit_ratio:.3f} is below {baseline.name}'s {figures.hr:.3f} on the same cases"
                + (f" by more than the margin {margin:g}" if margin else "")
            )
    return None
