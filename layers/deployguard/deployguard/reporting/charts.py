"""Inline SVG charts for reports: no script, no network, readable by screen readers.

A chart is one ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` that says what it shows in
words; every point carries a ``<title>`` tooltip with its value. Series share a time axis;
markers are vertical lines at decision points (traffic shifts, promotion, rollback).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

PALETTE = {
    "canary": "#d1495b",
    "baseline": "#2e6f95",
    "score": "#2a9d8f",
    "impact": "#e76f51",
    "traffic": "#6a4c93",
}
MARKER_COLOURS = {"shift": "#8d99ae", "promoted": "#2a9d8f", "rolled_back": "#d1495b", "held": "#e9c46a"}


@dataclass
class Series:
    name: str
    points: list[tuple[datetime, float | None]]
    colour: str
    step: bool = False  # a step function (traffic weight) rather than a line between points
    dashed: bool = False


@dataclass
class Marker:
    at: datetime
    label: str
    kind: str = "shift"  # shift, promoted, rolled_back, held


@dataclass
class Chart:
    chart_id: str
    title: str
    description: str
    series: list[Series]
    markers: list[Marker] = field(default_factory=list)
    y_label: str = ""
    y_format: Callable[[float], str] = lambda v: f"{v:.4g}"
    y_min: float | None = None
    y_max: float | None = None
    width: int = 760
    height: int = 240
    x_start: datetime | None = None  # the time axis (default: the data's own range)
    x_end: datetime | None = None


def _nice_top(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    while magnitude > value:
        magnitude /= 10
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * magnitude >= value:
            return step * magnitude
    return value


def render_svg(chart: Chart) -> str:
    left, right, top, bottom = 64, 16, 28, 44
    width, height = chart.width, chart.height
    plot_w, plot_h = width - left - right, height - top - bottom
    times = [t for s in chart.series for t, v in s.points if v is not None] + [m.at for m in chart.markers]
    values = [v for s in chart.series for _, v in s.points if v is not None]
    start = chart.x_start or (min(times) if times else datetime.min)
    end = chart.x_end or (max(times) if times else start)
    if (end - start).total_seconds() < 60:  # at least a minute wide, so ticks and points spread
        end = start + timedelta(seconds=60)
    span = (end - start).total_seconds()
    low = chart.y_min if chart.y_min is not None else min([0.0, *values])
    high = chart.y_max if chart.y_max is not None else _nice_top(max(values, default=1.0) * 1.05)
    high = high if high > low else low + 1.0

    def x(at: datetime) -> float:
        return left + plot_w * (at - start).total_seconds() / span

    def y(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'class="chart" id="{escape(chart.chart_id)}" aria-labelledby="{escape(chart.chart_id)}-title '
        f'{escape(chart.chart_id)}-desc" font-family="system-ui, sans-serif" font-size="11">',
        f'<title id="{escape(chart.chart_id)}-title">{escape(chart.title)}</title>',
        f'<desc id="{escape(chart.chart_id)}-desc">{escape(chart.description)}</desc>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for i in range(5):  # horizontal grid and y labels
        value = low + (high - low) * i / 4
        gy = f"{y(value):.1f}"
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{gy}" y2="{gy}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" fill="#444">'
                     f"{escape(chart.y_format(value))}</text>")  # fmt: skip
    ticks = 6
    for i in range(ticks + 1):  # time axis; the last label ends at the plot's right edge, inside the viewBox
        at = start + (end - start) * i / ticks
        label = at.strftime("%H:%M" if span >= 600 else "%H:%M:%S")
        anchor = "end" if i == ticks else "middle"
        parts.append(f'<text x="{x(at):.1f}" y="{top + plot_h + 16}" text-anchor="{anchor}" fill="#444">'
                     f"{label}</text>")  # fmt: skip
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" fill="#444">time (UTC)</text>')
    if chart.y_label:
        parts.append(f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" '
                     f'text-anchor="middle" fill="#444">{escape(chart.y_label)}</text>')  # fmt: skip
    for marker in chart.markers:
        colour = MARKER_COLOURS.get(marker.kind, "#8d99ae")
        mx = x(marker.at)
        near_left = mx < left + plot_w * 0.8  # labels near the right edge grow leftwards
        parts.append(
            f'<g class="marker marker-{escape(marker.kind)}"><line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" '
            f'y2="{top + plot_h}" stroke="{colour}" stroke-dasharray="4 3" stroke-width="1.5"/>'
            f'<text x="{mx + (3 if near_left else -3):.1f}" y="{top - 6}" fill="{colour}" '
            f'text-anchor="{"start" if near_left else "end"}">{escape(marker.label)}</text>'
            f"<title>{escape(marker.label)} at {marker.at:%H:%M:%S}</title></g>"
        )
    legend_x = left + 8
    for series in chart.series:
        parts.append(_series(series, x, y, chart.y_format))
        parts.append(f'<rect x="{legend_x}" y="{top + 8}" width="10" height="10" fill="{series.colour}"/>'
                     f'<text x="{legend_x + 14}" y="{top + 17}" fill="#222">{escape(series.name)}</text>')  # fmt: skip
        legend_x += 24 + 7 * len(series.name)
    parts.append("</svg>")
    return "".join(parts)


def _series(series: Series, x: Callable[[datetime], float], y: Callable[[float], float],
            fmt: Callable[[float], str]) -> str:  # fmt: skip
    known = [(t, v) for t, v in series.points if v is not None]
    if not known:
        return ""
    coords: list[str] = []
    previous: float | None = None
    for t, v in known:
        if series.step and previous is not None:
            coords.append(f"{x(t):.1f},{y(previous):.1f}")
        coords.append(f"{x(t):.1f},{y(v):.1f}")
        previous = v
    dash = ' stroke-dasharray="6 3"' if series.dashed else ""
    line = f'<polyline fill="none" stroke="{series.colour}" stroke-width="2"{dash} points="{" ".join(coords)}"/>'
    out = [f'<g class="series" data-series="{escape(series.name)}">{line}']
    for t, v in known:
        out.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="{series.colour}">'
                   f"<title>{escape(series.name)} {t:%H:%M:%S}: {escape(fmt(v))}</title></circle>")  # fmt: skip
    out.append("</g>")
    return "".join(out)


def percent(value: float) -> str:
    return f"{value * 100:.3g}%"


def number(value: float) -> str:
    """4 significant digits, never an exponent for a value people read (1433, not 1.433e+03)."""
    return f"{value:.0f}" if 1e4 <= abs(value) < 1e15 else f"{value:.4g}"
