"""The run report: one self-contained folder per pipeline run with ``report.html`` and its PNGs.

No SQL and no database: the pipeline hands it plain facts and arrays. The page opens with the verdict
(the new version against its baselines, and the quality gate's decision and why), then the metrics
next to the previously active version's, the stages, the data volumes, the training curve, and how
well the slot similarity vectors keep a theme's or a provider's slots together: for each slot, the
share of its 10 nearest slots (what the similar-slot endpoint returns) that share its theme, against
the share a random draw would give. The model never sees themes or providers, so a share well above
chance means it recovered that structure from play alone.
"""

from __future__ import annotations

import dataclasses
import html
import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recsys.metrics import BASELINES, REPLAY_POLICIES, GateDecision, VersionMetrics
from recsys.verdict import Comparison, Verdict, verdict

REPORT_FILE = "report.html"
CURVE_FILE = "training-curve.png"
NEIGHBOURS_FILE = "slot-neighbours.png"
NEIGHBOURS_K = 10

# The model's own metrics: their change against the previous version is coloured (better / worse).
MODEL_METRICS = (
    ("HR@10 (99 sampled negatives)", lambda m: m.model.hr),
    ("NDCG@10 (99 sampled negatives)", lambda m: m.model.ndcg),
    ("HR@10, full catalogue", lambda m: m.full.hr),
    ("NDCG@10, full catalogue", lambda m: m.full.ndcg),
)


def _baseline_figure(key: str, attribute: str):
    return lambda m: None if key not in m.baselines else getattr(m.baselines[key], attribute)


# Baselines and counts: shown, their change left uncoloured (a baseline's gain is not the model's).
OTHER_METRICS = (
    *((f"{b.name} baseline {label}", _baseline_figure(b.key, attribute))
      for b in BASELINES for attribute, label in (("hr", "HR@10"), ("ndcg", "NDCG@10"))),
    ("holdout players (test half)", lambda m: m.test_players),
    ("holdout players (validation half, picks the epochs)", lambda m: m.validation_players),
    ("training pairs", lambda m: m.train_pairs),
    ("players", lambda m: m.players),
    ("slots", lambda m: m.slots),
    ("epochs", lambda m: m.epochs),
    ("training seconds", lambda m: m.train_seconds),
)
OTHER_COLOUR = "#c8c8c8"


@dataclass(frozen=True)
class VersionFacts:
    """What the report shows of a model version."""

    id: int
    status: str
    model: str
    metrics: VersionMetrics
    data_start: date | None = None
    data_end: date | None = None
    curve_path: str | None = None


@dataclass(frozen=True)
class SlotMap:
    """The slots of a version: ``vectors`` (n, d) similarity vectors, ``providers`` and ``themes`` (n,)
    labels; the report lists the ``top_providers`` largest providers and pools the others."""

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
    gate: GateDecision | None = None


@dataclass(frozen=True)
class Purity:
    """How well one label's slots (a theme, a provider, or a pool of them) keep to themselves.

    Attributes
    ----------
    label : str
    slots : int
        Slots with this label.
    purity : float
        Mean over these slots of the share of their nearest slots that carry the same label.
    chance : float
        The same share if the nearest slots were drawn at random from the catalogue.
    """

    label: str
    slots: int
    purity: float
    chance: float

    @property
    def lift(self) -> float:
        """``purity / chance``: how many times more same-label neighbours than a random draw gives."""
        return self.purity / self.chance if self.chance > 0 else float("nan")


