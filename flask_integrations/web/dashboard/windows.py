"""The time windows the dashboard shows its figures and rows over (``?window=``).

Each window also says how the integration page's activity chart divides it: a dozen to a few
dozen bars, whose start times are multiples of the bar's length since the epoch (UTC), so
that a bar is the same interval on every database and in every process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Window:
    """A span of time back from now, with its wording and its activity chart's bars."""

    name: str  # the query value, "24h"
    span: timedelta
    bucket: timedelta  # one bar of the activity chart
    short: str  # in headings: "Requests 24 h", "last 24 h"
    long: str  # in sentences: "the last 24 hours"
    per: str  # one bar, in "per hour"
    tick_every: timedelta  # the x axis labels the bars starting at a multiple of this
    tick_format: str

    @property
    def hours(self) -> float:
        return self.span / timedelta(hours=1)

    @property
    def bucket_seconds(self) -> int:
        return int(self.bucket.total_seconds())

    @property
    def buckets(self) -> int:
        """How many bars the chart draws, the current (partial) one last."""
        return int(self.span / self.bucket)


MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
WINDOWS = {
    w.name: w
    for w in (
        Window("1h", HOUR, 5 * MINUTE, "1 h", "hour", "5 minutes", 15 * MINUTE, "%H:%M"),
        Window("24h", DAY, HOUR, "24 h", "24 hours", "hour", 6 * HOUR, "%H:%M"),
        Window("7d", 7 * DAY, 6 * HOUR, "7 d", "7 days", "6 hours", DAY, "%b %d"),
    )
}
DEFAULT_WINDOW = WINDOWS["24h"]
#: The requests explorer's windows: the pages' and a month (its rows, never a chart).
EXPLORER_WINDOWS = {
    **WINDOWS,
    "30d": Window("30d", 30 * DAY, DAY, "30 d", "30 days", "day", 7 * DAY, "%b %d"),
}
