"""Line charts drawn as SVG on the server: no chart library, no script, readable without JS.

A chart is a few polylines over hourly points, with labelled axes, a title and a ``<desc>``
listing the figures, so a screen reader gets the numbers the picture shows. Gaps (hours with no
data) break the line rather than drawing it through zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 16, 34


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[float | None]
    #: a CSS class of console.css (colour and dash, high-contrast)
    css: str


def line_chart(
    title: str,
    starts: Sequence[float],
    series: Sequence[Series],
    *,
    fmt: Callable[[float], str],
    ceiling: float | None = None,
) -> str:
    values = [v for s in series for v in s.points if v is not None]
    top = ceiling if ceiling is not None else max(values, default=0.0)
    if top <= 0:
        top = 1.0
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    n = max(1, len(starts) - 1)

    def x(i: int) -> float:
        return LEFT + plot_w * i / n

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{_id(title)}-t {_id(title)}-d" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{_id(title)}-t">{escape(title)}</title>',
        f'<desc id="{_id(title)}-d">{escape(_describe(starts, series, fmt))}</desc>',
    ]
    for k in range(5):
        level = top * k / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(level):.1f}" '
            f'y2="{y(level):.1f}"/><text class="axis" x="{LEFT - 6}" y="{y(level) + 4:.1f}" '
            f'text-anchor="end">{escape(fmt(level))}</text>'
        )
    step = max(1, len(starts) // 6)
    for i in range(0, len(starts), step):
        label = time.strftime("%H:%M", time.gmtime(starts[i]))
        parts.append(
            f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
            f"{label}</text>"
        )
    for s in series:
        run: list[str] = []
        for i, v in enumerate(s.points):
            if v is None:
                parts.extend(_line(run, s.css))
                run = []
                continue
            run.append(f"{x(i):.1f},{y(v):.1f}")
        parts.extend(_line(run, s.css))
    parts.append("</svg>")
    return "".join(parts)


def _line(points: list[str], css: str) -> list[str]:
    if not points:
        return []
    if len(points) == 1:
        cx, cy = points[0].split(",")
        return [f'<circle class="{css}" cx="{cx}" cy="{cy}" r="3"/>']
    return [f'<polyline class="{css}" fill="none" points="{" ".join(points)}"/>']


def _id(title: str) -> str:
    return "c-" + "".join(c if c.isalnum() else "-" for c in title.lower())


def _describe(
    starts: Sequence[float], series: Sequence[Series], fmt: Callable[[float], str]
) -> str:
    notes = []
    for s in series:
        known = [(starts[i], v) for i, v in enumerate(s.points) if v is not None]
        if not known:
            notes.append(f"{s.name}: no data")
            continue
        last_at, last = known[-1]
        notes.append(
            f"{s.name}: latest {fmt(last)} at {time.strftime('%H:%M', time.gmtime(last_at))} UTC, "
            f"range {fmt(min(v for _, v in known))} to {fmt(max(v for _, v in known))}"
        )
    return "; ".join(notes)


def percent(v: float) -> str:
    return f"{v * 100:.0f}%"


def seconds(v: float) -> str:
    if v < 1:
        return f"{v * 1000:.0f} ms"
    if v < 120:
        return f"{v:.1f} s"
    return f"{v / 60:.0f} min"
