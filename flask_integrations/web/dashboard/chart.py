"""Geometry of the activity chart: requests and errors per bar of a window, drawn as inline SVG."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .queries import Bucket
from .windows import DEFAULT_WINDOW, Window

WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 26
GAP = 0.25  # share of a slot left empty between bars


@dataclass
class Bar:
    x: float
    width: float
    requests_y: float
    requests_height: float
    errors_y: float
    errors_height: float
    title: str
    start: datetime  # the bar's interval, [start, end): its requests in the explorer
    end: datetime


@dataclass
class Tick:
    position: float
    label: str


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    baseline: int = HEIGHT - BOTTOM
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    window: Window = DEFAULT_WINDOW  # what the bars divide, for the chart's wording


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10ⁿ at or above `value` (at least 1), so ticks read as round numbers."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def build_chart(buckets: list[Bucket], window: Window) -> Chart:
    """Bars for each bucket (errors drawn over requests), a y axis up to a round number, time labels.

    The x axis labels the bars starting at a multiple of the window's `tick_every` (UTC):
    every quarter hour, every six hours, or every midnight.
    """
    chart = Chart(window=window)
    chart.requests = sum(b.requests for b in buckets)
    chart.errors = sum(b.errors for b in buckets)
    top = nice_ceiling(max([b.requests for b in buckets] + [1]))
    plot_height = chart.baseline - chart.top
    slot = (chart.right - chart.left) / max(len(buckets), 1)
    tick_every = int(window.tick_every.total_seconds())

    def y(value: int) -> float:
        return chart.baseline - plot_height * value / top

    for index, bucket in enumerate(buckets):
        x = chart.left + index * slot + slot * GAP / 2
        end = bucket.start + window.bucket
        title = (
            f"{bucket.start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC: {_count(bucket.requests, 'request')}, "
            f"{_count(bucket.errors, 'error')}"
        )
        chart.bars.append(
            Bar(
                x=round(x, 2),
                width=round(slot * (1 - GAP), 2),
                requests_y=round(y(bucket.requests), 2),
                requests_height=round(chart.baseline - y(bucket.requests), 2),
                errors_y=round(y(bucket.errors), 2),
                errors_height=round(chart.baseline - y(bucket.errors), 2),
                title=title,
                start=bucket.start,
                end=end,
            )
        )
        if int(bucket.start.timestamp()) % tick_every == 0:
            label = bucket.start.strftime(window.tick_format)
            chart.x_ticks.append(Tick(round(x + slot * (1 - GAP) / 2, 2), label))
    chart.y_ticks = [Tick(round(y(v), 2), str(v)) for v in sorted({0, top // 2, top})]
    return chart


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
