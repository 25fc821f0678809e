"""A version's metrics read back typed, whatever their age, and written with the documented flat keys."""

from recsys.metrics import (
    BASELINES,
    BaselineFigures,
    Figures,
    GateDecision,
    ReplayFigures,
    VersionMetrics,
)

# What a version trained before iALS and the replay stored (issue 14's worker), forced activation included.
OLD = {
    "hr@10": 0.74, "ndcg@10": 0.51, "full_hr@10": 0.2, "full_ndcg@10": 0.1,
    "popularity_hr@10": 0.6, "popularity_ndcg@10": 0.45, "itemknn_hr@10": 0.7, "itemknn_ndcg@10": 0.5,
    "ease_hr@10": 0.72, "ease_ndcg@10": 0.49, "ease_lambda": 500.0, "ease_lambda_grid": {"500": 0.71, "1000": 0.7},
    "test_players": 500, "validation_players": 499, "kept_epochs": {"gmf": 3}, "train_pairs": 4000, "players": 1000,
    "slots": 150, "epochs": 8, "train_seconds": 4.2, "train_processes": 1, "baseline_seconds": 1.5,
    "gate": {"passed": False, "reason": "HR@10 0.740 is below the floor 0.8", "min_hr": 0.8, "max_drop": 0.02,
             "popularity_margin": 0.0, "itemknn_margin": None, "hr@10": 0.74},
    "forced_activation": {"at": "2026-12-01T00:00:00+00:00", "gate_reason": "below the floor"},
}


def test_an_old_version_reads_typed_and_writes_back_the_same_dict():
    m = VersionMetrics.from_json(OLD)
    assert (m.model, m.full) == (Figures(0.74, 0.51), Figures(0.2, 0.1))
    assert list(m.baselines) == ["popularity", "itemknn", "ease"]  # no iALS then: absent, not zero
    assert m.baselines["ease"] == BaselineFigures(0.72, 0.49, {"lambda": 500.0}, {"500": 0.71, "1000": 0.7})
    assert m.gate == GateDecision(passed=False, reason="HR@10 0.740 is below the floor 0.8", hr=0.74, min_hr=0.8,
                                  max_drop=0.02, popularity_margin=0.0)
    assert (m.kept_epochs, m.test_players, m.train_seconds, m.replay) == ({"gmf": 3}, 500, 4.2, None)
    assert m.extra == {"forced_activation": OLD["forced_activation"]}
    assert m.to_json() == OLD


def test_the_oldest_versions_and_an_empty_row_read_as_not_measured():
    m = VersionMetrics.from_json({"hr@10": 0.5})
    assert (m.model.hr, m.model.ndcg, m.baselines, m.gate, m.test_players) == (0.5, None, {}, None, None)
    empty = VersionMetrics.from_json(None)
    assert empty == VersionMetrics() and empty.to_json() == {"kept_epochs": None}
    # A gate that has not decided (no "passed") is no decision; a non-number is no figure.
    assert VersionMetrics.from_json({"gate": {"reason": "?"}, "hr@10": "0.5"}).gate is None
    assert VersionMetrics.from_json({"hr@10": "0.5"}).model.hr is None


def test_a_new_version_round_trips_with_ials_and_the_replay():
    m = VersionMetrics(
        model=Figures(0.8, 0.6),
        baselines={b.key: BaselineFigures(0.5, 0.4) for b in BASELINES}
        | {"ials": BaselineFigures(0.7, 0.5, {"factors": 64, "reg": 0.1}, {"64/0.1": 0.69})},
        replay=ReplayFigures(120, 24, {"served": Figures(0.3, 0.2), "faiss": Figures(0.25, 0.18)}),
        gate=GateDecision(passed=True, reason="ok", hr=0.8, ials_margin=0.0, compared_with=3, common_cases=90,
                          new_hr_common=0.8, active_hr_common=0.79),
    )
    stored = m.to_json()
    assert (stored["ials_hr@10"], stored["ials_factors"], stored["ials_reg"]) == (0.7, 64, 0.1)
    replay = (stored["replay_sessions"], stored["replay_served_hr@10"], stored["replay_faiss_ndcg@10"])
    assert replay == (120, 0.3, 0.18)
    assert stored["gate"]["new_hr@10_common"] == 0.8 and stored["gate"]["compared_with"] == 3
    assert VersionMetrics.from_json(stored) == m
