"""The training curve figure is written as a PNG."""

from __future__ import annotations

from recsys.ncf.history import EpochStats
from recsys.ncf.plots import plot_training_curve


def test_training_curve_is_a_png(tmp_path) -> None:
    history = [
        EpochStats("gmf", 1, 2, 0.5, 1.0, 100, 0.4),
        EpochStats("gmf", 2, 2, 0.4, 1.0, 100, 0.5),
        EpochStats("neumf", 1, 1, 0.3, 2.0, 100, None),
    ]
    path = plot_training_curve(history, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
