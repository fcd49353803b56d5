"""`integration.failure_summary(hours=24)`: what an integration's request rows add up to.

The one source of the figures users see: `flask integrations health` and `stats` and
the dashboard's overview read `failure_summaries`, the method reads the same function
for one integration. The queries are in `figures.py`; their number is fixed, whatever
the number of integrations asked about.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clock import utcnow
from ..state import AppState, current_state
from .figures import Figures, request_figures, top_errors

__all__ = ["FailureSummary", "TopError", "failure_summaries", "failure_summary"]

#: Distinct errors a summary lists, most frequent first.
TOP_ERRORS = 5


@dataclass(frozen=True)
class TopError:
    """One of the most frequent failures: how often, and its label.

    `error` is built from the stored row (``"HTTP 503: <error>"``): the error text the
    pipeline stored, with the integration's credential values already scrubbed out.
    """

    count: int
    error: str


@dataclass(frozen=True)
class FailureSummary:
    """An integration's request rows (attempts) created in the last `hours`.

    `failures` counts attempts classified as a failure or answered with an HTTP error
    status; `by_class` splits them by failure class (``"upstream"``, ``"throttle"``,
    ``"client"``, ``"unknown"``; a class without failures is absent). `p50_ms` and
    `p95_ms` are continuous percentiles of `duration_ms`, None without timed rows.
    `top_errors` lists the most frequent failures, most frequent first.
    """

    integration_id: int
    hours: float
    since: datetime
    requests: int = 0
    failures: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    by_class: dict[str, int] = field(default_factory=dict)
    top_errors: tuple[TopError, ...] = ()
    cache_hits: int = 0
    stale_hits: int = 0

    @property
    def error_rate(self) -> float | None:
        """Failures per request (0..1); None without requests."""
        return self.failures / self.requests if self.requests else None

    @property
    def hit_ratio(self) -> float | None:
        """Cache and stale hits per answer (0..1), None without any."""
        hits = self.cache_hits + self.stale_hits
        return hits / (self.requests + hits) if self.requests + hits else None


def check_hours(hours: object) -> float:
    """`hours` when it is a usable window; ValueError otherwise."""
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 24 * 366 * 100:
        raise ValueError("failure_summary() needs hours as a positive number (at most a hundred years).")
    return hours


def failure_summaries(
    state: AppState,
    ids: Collection[int] | None,
    hours: float = 24,
    now: datetime | None = None,
    top: int = TOP_ERRORS,
    hits: bool = True,
) -> dict[int, FailureSummary]:
    """Summaries of the integrations `ids` (None: all with rows in the window).

    An integration without rows in the window gets an empty summary when asked for by id.
    `top=0` leaves the top errors out (they read the error texts, which the figures'
    index does not carry); `hits=False` leaves the cache counters out (same reason).
    """
    since = (now or utcnow()) - timedelta(hours=check_hours(hours))
    if ids is not None and not ids:
        return {}
    figures = request_figures(state, since, ids, hits=hits, latency=True)
    errors = top_errors(state, since, ids, per_integration=top) if top > 0 else {}
    wanted = list(ids) if ids is not None else sorted(figures)
    return {i: _summary(i, hours, since, figures.get(i, Figures()), errors.get(i, [])) for i in wanted}


def _summary(
    integration_id: int,
    hours: float,
    since: datetime,
    figures: Figures,
    errors: list[tuple[int, str]],
) -> FailureSummary:
    return FailureSummary(
        integration_id=integration_id,
        hours=hours,
        since=since,
        requests=figures.requests,
        failures=figures.errors,
        p50_ms=figures.p50,
        p95_ms=figures.p95,
        by_class=figures.by_class,
        top_errors=tuple(TopError(count, label) for count, label in errors),
        cache_hits=figures.cache_hits,
        stale_hits=figures.stale_hits,
    )


def failure_summary(integration: Any, hours: float = 24) -> FailureSummary:
    """`integration.failure_summary(hours)`: its summary over the last `hours`."""
    return failure_summaries(current_state(), [integration.id], hours)[integration.id]
