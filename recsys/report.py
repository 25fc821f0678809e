"""The run report: one self-contained folder per pipeline run with ``report.html`` and its PNGs.

No SQL and no database: the pipeline hands it plain facts and arrays. The page shows the data
volumes, the stages (seconds, rows), the new version's metrics next to the previously active
version's, the training curve, and two 2-D maps of the slot similarity vectors (PCA), coloured by
provider and by theme: slots of one taste should sit together, and a provider's or a theme's
slots in one region means the model recovered that structure from play alone.
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPORT_FILE = "report.html"
CURVE_FILE = "training-curve.png"
PROVIDER_MAP_FILE = "slot-map-provider.png"
THEME_MAP_FILE = "slot-map-theme.png"

# Metrics shown side by side, in this order (keys of model_versions.metrics written by the worker).
METRICS = (
    ("hr@10", "HR@10 (99 sampled negatives)"),
    ("ndcg@10", "NDCG@10 (99 sampled negatives)"),
    ("full_hr@10", "HR@10, full catalogue"),
    ("full_ndcg@10", "NDCG@10, full catalogue"),
    ("popularity_hr@10", "popularity baseline HR@10"),
    ("popularity_ndcg@10", "popularity baseline NDCG@10"),
    ("test_players", "holdout players"),
    ("train_pairs", "training pairs"),
    ("players", "players"),
    ("slots", "slots"),
    ("epochs", "epochs"),
    ("train_seconds", "training seconds"),
)
OTHER_COLOUR = "#c8c8c8"


@dataclass(frozen=True)
class VersionFacts:
    """What the report shows of a model version."""

    id: int
    status: str
    model: str
    metrics: dict[str, Any]
    data_start: date | None = None
    data_end: date | None = None
    curve_path: str | None = None


@dataclass(frozen=True)
class SlotMap:
    """The slots of a version: ``vectors`` (n, d) similarity vectors, ``providers`` and ``themes`` (n,) labels."""

    vectors: np.ndarray
    providers: np.ndarray
    themes: np.ndarray
    top_providers: int = 8


@dataclass(frozen=True)
class RunFacts:
    run_id: int
    run_day: date
    status: str
    started_at: datetime
    version: VersionFacts
    previous: VersionFacts | None
    volumes: dict[str, Any]
    stages: dict[str, dict[str, Any]]
    gate: dict[str, Any] = field(default_factory=dict)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``vectors`` (n, d) on their first two principal components.

    Returns
    -------
    coords : np.ndarray, shape (n, 2)
    explained : np.ndarray, shape (2,), share of the total variance each component explains
    """
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, singular, components = np.linalg.svd(x, full_matrices=False)
    k = min(2, components.shape[0])
    coords = np.zeros((x.shape[0], 2))
    coords[:, :k] = x @ components[:k].T
    variance = singular**2
    explained = np.zeros(2)
    if variance.sum() > 0:
        explained[:k] = variance[:k] / variance.sum()
    return coords, explained


def colour_groups(labels: np.ndarray, top: int) -> tuple[list[str], np.ndarray]:
    """The ``top`` most frequent labels (most frequent first) and each row's group.

    Returns ``(names, group)``: ``group[i]`` indexes ``names`` for a top label, ``-1`` for the others.
    Ties are broken by name so the colours are stable from run to run.
    """
    values, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], values[i]))[:top]
    names = [str(values[i]) for i in order]
    position = {name: i for i, name in enumerate(names)}
    group = np.array([position.get(str(label), -1) for label in labels], dtype=np.int64)
    return names, group


