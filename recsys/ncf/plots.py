"""Training curve figure: one panel per training stage, each with its own epoch axis."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from recsys.ncf.history import EpochStats

TITLE = "Training curve: log loss and HR@10 per epoch, by stage"
STAGE_NAMES = {"gmf": "GMF (pre-training)", "mlp": "MLP (pre-training)", "neumf": "NeuMF"}


def best_epochs(history: Sequence[EpochStats]) -> dict[str, int]:
    """Each stage's epoch with the highest HR@10 (the first of equals): the one early stopping keeps.

    Stages without an HR@10 are left out.
    """
    best: dict[str, tuple[float, int]] = {}
    for stats in history:
        if stats.hr_at_10 is not None and stats.hr_at_10 > best.get(stats.stage, (-1.0, 0))[0]:
            best[stats.stage] = (stats.hr_at_10, stats.epoch)
    return {stage: epoch for stage, (_, epoch) in best.items()}


def plot_training_curve(
    history: Sequence[EpochStats], path: str | Path, *, fused_hr: float | None = None, title: str = TITLE
) -> Path:
    """Write a PNG: per stage, the log loss (left axis) and HR@10 (right axis) against the stage's epochs.

    The epoch early stopping keeps (the best HR@10) is marked with a star. ``fused_hr`` is the HR@10 of
    the NeuMF fused from the pre-trained towers without further epochs, drawn as its own point; when a
    NeuMF stage trained epochs, its panel is the fused model's curve.

    Returns
    -------
    Path
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig = training_curve_figure(history, fused_hr=fused_hr, title=title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curve_figure(history: Sequence[EpochStats], *, fused_hr: float | None = None, title: str = TITLE):
    """The matplotlib figure of :func:`plot_training_curve` (axes ``[loss, hr]`` per stage panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages: dict[str, list[EpochStats]] = {}
    for stats in history:
        stages.setdefault(stats.stage, []).append(stats)
    pretrained_only = "neumf" not in stages and {"gmf", "mlp"} <= set(stages)
    show_fused = fused_hr is not None and pretrained_only
    panels = max(1, len(stages)) + (1 if show_fused else 0)
    widths = [max(2.0, len(rows)) for rows in stages.values()] + ([1.2] if show_fused else [])
    fig, axes = plt.subplots(
        1, panels, figsize=(3.2 + 2.6 * panels, 4.6), sharey=True, squeeze=False,
        gridspec_kw={"width_ratios": widths or [1.0]},
    )
    loss_axes = list(axes[0])
    hr_axes = [ax.twinx() for ax in loss_axes]
    for hr_ax in hr_axes[1:]:
        hr_ax.sharey(hr_axes[0])
    kept = best_epochs(history)
    for n, (stage, rows) in enumerate(stages.items()):
        loss_ax, hr_ax = loss_axes[n], hr_axes[n]
        epochs = [r.epoch for r in rows]
        loss_ax.plot(epochs, [r.loss for r in rows], marker=".", color="tab:blue", label="log loss")
        hits = [(r.epoch, r.hr_at_10) for r in rows if r.hr_at_10 is not None]
        if hits:
            hr_ax.plot([e for e, _ in hits], [h for _, h in hits], linestyle="--", marker="o", markersize=3,
                       color="tab:orange", label="HR@10 (validation players)")
        if stage in kept:
            best = next(r for r in rows if r.epoch == kept[stage])
            hr_ax.plot([best.epoch], [best.hr_at_10], marker="*", markersize=15, color="tab:green",
                       linestyle="none", label="kept epoch (best HR@10)")
            hr_ax.annotate(f"kept: epoch {best.epoch}", (best.epoch, best.hr_at_10), textcoords="offset points",
                           xytext=(0, -18), ha="center" if best.epoch < max(epochs) else "right",
                           fontsize="small", color="tab:green")
        loss_ax.set_title(f"{STAGE_NAMES.get(stage, stage)}", fontsize="medium")
        loss_ax.set_xlabel(f"{stage} epoch")
        loss_ax.set_xticks(_ticks(epochs))
        loss_ax.set_xlim(0.5, max(epochs) + 0.5)
        loss_ax.grid(alpha=0.3)
    if show_fused:
        loss_ax, hr_ax = loss_axes[-1], hr_axes[-1]
        hr_ax.plot([1], [fused_hr], marker="D", markersize=9, color="tab:red", linestyle="none",
                   label="fused NeuMF (test players)")
        hr_ax.annotate(f"{fused_hr:.3f}", (1, fused_hr), textcoords="offset points", xytext=(0, -16),
                       ha="center", fontsize="small", color="tab:red")
        loss_ax.set_title("NeuMF fused\nfrom the kept epochs", fontsize="medium")
        loss_ax.set_xticks([1])
        loss_ax.set_xticklabels(["fused"])
        loss_ax.set_xlim(0.5, 1.5)
        loss_ax.grid(alpha=0.3)
    scores = [r.hr_at_10 for r in history if r.hr_at_10 is not None] + ([fused_hr] if show_fused else [])
    if scores:
        margin = max(0.02, 0.15 * (max(scores) - min(scores)))
        hr_axes[0].set_ylim(max(0.0, min(scores) - margin), min(1.0, max(scores) + margin))
    loss_axes[0].set_ylabel("log loss (training samples)")
    hr_axes[-1].set_ylabel("HR@10")
    for hr_ax in hr_axes[:-1]:
        hr_ax.tick_params(labelright=False)
    handles, labels = [], []
    for ax in (*loss_axes, *hr_axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.suptitle(title)
    if pretrained_only and not show_fused:
        labels_note = "NeuMF is fused from the kept GMF and MLP epochs without further epochs"
        fig.text(0.5, 0.01, labels_note, ha="center", fontsize="small", color="#555")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.94), ncol=len(labels),
               fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 0.9))
    return fig


def _ticks(epochs: list[int]) -> list[int]:
    """At most ~8 integer ticks over ``epochs``."""
    last = max(epochs)
    step = max(1, -(-last // 8))
    return list(range(1, last + 1, step))