def nearest_neighbours(vectors: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Each row's ``k`` nearest other rows by cosine similarity, nearest first.

    Parameters
    ----------
    vectors : np.ndarray, shape (n, d)
    k : int
        At most ``n - 1``.

    Returns
    -------
    np.ndarray, shape (n, k), int64 row indices (never the row itself)
    """
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    n = x.shape[0]
    k = min(k, n - 1)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        sims = x[start : start + chunk] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def neighbour_purity(neighbours: np.ndarray, labels: np.ndarray, top: int | None = None) -> list[Purity]:
    """Per label, the share of its slots' neighbours with the same label, against chance.

    Parameters
    ----------
    neighbours : np.ndarray, shape (n, k)
        From :func:`nearest_neighbours`.
    labels : np.ndarray, shape (n,)
    top : int or None
        List the ``top`` most frequent labels and pool the rest in one ``N others`` row (each slot still
        counts a neighbour as same-label only for its own label); None lists every label.

    Returns
    -------
    list of Purity, most frequent label first, then the pooled others, then ``all slots``.
    """
    labels = np.asarray(labels, dtype=str)
    n = labels.size
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    same = (inverse[neighbours] == inverse[:, None]).mean(axis=1)  # (n,) per slot
    chance_of = (counts[inverse] - 1) / max(n - 1, 1)  # (n,) per slot
    names, group = colour_groups(labels, top if top is not None else len(values))
    rows = [
        Purity(name, int((group == i).sum()), float(same[group == i].mean()), float(chance_of[group == i].mean()))
        for i, name in enumerate(names)
    ]
    others = group < 0
    if others.any():
        label = f"{len(set(labels[others]))} others (pooled)"
        rows.append(Purity(label, int(others.sum()), float(same[others].mean()), float(chance_of[others].mean())))
    rows.append(Purity("all slots", n, float(same.mean()), float(chance_of.mean())))
    return rows


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
    purity: dict[str, list[Purity]] = {}
    if slots is not None and len(slots.vectors) > NEIGHBOURS_K:
        neighbours = nearest_neighbours(slots.vectors, NEIGHBOURS_K)
        purity = {
            "theme": neighbour_purity(neighbours, slots.themes),
            "provider": neighbour_purity(neighbours, slots.providers, top=slots.top_providers),
        }
        plot_neighbour_purity(purity, folder / NEIGHBOURS_FILE)
    path = folder / REPORT_FILE
    path.write_text(_page(run, curve, purity), encoding="utf-8")
    return path


def plot_neighbour_purity(purity: dict[str, list[Purity]], path: Path) -> Path:
    """Horizontal bars per label (one panel per attribute): the purity, and chance as a black tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tallest = max(len(rows) for rows in purity.values())
    fig, axes = plt.subplots(1, len(purity), figsize=(11, 1.2 + 0.32 * tallest), squeeze=False)
    for ax, (attribute, rows) in zip(axes[0], purity.items(), strict=True):
        y = np.arange(len(rows))[::-1]
        colours = ["#555" if r.label == "all slots" else OTHER_COLOUR if "others" in r.label else "tab:blue"
                   for r in rows]
        ax.barh(y, [r.purity for r in rows], color=colours, height=0.7, label=f"same {attribute} among the 10 nearest")
        ax.scatter([r.chance for r in rows], y, marker="|", s=250, color="black", zorder=3, label="by chance")
        ax.set_yticks(y)
        ax.set_yticklabels([f"{r.label} ({r.slots:,})" for r in rows], fontsize="small")
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"share of a slot's {NEIGHBOURS_K} nearest slots with its {attribute}")
        ax.set_title(f"by {attribute}")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    fig.suptitle("Do similar slots share a theme or a provider? (the model never saw either)")
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
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
td.text, th.text { text-align: left; }
td:first-child { white-space: nowrap; }
.better { color: #17703a; } .worse { color: #b3261e; } .muted { color: #777; }
.verdict { font-size: 1.1em; padding: 0.6em 1em; border-left: 4px solid #888; background: #f7f7f7; }
.verdict.passed { border-color: #17703a; } .verdict.refused { border-color: #b3261e; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
"""


def verdict_html(v: Verdict) -> str:
    """The verdict's sentences, each margin coloured by its own sign: green where the model is ahead,
    red where it is behind (``+0.038 HR@10`` green and ``-0.006 NDCG@10`` red in one comparison)."""
    text = html.escape(v.baseline_sentence())
    for c in v.comparisons:
        text = text.replace(html.escape(c.words()), _comparison_html(c), 1)
    return f"{text} {html.escape(v.gate_sentence())}"


def _comparison_html(c: Comparison) -> str:
    def signed(delta: float, metric: str) -> str:
        css = "better" if delta > 0 else "worse" if delta < 0 else "muted"
        return f'<span class="{css}">{delta:+.3f} {metric}</span>'

    ndcg = "" if c.delta_ndcg is None else f" ({signed(c.delta_ndcg, 'NDCG@10')})"
    return f"{html.escape(c.baseline)} by {signed(c.delta_hr, 'HR@10')}{ndcg}"


def _page(run: RunFacts, curve: str | None, purity: dict[str, list[Purity]]) -> str:
    e = html.escape
    version, previous = run.version, run.previous
    outcome = {"succeeded": "activated", "refused": "refused by the quality gate (not activated)"}.get(
        run.status, run.status
    )
    if run.status == "succeeded" and run.stages.get("train", {}).get("activated") is False:
        outcome = "passed the quality gate: ready, not activated (--no-activate)"
    window = f"{version.data_start} .. {version.data_end}" if version.data_start else "?"
    metrics = version.metrics
    if run.gate is not None:
        metrics = dataclasses.replace(metrics, gate=run.gate)
    v = verdict(metrics, version.model)
    css = {True: "passed", False: "refused", None: ""}[v.gate_passed]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>recsys pipeline run {run.run_id}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Pipeline run {run.run_id} — {e(str(run.run_day))}</h1>",
        f"<p>Started {e(f'{run.started_at:%Y-%m-%d %H:%M:%S %Z}')}. Version {version.id} ({e(version.model)}, "
        f"data {e(window)}): <strong>{e(outcome)}</strong>.</p>",
        "<h2>Verdict</h2>",
        f'<p class="verdict {css}">{verdict_html(v)}</p>',
        '<p class="muted">HR@10: the share of holdout players whose next newly discovered slot the model ranks in '
        "its top 10 among that slot and 99 slots the player never played; every baseline ranks the same cases. "
        "Green: the model is ahead of that baseline; red: it is not.</p>",
    ]
    parts.append("<h2>Metrics</h2>")
    parts.extend(_metrics_table(run, version, previous))
    parts.extend(_replay_section(version.metrics))
    parts.append("<h2>Stages</h2>")
    parts.append(_table(["stage", "seconds", "what happened"], _stage_rows(run.stages), text_columns={2}))
    parts.append("<h2>Data</h2>")
    parts.append(_table(["", "rows"], [[e(k), _number(v)] for k, v in run.volumes.items()]))
    parts.append("<h2>Training curve</h2>")
    if curve is None:
        parts.append(f'<p class="muted">No training curve found ({e(str(version.curve_path))}).</p>')
    else:
        parts.append(f"<p>{e(_curve_caption(version.metrics))}</p>")
        parts.append(f'<img src="{e(curve)}" alt="training curve of version {version.id}">')
    parts.append("<h2>Similar slots: do they share a theme or a provider?</h2>")
    if purity:
        parts.append(
            f"<p>For each slot, its {NEIGHBOURS_K} nearest slots by the version's similarity vectors (the list "
            "<code>GET /v1/slots/{slot_id}/similar</code> serves). <em>Same</em> is the share of them with the "
            "slot's own theme (or provider), averaged over the label's slots; <em>by chance</em> is that share "
            "for 10 slots drawn at random. The model learns from play alone and never sees a theme or a "
            "provider: a share well above chance means players' tastes follow that attribute and the model "
            "found it. A share near chance is not a fault in itself when tastes do not follow it.</p>"
        )
        parts.append(f'<img src="{NEIGHBOURS_FILE}" alt="share of same-theme and same-provider neighbours">')
        for attribute, rows in purity.items():
            parts.append(f"<h3>By {attribute}</h3>")
            parts.append(_table(
                [attribute, "slots", "same", "by chance", "times chance"],
                [[e(r.label), f"{r.slots:,}", f"{r.purity:.2f}", f"{r.chance:.2f}", _times(r.lift)] for r in rows],
            ))
    else:
        parts.append(f'<p class="muted">Too few slots to compare (at most {NEIGHBOURS_K}).</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _metrics_table(run: RunFacts, version: VersionFacts, previous: VersionFacts | None) -> list[str]:
    parts = []
    if previous is None:
        parts.append("<p>No version was active before this run.</p>")
        header = ["", f"version {version.id}"]
    else:
        parts.append(
            f"<p>Next to version {previous.id}, active before this run. Each version is measured on its own "
            "holdout (the latest days of its window); the gate compares both on this run's holdout. Only the "
            "model's own changes are coloured.</p>"
        )
        header = ["", f"version {version.id}", f"version {previous.id}", "change"]
    rows = []
    for metrics, coloured in ((MODEL_METRICS, True), (OTHER_METRICS, False)):
        for label, figure in metrics:
            new = figure(version.metrics)
            old = None if previous is None else figure(previous.metrics)
            if new is None and old is None:
                continue
            row = [html.escape(label), _number(new)]
            if previous is not None:
                row += [_number(old), _change(new, old, coloured=coloured)]
            rows.append(row)
    common = run.gate
    if previous is not None and common is not None and common.new_hr_common is not None:
        rows.append([
            f"HR@10 on this run's holdout ({_number(common.common_cases)} cases)",
            _number(common.new_hr_common),
            _number(common.active_hr_common),
            _change(common.new_hr_common, common.active_hr_common, coloured=True),
        ])
    parts.append(_table(header, rows))
    return parts


def _replay_section(metrics: VersionMetrics) -> list[str]:
    """The trigger's list replayed (recsys.replay): each policy's HR@10 / NDCG@10, best HR@10 in bold."""
    replay = metrics.replay
    if replay is None or not replay.policies:
        return []
    best = max(f.hr for f in replay.policies.values() if f.hr is not None)
    rows = []
    for policy, label in REPLAY_POLICIES:
        figures = replay.policies.get(policy)
        if figures is None:
            continue
        hr = _number(figures.hr)
        rows.append([html.escape(label), f"<strong>{hr}</strong>" if figures.hr == best else hr,
                     _number(figures.ndcg)])
    return [
        "<h2>The trigger's list, replayed</h2>",
        f"<p>For each of {replay.sessions:,} long sessions that ended in the holdout days, the list each policy "
        f"would have served when the session crossed the threshold, from this version, against the slots the "
        f"player newly played in the next {replay.hours} hours (HR@10: at least one of them in the list; "
        "NDCG@10 by the first one's place).</p>",
        _table(["policy", "HR@10", "NDCG@10"], rows),
    ]


def _curve_caption(metrics: VersionMetrics) -> str:
    """Which epochs were kept and what the fused model scored, from the version's metrics."""
    kept = metrics.kept_epochs
    words = []
    if kept:
        words.append("Kept (best HR@10 on the validation players, starred): "
                     + ", ".join(f"{stage} epoch {epoch}" for stage, epoch in kept.items()) + ".")
    if metrics.model.hr is not None:
        words.append(f"The served model scores HR@10 {metrics.model.hr:.3f} on the test players "
                     "(the curve's HR@10 is on the validation players).")
    return " ".join(words) or "Loss and HR@10 per epoch of each training stage."


_STAGE_TIMES = (("load", "read the interactions"), ("train", "fit"), ("evaluate", "evaluate"),
                ("baselines", "fit and rank the baselines"), ("write", "write embeddings"),
                ("replay", "replay the trigger's list"), ("offline", "precompute top-N lists"))


def _stage_rows(stages: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for stage, figures in stages.items():
        rows.append([html.escape(stage), _number(figures.get("seconds")), html.escape(_stage_words(stage, figures))])
        if stage == "train":
            for key, words in _STAGE_TIMES:
                if f"{key}_seconds" in figures:
                    rows.append([f'<span class="muted">&nbsp;&nbsp;↳ {words}</span>',
                                 f'<span class="muted">{_number(figures[f"{key}_seconds"])}</span>', ""])
    return rows


def _stage_words(stage: str, f: dict[str, Any]) -> str:
    """One sentence of what a stage did, from the figures the pipeline recorded."""
    known: set[str] = {"seconds"}
    if stage == "consolidate" and "interactions" in f:
        known |= {"mode", "players", "interactions", "first_day", "last_day"}
        days = f" over days {f.get('first_day')} .. {f.get('last_day')}" if f.get("first_day") else ""
        text = f"{f.get('mode', '')} consolidation: {_plain(f['interactions'])} interactions of " \
               f"{_plain(f.get('players'))} players{days}".strip()
    elif stage == "train" and "version" in f:
        known |= {"version", "activated", "previous_version", "pairs", "players", "slots", "epochs", "hr@10",
                  "ndcg@10", "gate"} | {f"{k}_seconds" for k, _ in _STAGE_TIMES}
        before = f" (version {f['previous_version']} was active)" if f.get("previous_version") else ""
        text = (f"version {f['version']} from {_plain(f.get('pairs'))} training pairs ({_plain(f.get('players'))} "
                f"players × {_plain(f.get('slots'))} slots), {_plain(f.get('epochs'))} epochs: HR@10 "
                f"{_plain(f.get('hr@10'))}, NDCG@10 {_plain(f.get('ndcg@10'))}; "
                f"{'activated' if f.get('activated') else 'not activated'}{before}")
    elif stage == "report" and "files" in f:
        known |= {"files"}
        text = f"{f['files']} files written"
    else:
        text = ""
    rest = [f"{k.replace('_', ' ')}: {_plain(v)}" for k, v in f.items() if k not in known and not _empty(v)]
    return "; ".join(t for t in [text, *rest] if t)


def _table(header: list[str], rows: list[list[str]], text_columns: frozenset[int] | set[int] = frozenset()) -> str:
    """An HTML table of already-escaped cells; ``text_columns`` are left-aligned (numbers align right)."""
    head = "".join(f'<th{_align(i, text_columns)}>{h}</th>' for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{_align(i, text_columns)}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _times(lift: float) -> str:
    """``2.4×``; a dash where chance is 0 (a label with one slot: no neighbour can share it)."""
    return "—" if lift != lift else f"{lift:.1f}×"


def _align(column: int, text_columns) -> str:
    return ' class="text"' if column in text_columns else ""


def _plain(value: Any) -> str:
    """A figure as text (not HTML-escaped): ``12,345``, ``0.743``, ``yes``."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _empty(value: Any) -> bool:
    """Nothing to say: an empty list, dict or text (``months dropped`` when none were)."""
    return isinstance(value, list | tuple | dict | str) and not value


def _number(value: Any) -> str:
    return html.escape(_plain(value))


def _change(new: Any, old: Any, *, coloured: bool) -> str:
    """``new - old``; green or red only for the model's own metrics (higher is better), grey otherwise."""
    if not isinstance(new, int | float) or not isinstance(old, int | float) or isinstance(new, bool):
        return ""
    delta = new - old
    if not coloured or delta == 0:
        text = f"{delta:+,.3f}" if isinstance(delta, float) else f"{delta:+,}"
        return f'<span class="muted">{text}</span>'
    css = "better" if delta > 0 else "worse"
    return f'<span class="{css}">{delta:+.3f}</span>'
