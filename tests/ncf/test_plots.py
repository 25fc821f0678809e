"""The training curve: titled, one panel and epoch axis per stage, kept epochs and the fused model marked."""

from __future__ import annotations

from recsys.ncf.history import EpochStats
from recsys.ncf.plots import best_epochs, plot_training_curve, training_curve_figure

HISTORY = [
    EpochStats("gmf", 1, 3, 0.50, 1.0, 100, 0.40),
    EpochStats("gmf", 2, 3, 0.40, 1.0, 100, 0.55),
    EpochStats("gmf", 3, 3, 0.35, 1.0, 100, 0.55),
    EpochStats("mlp", 1, 2, 0.60, 1.0, 100, 0.45),
    EpochStats("mlp", 2, 2, 0.50, 1.0, 100, 0.42),
]


def test_best_epochs_is_the_first_of_the_best_per_stage():
    assert best_epochs(HISTORY) == {"gmf": 2, "mlp": 1}
    assert best_epochs([EpochStats("neumf", 1, 1, 0.3, 2.0, 100, None)]) == {}


def test_each_stage_has_its_own_epoch_axis_and_the_kept_epoch_is_starred():
    fig = training_curve_figure(HISTORY, fused_hr=0.61)
    assert fig._suptitle.get_text().startswith("Training curve")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "GMF (pre-training)", "MLP (pre-training)", "NeuMF fused\nfrom the kept epochs"
    ]
    assert [ax.get_xlabel() for ax in panels[:2]] == ["gmf epoch", "mlp epoch"]
    # The MLP's first epoch is epoch 1 of its own axis, not 4.
    mlp_loss = panels[1].get_lines()[0]
    assert list(mlp_loss.get_xdata()) == [1, 2]
    stars = [(line.get_xdata()[0], line.get_ydata()[0]) for ax in fig.axes for line in ax.get_lines()
             if line.get_marker() == "*"]
    assert stars == [(2, 0.55), (1, 0.45)]
    fused = [line.get_ydata()[0] for ax in fig.axes for line in ax.get_lines() if line.get_marker() == "D"]
    assert fused == [0.61]


def test_without_the_fused_score_the_figure_says_how_neumf_was_made(tmp_path):
    fig = training_curve_figure(HISTORY)
    assert any("fused from the kept GMF and MLP epochs" in t.get_text() for t in fig.texts)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 2
    path = plot_training_curve(HISTORY, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_trained_neumf_stage_is_its_own_panel_not_a_fused_point():
    history = [*HISTORY, EpochStats("neumf", 1, 1, 0.3, 2.0, 100, None)]
    fig = training_curve_figure(history, fused_hr=0.61)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()][-1] == "NeuMF"
    assert not [line for ax in fig.axes for line in ax.get_lines() if line.get_marker() == "D"]