def write_report(folder: str | Path, run: RunFacts, slots: SlotMap | None) -> Path:
    """Write ``report.html`` and its PNGs into ``folder`` (created); returns the HTML file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    curve = _copy_curve(run.version.curve_path, folder / CURVE_FILE)
    maps: list[tuple[str, str]] = []
    if slots is not None and len(slots.vectors) >= 2:
        coords, explained = pca_2d(slots.vectors)
        axis = f"PC1 ({explained[0]:.0%} of variance)", f"PC2 ({explained[1]:.0%})"
        title = f"{len(coords):,} slots of version {run.version.id}"
        plot_slot_map(coords, slots.providers, slots.top_providers, f"{title} by provider", axis,
                      folder / PROVIDER_MAP_FILE)
        plot_slot_map(coords, slots.themes, 12, f"{title} by theme", axis, folder / THEME_MAP_FILE)
        maps = [(PROVIDER_MAP_FILE, "slot map by provider"), (THEME_MAP_FILE, "slot map by theme")]
    path = folder / REPORT_FILE
    path.write_text(_page(run, curve, maps), encoding="utf-8")
    return path


def plot_slot_map(
    coords: np.ndarray, labels: np.ndarray, top: int, title: str, axis: tuple[str, str], path: Path
) -> Path:
    """Scatter of ``coords`` (n, 2): the ``top`` most frequent labels in colour, the rest grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, group = colour_groups(labels, top)
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20").colors
    size = max(2.0, min(30.0, 6000 / max(len(coords), 1)))
    fig, ax = plt.subplots(figsize=(7.5, 6))
    others = group < 0
    if others.any():
        n_other = len(set(np.asarray(labels, dtype=str)[others]))
        ax.scatter(*coords[others].T, s=size, c=OTHER_COLOUR, linewidths=0,
                   label=f"{n_other} others ({int(others.sum()):,} slots)")
    for i, name in enumerate(names):
        rows = group == i
        ax.scatter(*coords[rows].T, s=size, color=palette[i % len(palette)], linewidths=0, alpha=0.85,
                   label=f"{name} ({int(rows.sum()):,})")
    ax.set_title(title)
    ax.set_xlabel(axis[0])
    ax.set_ylabel(axis[1])
    ax.legend(fontsize="small", markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(alpha=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _copy_curve(source: str | None, target: Path) -> str | None:
    """Copy the worker's training curve beside the report, so the folder stands alone."""
    if source is None or not Path(source).is_file():
        return None
    shutil.copyfile(source, target)
    return target.name


# --- HTML --------------------------------------------------------------------------------------------

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.better { color: #17703a; } .worse { color: #b3261e; } .muted { color: #777; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


def _page(run: RunFacts, curve: str | None, maps: list[tuple[str, str]]) -> str:
    e = html.escape
    version, previous = run.version, run.previous
    verdict = {"succeeded": "activated", "refused": "refused by the quality gate (not activated)"}.get(
        run.status, run.status
    )
    window = f"{version.data_start} .. {version.data_end}" if version.data_start else "?"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>recsys pipeline run {run.run_id}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Pipeline run {run.run_id} — {e(str(run.run_day))}</h1>",
        f"<p>Started {e(f'{run.started_at:%Y-%m-%d %H:%M:%S %Z}')}. Version {version.id} ({e(version.model)}, "
        f"data {e(window)}): <strong>{e(verdict)}</strong>.</p>",
    ]
    if run.gate:
        parts.append(f"<p>Quality gate: {e(str(run.gate.get('reason', '')))}.</p>")

    parts.append("<h2>Data</h2>")
    parts.append(_table(["", "rows"], [[e(k), _number(v)] for k, v in run.volumes.items()]))

    parts.append("<h2>Stages</h2>")
    rows = []
    for stage, figures in run.stages.items():
        details = ", ".join(f"{e(str(k))} {e(_number(v))}" for k, v in figures.items() if k != "seconds")
        rows.append([e(stage), _number(figures.get("seconds")), f'<span class="muted">{details}</span>'])
    parts.append(_table(["stage", "seconds", "figures"], rows))

    parts.append("<h2>Metrics</h2>")
    if previous is None:
        parts.append("<p>No version was active before this run.</p>")
        header = ["", f"version {version.id}"]
    else:
        parts.append(
            f"<p>Next to version {previous.id}, active before this run. Each version is measured on its own "
            "holdout (the latest days of its window); the gate compares both on this run's holdout.</p>"
        )
        header = ["", f"version {version.id}", f"version {previous.id}", "change"]
    rows = []
    for key, label in METRICS:
        new = version.metrics.get(key)
        if new is None and (previous is None or previous.metrics.get(key) is None):
            continue
        row = [e(label), _number(new)]
        if previous is not None:
            old = previous.metrics.get(key)
            row += [_number(old), _change(new, old, higher_is_better=key.endswith("@10"))]
        rows.append(row)
    if previous is not None and "new_hr@10_common" in run.gate:
        common = run.gate
        rows.append([
            f"HR@10 on this run's holdout ({_number(common.get('common_cases'))} cases)",
            _number(common["new_hr@10_common"]),
            _number(common["active_hr@10_common"]),
            _change(common["new_hr@10_common"], common["active_hr@10_common"], higher_is_better=True),
        ])
    parts.append(_table(header, rows))

    parts.append("<h2>Training curve</h2>")
    if curve is None:
        parts.append(f'<p class="muted">No training curve found ({e(str(version.curve_path))}).</p>')
    else:
        parts.append(f'<img src="{e(curve)}" alt="training curve of version {version.id}">')

    parts.append("<h2>Slot map</h2>")
    if maps:
        parts.append(
            "<p>The slots' similarity vectors (what the similar-slot index searches) projected on their first "
            "two principal components.</p>"
        )
        parts.extend(f'<img src="{e(name)}" alt="{e(alt)}">' for name, alt in maps)
    else:
        parts.append('<p class="muted">Too few slots to draw.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return html.escape(str(value))


def _change(new: Any, old: Any, *, higher_is_better: bool) -> str:
    if not isinstance(new, int | float) or not isinstance(old, int | float) or isinstance(new, bool):
        return ""
    delta = new - old
    if not higher_is_better or delta == 0:
        return f'<span class="muted">{delta:+,.3g}</span>'
    css = "better" if delta > 0 else "worse"
    return f'<span class="{css}">{delta:+.3f}</span>'
