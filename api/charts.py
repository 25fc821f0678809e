"""Plain SVG charts for the dashboard: no JavaScript, no fonts or files to fetch. Each has axes and units.

Every text that reaches the SVG is escaped here; the result is ``Markup`` for the templates.
"""

from __future__ import annotations

import math
from html import escape

from markupsafe import Markup

COLOURS = ("#2f6fb0", "#d9822b", "#4c9f50", "#b33a3a", "#7a5bb5", "#8c6d31", "#5a5a5a")
FONT = 'font-family="sans-serif" font-size="11"'


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^n at or above ``value`` (an axis end)."""
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    return next(m * exponent for m in (1, 2, 5, 10) if m * exponent >= value)


def _number(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 10 or x == int(x) else f"{x:.2g}"


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def _legend(names: list[str], x: float, y: float) -> list[str]:
    out = []
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{y + 16 * i}" width="10" height="10" fill="{COLOURS[i % len(COLOURS)]}"/>'
                   f'<text x="{x + 14}" y="{y + 9 + 16 * i}" {FONT}>{escape(name)}</text>')
    return out


def stacked_bars(title: str, labels: list[str], series: dict[str, list[float]], *, y_unit: str, x_unit: str,
                 width: int = 760, height: int = 240) -> Markup:
    """Bars per label (e.g. per hour), each stacked from ``series`` (name -> one value per label)."""
    left, right, top, bottom = 56, 190, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top_value = nice_max(max(totals, default=0))
    step = plot_w / max(len(labels), 1)
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>']
    for tick in range(5):
        value = top_value * tick / 4
        y = top + plot_h - plot_h * tick / 4
        body.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{_number(value)}</text>')
    for i, label in enumerate(labels):
        base = top + plot_h
        for s, values in enumerate(series.values()):
            h = plot_h * values[i] / top_value
            if h > 0:
                body.append(f'<rect x="{left + i * step + 1:.1f}" y="{base - h:.1f}" width="{max(step - 2, 1):.1f}" '
                            f'height="{h:.1f}" fill="{COLOURS[s % len(COLOURS)]}"/>')
            base -= h
        if i % max(1, len(labels) // 12) == 0:
            body.append(f'<text x="{left + i * step + step / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                        f'{FONT}>{escape(label)}</text>')
    body.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" {FONT}>{escape(x_unit)}</text>')
    body.append(f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" '
                f'text-anchor="middle" {FONT}>{escape(y_unit)}</text>')
    body += _legend(list(series), left + plot_w + 12, top)
    return _svg(width, height, title, body)


def horizontal_bars(title: str, rows: list[tuple[str, float]], *, unit: str, width: int = 520,
                    scale_max: float | None = None) -> Markup:
    """One bar per row (label, value), with a value axis in ``unit``."""
    left, right, top, row_h = 150, 60, 8, 24
    plot_w = width - left - right
    height = top + row_h * len(rows) + 36
    top_value = scale_max or nice_max(max((v for _, v in rows), default=0))
    axis_y = top + row_h * len(rows)
    body = [f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#333"/>']
    for tick in range(5):
        x = left + plot_w * tick / 4
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#ddd"/>'
                    f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" {FONT}>'
                    f'{_number(top_value * tick / 4)}</text>')
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        w = plot_w * value / top_value if top_value else 0
        body.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" {FONT}>{escape(label)}</text>'
                    f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
                    f'fill="{COLOURS[i % len(COLOURS)]}"/>'
                    f'<text x="{left + w + 4:.1f}" y="{y + 15}" {FONT}>{_number(value)}</text>')
    body.append(f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle" {FONT}>{escape(unit)}</text>')
    return _svg(width, height, title, body)


def intervals(title: str, rows: list[tuple[str, float | None, float | None, float | None]], *, unit: str,
              width: int = 520) -> Markup:
    """Points with 95 % interval whiskers (label, value, low, high) around a zero line, in ``unit``."""
    left, right, top, row_h = 150, 30, 8, 26
    plot_w = width - left - right
    height = top + row_h * max(len(rows), 1) + 36
    ends = [abs(x) for _, v, lo, hi in rows for x in (v, lo, hi) if x is not None]
    half = nice_max(max(ends, default=0))
    axis_y = top + row_h * max(len(rows), 1)

    def x_of(value: float) -> float:
        return left + plot_w * (value + half) / (2 * half)

    body = [f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#333"/>',
            f'<line x1="{x_of(0):.1f}" y1="{top}" x2="{x_of(0):.1f}" y2="{axis_y}" stroke="#999" '
            'stroke-dasharray="3,3"/>']
    for tick in range(-2, 3):
        value = half * tick / 2
        body.append(f'<text x="{x_of(value):.1f}" y="{axis_y + 16}" text-anchor="middle" {FONT}>'
                    f'{value:+.3g}</text>')
    for i, (label, value, low, high) in enumerate(rows):
        y = top + i * row_h + row_h / 2
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{escape(label)}</text>')
        if low is not None and high is not None:
            body.append(f'<line x1="{x_of(low):.1f}" y1="{y:.1f}" x2="{x_of(high):.1f}" y2="{y:.1f}" '
                        f'stroke="{COLOURS[0]}" stroke-width="2"/>')
        if value is not None:
            body.append(f'<circle cx="{x_of(value):.1f}" cy="{y:.1f}" r="4" fill="{COLOURS[1]}"/>')
    body.append(f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle" {FONT}>{escape(unit)}</text>')
    return _svg(width, height, title, body)
