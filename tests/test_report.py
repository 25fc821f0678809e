"""The run report: the verdict on top, colours for the model's own changes only, stages in words,
and the slot-neighbour purity with known answers."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import numpy as np

from recsys.metrics import GateDecision, VersionMetrics
from recsys.ncf.history import EpochStats
from recsys.ncf.plots import plot_training_curve
from recsys.report import (
    NEIGHBOURS_FILE,
    RunFacts,
    SlotMap,
    VersionFacts,
    _times,
    nearest_neighbours,
    neighbour_purity,
    write_report,
)

NEW = {
    "hr@10": 0.74, "ndcg@10": 0.51, "popularity_hr@10": 0.60, "popularity_ndcg@10": 0.45,
    "itemknn_hr@10": 0.76, "itemknn_ndcg@10": 0.50, "kept_epochs": {"gmf": 3, "mlp": 1}, "test_players": 500,
}
OLD = {"hr@10": 0.70, "ndcg@10": 0.52, "popularity_hr@10": 0.55, "popularity_ndcg@10": 0.40, "test_players": 480}
GATE = {"passed": True, "reason": "HR@10 0.740 is at most 0.02 below the active version's 0.700 on 500 cases"}
STAGES = {
    "consolidate": {"mode": "incremental", "players": 2000, "interactions": 45000, "first_day": date(2026, 1, 1),
                    "last_day": date(2026, 1, 30), "seconds": 1.5},
    "train": {"version": 2, "activated": True, "previous_version": 1, "pairs": 40000, "players": 2000, "slots": 100,
              "epochs": 12, "hr@10": 0.74, "ndcg@10": 0.51, "gate": GATE["reason"], "load_seconds": 0.4,
              "train_seconds": 20.0, "seconds": 25.0},
    "report": {"files": 3, "seconds": 0.5},
}


def _clustered_slots(n_per: int = 30, clusters: int = 4, seed: int = 0) -> SlotMap:
    """Slots in ``clusters`` tight, well separated groups: themes follow the groups, providers do not."""
    rng = np.random.default_rng(seed)
    centres = np.eye(clusters, 8) * 10
    vectors = np.concatenate([centres[c] + rng.normal(scale=0.1, size=(n_per, 8)) for c in range(clusters)])
    themes = np.repeat([f"theme{c}" for c in range(clusters)], n_per)
    providers = np.array([f"p{i % 3}" for i in range(n_per * clusters)])
    return SlotMap(vectors=vectors, providers=providers, themes=themes, top_providers=2)


def _report(tmp_path, previous=True, status="succeeded", gate=GATE, curve=None, new=NEW, stages=STAGES):
    run = RunFacts(
        run_id=7, run_day=date(2026, 1, 31), status=status, started_at=datetime(2026, 1, 31, 3, tzinfo=UTC),
        version=VersionFacts(2, "active", "neumf", VersionMetrics.from_json(new), date(2026, 1, 1),
                             date(2026, 1, 30), curve),
        previous=VersionFacts(1, "retired", "neumf", VersionMetrics.from_json(OLD)) if previous else None,
        volumes={"play sessions": 50000}, stages=stages, gate=GateDecision.from_json(gate),
    )
    return write_report(tmp_path, run, _clustered_slots()).read_text()


def test_the_verdict_comes_first_and_colours_the_model_side(tmp_path):
    page = _report(tmp_path)
    verdict = page[page.index("<h2>Verdict</h2>"):page.index("<h2>Metrics</h2>")]
    assert page.index("<h2>Verdict</h2>") < page.index("<h2>Metrics</h2>") < page.index("<h2>Stages</h2>")
    assert ('popularity by <span class="better">+0.140 HR@10</span> (<span class="better">+0.060 NDCG@10</span>)'
            in verdict)
    # Each figure by its own sign: behind item-kNN on HR@10 (red), ahead on NDCG@10 (green).
    assert ('item-kNN by <span class="worse">-0.020 HR@10</span> (<span class="better">+0.010 NDCG@10</span>)'
            in verdict)
    assert "EASE" not in verdict  # not measured for this version
    assert "The quality gate passed it: HR@10 0.740 is at most 0.02 below" in verdict


def test_a_refused_version_says_so_with_the_gate_reason(tmp_path):
    page = _report(tmp_path, status="refused", gate={"passed": False, "reason": "HR@10 0.740 is below the floor 0.8"})
    assert "refused by the quality gate (not activated)" in page
    assert "The quality gate refused it (not activated): HR@10 0.740 is below the floor 0.8." in page
    assert 'class="verdict refused"' in page


def test_only_the_models_own_changes_are_coloured(tmp_path):
    page = _report(tmp_path)
    rows = dict(re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", page))
    assert '<span class="better">+0.040</span>' in rows["HR@10 (99 sampled negatives)"]
    assert '<span class="worse">-0.010</span>' in rows["NDCG@10 (99 sampled negatives)"]
    # The baseline improved by +0.05: shown, not coloured as if the model had gained it.
    assert '<span class="muted">+0.050</span>' in rows["popularity baseline HR@10"]
    assert '<span class="muted">+20</span>' in rows["holdout players (test half)"]


def test_the_stages_are_a_table_in_words(tmp_path):
    page = _report(tmp_path)
    stages = page[page.index("<h2>Stages</h2>"):page.index("<h2>Data</h2>")]
    assert "<th>stage</th><th>seconds</th><th class=\"text\">what happened</th>" in stages
    assert ("incremental consolidation: 45,000 interactions of 2,000 players over days 2026-01-01 .. 2026-01-30"
            in stages)
    assert ("version 2 from 40,000 training pairs (2,000 players × 100 slots), 12 epochs: HR@10 0.740, "
            "NDCG@10 0.510; activated (version 1 was active)") in stages
    assert "↳ fit</span></td><td><span class=\"muted\">20.0</span>" in stages
    assert "3 files written" in stages
    assert "load_seconds" not in stages and "{" not in stages


def test_a_stage_figure_with_nothing_in_it_is_left_out(tmp_path):
    retention = {"partitions_created": 0, "months_dropped": [], "default_rows_deleted": 0, "seconds": 0.1}
    dropped = {**retention, "months_dropped": ["2025-10"]}
    page = _report(tmp_path, stages={**STAGES, "retention": retention})
    stages = page[page.index("<h2>Stages</h2>"):page.index("<h2>Data</h2>")]
    assert "partitions created: 0; default rows deleted: 0" in stages and "months dropped" not in stages
    page = _report(tmp_path, stages={**STAGES, "retention": dropped})
    assert "partitions created: 0; months dropped: 2025-10; default rows deleted: 0" in page


def test_the_trigger_replay_is_a_table_with_the_best_policy_in_bold(tmp_path):
    assert "The trigger's list, replayed" not in _report(tmp_path)  # not measured for this version
    replay = {"replay_sessions": 1234, "replay_hours": 24, "replay_served_hr@10": 0.31, "replay_served_ndcg@10": 0.2,
              "replay_faiss_hr@10": 0.35, "replay_faiss_ndcg@10": 0.22, "replay_popularity_hr@10": 0.1,
              "replay_popularity_ndcg@10": 0.05}
    page = _report(tmp_path, new={**NEW, **replay})
    section = page[page.index("The trigger's list, replayed"):page.index("<h2>Stages</h2>")]
    assert "For each of 1,234 long sessions" in section and "in the next 24 hours" in section
    rows = re.findall(r"<tr><td>([^<]+)</td><td>(.*?)</td><td>(.*?)</td></tr>", section)
    assert rows == [
        ("served policy (exploration on, mean over draws)", "0.310", "0.200"),
        ("FAISS neighbourhood of the context slot", "<strong>0.350</strong>", "0.220"),
        ("popularity", "0.100", "0.050"),
    ]


def test_the_curve_is_copied_and_its_caption_names_the_kept_epochs(tmp_path):
    curve = plot_training_curve([EpochStats("gmf", 1, 1, 0.5, 1.0, 100, 0.4)], tmp_path / "curve.png")
    page = _report(tmp_path / "report", previous=False, curve=str(curve))
    assert '<img src="training-curve.png"' in page
    assert (tmp_path / "report" / "training-curve.png").read_bytes() == curve.read_bytes()
    assert "Kept (best HR@10 on the validation players, starred): gmf epoch 3, mlp epoch 1." in page
    assert "No version was active before this run." in page


def test_neighbour_purity_tables_and_picture(tmp_path):
    page = _report(tmp_path)
    assert (tmp_path / NEIGHBOURS_FILE).read_bytes().startswith(b"\x89PNG")
    assert f'<img src="{NEIGHBOURS_FILE}"' in page
    # 4 themes of 30 well separated slots: all 10 neighbours share the theme; chance is 29/119.
    assert "<td>theme0</td><td>30</td><td>1.00</td><td>0.24</td><td>4.1×</td>" in page
    assert "<td>all slots</td><td>120</td><td>1.00</td><td>0.24</td><td>4.1×</td>" in page


def test_nearest_neighbours_excludes_the_slot_itself_nearest_first():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.4]])
    assert nearest_neighbours(vectors, 2).tolist() == [[1, 3], [0, 3], [3, 1], [1, 0]]


def test_purity_against_chance_with_pooled_others():
    neighbours = np.array([[1], [0], [3], [2], [0]])
    labels = np.array(["a", "a", "b", "b", "c"])
    rows = {r.label: r for r in neighbour_purity(neighbours, labels, top=1)}
    assert list(rows) == ["a", "2 others (pooled)", "all slots"]
    assert rows["a"].purity == 1.0 and rows["a"].chance == 0.25 and rows["a"].lift == 4.0
    # b's slots point at each other (same), c's only slot points at an "a" (not same).
    assert rows["2 others (pooled)"].purity == 2 / 3
    assert rows["all slots"].purity == 0.8


def test_a_label_with_one_slot_has_no_chance_and_shows_a_dash():
    rows = {r.label: r for r in neighbour_purity(np.array([[1], [0], [0]]), np.array(["a", "a", "solo"]))}
    assert rows["solo"].chance == 0.0 and rows["solo"].purity == 0.0
    assert _times(rows["solo"].lift) == "—" and _times(rows["a"].lift) == "2.0×"
