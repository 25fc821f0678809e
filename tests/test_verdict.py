"""The verdict against the baselines, from known metrics dicts."""

from __future__ import annotations

import pytest

from recsys.verdict import verdict

ALL = {
    "hr@10": 0.74, "ndcg@10": 0.51,
    "popularity_hr@10": 0.56, "popularity_ndcg@10": 0.40,
    "itemknn_hr@10": 0.70, "itemknn_ndcg@10": 0.50,
    "ease_hr@10": 0.76, "ease_ndcg@10": 0.53,
    "gate": {"passed": True, "reason": "HR@10 0.740 is above the floor 0.3 and no version was active"},
}


def test_every_baseline_is_named_with_its_margin_winners_first():
    v = verdict(ALL)
    assert v.baseline_sentence() == (
        "NeuMF (HR@10 0.740) beats popularity by +0.180 HR@10 (+0.110 NDCG@10) and item-kNN by +0.040 HR@10 "
        "(+0.010 NDCG@10) and does not beat EASE by -0.020 HR@10 (-0.020 NDCG@10)."
    )
    assert [c.beats for c in v.comparisons] == [True, True, False]
    assert not v.beats_all


def test_gate_decision_and_reason():
    assert verdict(ALL).gate_sentence() == (
        "The quality gate passed it: HR@10 0.740 is above the floor 0.3 and no version was active."
    )
    refused = verdict({**ALL, "gate": {"passed": False, "reason": "HR@10 0.210 is below the floor 0.3"}})
    assert refused.gate_sentence() == "The quality gate refused it (not activated): HR@10 0.210 is below the floor 0.3."
    assert verdict({"hr@10": 0.5}).gate_sentence() == "The quality gate has not decided on this version."


def test_a_missing_baseline_is_left_out_so_older_versions_still_render():
    old = {"hr@10": 0.552, "ndcg@10": 0.30, "popularity_hr@10": 0.562, "popularity_ndcg@10": 0.31}
    v = verdict(old)
    assert [c.baseline for c in v.comparisons] == ["popularity"]
    assert v.baseline_sentence() == "NeuMF (HR@10 0.552) does not beat popularity by -0.010 HR@10 (-0.010 NDCG@10)."
    assert v.comparisons[0].delta_hr == pytest.approx(-0.010)


def test_three_winners_are_listed_with_commas_and_a_model_name():
    v = verdict({"hr@10": 0.8, "popularity_hr@10": 0.5, "itemknn_hr@10": 0.6, "ease_hr@10": 0.7}, model="gmf")
    assert v.beats_all
    assert v.baseline_sentence() == (
        "GMF (HR@10 0.800) beats popularity by +0.300 HR@10, item-kNN by +0.200 HR@10 and EASE by +0.100 HR@10."
    )


def test_no_baseline_or_no_metric_says_so():
    assert verdict({"hr@10": 0.5}).baseline_sentence() == (
        "NeuMF: HR@10 0.500; no baseline was measured for this version."
    )
    assert verdict({}).baseline_sentence() == "NeuMF has no HR@10 measured."
    assert not verdict({"hr@10": 0.5}).beats_all
