"""Training curve figure: loss and HR@10 per epoch, one line per training stage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from recsys.ncf.history import EpochStats


def plot_training_curve(history: Sequence[EpochStats], path: str | Path) -> Path:
    """Write a PNG with the loss (left axis) and HR@10 (right axis) of each stage per epoch.

    Epochs are numbered across stages (pre-training first), so the fused model's curve continues
    where the pre-training ones stop.

    Returns
    -------
    Path
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, loss_ax = plt.subplots(figsize=(8, 4.5))
    hr_ax = loss_ax.twinx()
    stages: dict[str, list[tuple[int, EpochStats]]] = {}
    for step, stats in enumerate(history, start=1):
        stages.setdefault(stats.stage, []).append((step, stats))
    for stage, rows in stages.items():
        steps = [s for s, _ in rows]
        loss_ax.plot(steps, [r.loss for _, r in rows], marker=".", label=f"{stage} loss")
        hits = [(s, r.hr_at_10) for s, r in rows if r.hr_at_10 is not None]
        if hits:
            hr_ax.plot([s for s, _ in hits], [h for _, h in hits], linestyle="--", marker="o",
                       markersize=3, label=f"{stage} HR@10")
    loss_ax.set_xlabel("epoch (all stages)")
    loss_ax.set_ylabel("log loss")
    hr_ax.set_ylabel("HR@10")
    lines = loss_ax.get_legend_handles_labels()
    more = hr_ax.get_legend_handles_labels()
    loss_ax.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize="small")
    loss_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
