"""Trend charts drawn on the server as inline SVG: no JavaScript, no image files, no library.

A chart plots one or more metrics of a supplier's attestations over time (x: when the value was
measured, ``as_of``, else when the feed was issued; y: the value). Values stated in different
units of one quantity (days and weeks) are drawn in the unit of the newest value. Every chart
carries a ``<title>`` and a ``<desc>`` that summarise it; the page puts the same numbers in a
table for screen readers.

Pure: rows in, markup out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape

from sqm.schema.artifacts import units

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 72, 20, 16, 48
# Dark enough for 3:1 against white (WCAG 1.4.11); told apart by marker shape too.
COLOURS = ("#1f5fa8", "#b3471d", "#2b7a3d", "#6b3fa0", "#8a6d00", "#a0235a")
SHAPES = ("circle", "square", "triangle", "diamond")


@dataclass(frozen=True)
class Fact:
    """One value of a metric in one attestation, as the index holds it."""

    metric: str
    log_index: int
    value: float
    unit: str | None
    base_value: float
    base_unit: str | None
    site: str | None
    product: str | None
    characteristic: str | None
    at: datetime


@dataclass(frozen=True)
class Point:
    """A plotted value: when, how much (in the chart's unit), and the entry that proves it."""

    at: datetime
    value: float
    log_index: int


@dataclass(frozen=True)
class Series:
    """The values of one thing measured (a characteristic, a site, a product) over time."""

    label: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Chart:
    """A chart's content: what it shows, in which unit, and its series."""

    ident: str
    title: str
    unit: str  # the y axis' unit, as people read it ("%", "days (DAY)", "" for a pure number)
    series: tuple[Series, ...]
    axis: str = ""  # the y axis' label when the values have no unit
    reading: str = ""  # how to read it ("higher is better")
    reference: tuple[float, str] | None = None  # a threshold line and its label
    ceiling: float | None = None  # no axis above it when no value is (100 for percentages)
    skipped: int = 0  # values in a unit of another quantity, not drawn

    @property
    def points(self) -> int:
        """How many values are drawn."""
        return sum(len(series.points) for series in self.series)


@dataclass(frozen=True)
class Spec:
    """Which metrics a chart draws (each with the label of its series) and how to read it."""

    ident: str
    title: str
    metrics: tuple[tuple[str, str], ...]  # (metric, prefix of its series' labels)
    unit: str = ""
    axis: str = ""
    reading: str = ""
    reference: tuple[float, str] | None = None
    ceiling: float | None = None


def _aware(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _unit_label(code: str) -> str:
    known = units().get(code)
    return f"{known['name']}s ({code})" if known else code


def _in_unit(fact: Fact, unit: str | None) -> float | None:
    """The fact's value in ``unit``; None when it measures another quantity."""
    if fact.unit == unit:
        return fact.value
    if unit is None or fact.unit is None:
        return None
    target = units().get(unit)
    if target is None or fact.base_unit != target["base_unit"]:
        return None
    return (fact.base_value - float(target["base_offset"])) / float(target["to_base"])


def build(spec: Spec, facts: Iterable[Fact], names: dict[str, str]) -> Chart:
    """A chart of ``spec``'s metrics from the supplier's facts; ``names`` maps site, product and
    characteristic ids to what people call them."""
    wanted = dict(spec.metrics)
    chosen = [f for f in facts if f.metric in wanted]
    chosen.sort(key=lambda f: (_aware(f.at), f.log_index))
    # Unit-bearing metrics are drawn in the newest value's unit; pure numbers have none.
    unit = chosen[-1].unit if chosen else None
    grouped: dict[tuple[str, str | None, str | None, str | None], list[Point]] = {}
    skipped = 0
    for fact in chosen:
        value = _in_unit(fact, unit)
        if value is None or not math.isfinite(value):
            skipped += 1
            continue
        key = (fact.metric, fact.characteristic, fact.product, fact.site)
        grouped.setdefault(key, []).append(Point(_aware(fact.at), value, fact.log_index))
    series = []
    for (metric, characteristic, product, site), points in grouped.items():
        what = [names.get(x, x) for x in (characteristic, product, site) if x]
        if characteristic:
            what = what[:1]  # a characteristic already names its product
        label = " · ".join([p for p in (wanted[metric],) if p] + what) or "supplier-wide"
        series.append(Series(label, tuple(points)))
    series.sort(key=lambda s: s.label)
    return Chart(
        ident=spec.ident,
        title=spec.title,
        unit=_unit_label(unit) if unit else spec.unit,
        series=tuple(series),
        axis=spec.axis,
        reading=spec.reading,
        reference=spec.reference,
        ceiling=spec.ceiling,
        skipped=skipped,
    )


# --- drawing ------------------------------------------------------------------------------------


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(ticks - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _y_ticks(
    low: float, high: float, ceiling: float | None = None
) -> tuple[float, float, list[float]]:
    if high - low < 1e-12:
        pad = max(abs(high) * 0.05, 0.5)
        low, high = low - pad, high + pad
    step = _nice_step(high - low)
    start, stop = math.floor(low / step) * step, math.ceil(high / step) * step
    count = round((stop - start) / step)
    ticks = [start + i * step for i in range(count + 1)]
    if ceiling is not None and stop > ceiling >= high:
        stop = ceiling
        ticks = [tick for tick in ticks if tick <= ceiling + 1e-9]
    return start, stop, ticks


def number(value: float, step: float | None = None) -> str:
    """A value as people read it: thousands grouped, decimals as the scale needs."""
    if step is not None:
        decimals = max(0, min(6, -math.floor(math.log10(step) + 1e-9)))
        return f"{value:,.{decimals}f}"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def _time_label(at: datetime, span: timedelta) -> str:
    if span == timedelta(0) or span >= timedelta(days=2):
        return at.strftime("%Y-%m-%d")
    return at.strftime("%m-%d %H:%M")


def _marker(shape: str, x: float, y: float, colour: str, extra: str = "", inner: str = "") -> str:
    common = f'fill="{colour}" stroke="#ffffff" stroke-width="1"{extra}'
    if shape == "circle":
        return f'<circle {common} cx="{x:.1f}" cy="{y:.1f}" r="4.5">{inner}</circle>'
    if shape == "square":
        return f'<rect {common} x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8">{inner}</rect>'
    if shape == "triangle":
        corners = f"{x:.1f},{y - 5:.1f} {x + 5:.1f},{y + 4:.1f} {x - 5:.1f},{y + 4:.1f}"
    else:
        corners = f"{x:.1f},{y - 5.5:.1f} {x + 5.5:.1f},{y:.1f} {x:.1f},{y + 5.5:.1f} {x - 5.5:.1f},{y:.1f}"
    return f'<polygon {common} points="{corners}">{inner}</polygon>'


def swatch(position: int) -> Markup:
    """The legend's small picture of the series at ``position``: its colour and marker shape."""
    colour, shape = COLOURS[position % len(COLOURS)], SHAPES[position % len(SHAPES)]
    marker = _marker(shape, 8, 8, colour)
    return Markup(
        '<svg class="swatch" width="16" height="16" viewBox="0 0 16 16" aria-hidden="true" '
        f'focusable="false">{marker}</svg>'
    )


def summary(chart: Chart) -> str:
    """One sentence on what the chart shows, for its ``<desc>`` and the page."""
    if not chart.points:
        return f"No values of {chart.title.lower()} in this supplier's feeds."
    times = [p.at for s in chart.series for p in s.points]
    unit = f" {chart.unit}" if chart.unit else ""
    latest = "; ".join(
        f"{s.label}: {number(s.points[-1].value)}{unit} on {s.points[-1].at:%Y-%m-%d}"
        for s in chart.series
    )
    return (
        f"{chart.title}: {chart.points} values in {len(chart.series)} series from "
        f"{min(times):%Y-%m-%d} to {max(times):%Y-%m-%d}. Latest: {latest}."
    )


def svg(chart: Chart, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    """The chart as an inline SVG element (role img, labelled by its title and description)."""
    title_id, desc_id = f"{chart.ident}-title", f"{chart.ident}-desc"
    parts = [
        f'<svg class="chart" id="{chart.ident}" role="img" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="{title_id} {desc_id}" focusable="false">',
        f'<title id="{title_id}">{escape(chart.title)}</title>',
        f'<desc id="{desc_id}">{escape(summary(chart))}</desc>',
    ]
    points = [p for s in chart.series for p in s.points]
    if not points:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#333333">'
            "No data</text></svg>"
        )
        return Markup("".join(parts))
    values = [p.value for p in points]
    if chart.reference is not None:
        values.append(chart.reference[0])
    low, high, ticks = _y_ticks(min(values), max(values), chart.ceiling)
    first, last = min(p.at for p in points), max(p.at for p in points)
    span = last - first
    pad = span * 0.05 if span > timedelta(0) else timedelta(days=1)
    x0, x1 = first - pad, last + pad
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def x_of(at: datetime) -> float:
        return LEFT + plot_w * (at - x0) / (x1 - x0)

    def y_of(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low))

    step = ticks[1] - ticks[0]
    parts.append('<g class="axis y-axis" font-size="12" fill="#333333">')
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#d9d9d9" stroke-width="1"/>'
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(number(tick, step))}</text>"
        )
    label = chart.unit or chart.axis or "value"
    parts.append(
        f'<text class="axis-label" x="{-(TOP + plot_h / 2):.1f}" y="16" '
        f'transform="rotate(-90)" text-anchor="middle">{escape(label)}</text></g>'
    )
    parts.append('<g class="axis x-axis" font-size="12" fill="#333333">')
    parts.append(
        f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        'stroke="#595959" stroke-width="1"/>'
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" '
        'stroke="#595959" stroke-width="1"/>'
    )
    count = 1 if span == timedelta(0) else min(5, len({p.at for p in points}))
    for position in range(count):
        at = first + span * (position / (count - 1) if count > 1 else 0)
        x = x_of(at)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 5}" '
            'stroke="#595959"/>'
            f'<text x="{x:.1f}" y="{TOP + plot_h + 19}" text-anchor="middle">'
            f"{escape(_time_label(at, span))}</text>"
        )
    parts.append(
        f'<text class="axis-label" x="{LEFT + plot_w / 2:.1f}" y="{height - 6}" '
        'text-anchor="middle">measured (as of)</text></g>'
    )
    if chart.reference is not None:
        value, text = chart.reference
        y = y_of(value)
        parts.append(
            f'<g class="reference"><line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="#595959" stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text x="{width - RIGHT - 4}" y="{y - 5:.1f}" text-anchor="end" font-size="12" '
            f'fill="#333333">{escape(text)}</text></g>'
        )
    unit = f" {chart.unit}" if chart.unit else ""
    for position, series in enumerate(chart.series):
        colour, shape = COLOURS[position % len(COLOURS)], SHAPES[position % len(SHAPES)]
        parts.append(f'<g class="series" data-label="{escape(series.label)}">')
        if len(series.points) > 1:
            line = " ".join(f"{x_of(p.at):.1f},{y_of(p.value):.1f}" for p in series.points)
            dash = "" if position % 2 == 0 else ' stroke-dasharray="5 3"'
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{line}"/>'
            )
        for point in series.points:
            title = (
                f"{series.label}: {number(point.value)}{unit} as of {point.at:%Y-%m-%d %H:%M} "
                f"UTC (log entry {point.log_index})"
            )
            data = f' class="point" data-value="{point.value!r}" data-log-index="{point.log_index}"'
            inner = f"<title>{escape(title)}</title>"
            parts.append(_marker(shape, x_of(point.at), y_of(point.value), colour, data, inner))
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def table_rows(chart: Chart) -> Sequence[tuple[str, Point]]:
    """The chart's values for its data table, oldest first."""
    rows = [(s.label, p) for s in chart.series for p in s.points]
    rows.sort(key=lambda row: (row[1].at, row[0]))
    return rows
