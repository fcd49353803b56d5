"""What request rows add up to over a window: counts, error rate, p50/p95, top errors.

One place for these aggregates, read through `summary.failure_summaries` by
`integration.failure_summary()`, `flask integrations health` / `stats` and the
dashboard's overview. Every query is bounded by the integrations
it is asked about: `ids=None` means all of them (the CLI), a list means only
those (a dashboard page), and the number of queries never grows with the
number of integrations.

A failed attempt is one with a failure class or an HTTP error status. The
pipeline classifies every failure it records (an error text always comes with
a class), so the counts and percentiles read only columns that the index
``ix_{p}_req_int_figures`` carries (`duration_ms`, `status_code` and `failure_class` are
in its key after `integration_id` and `created_at`, on every database).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..db.statuses import FailureClass
from ..state import AppState

__all__ = [
    "Figures",
    "continuous_percentile",
    "failed",
    "failed_count",
    "failed_flag",
    "request_figures",
    "top_errors",
]

#: The percentiles reported, as fractions.
P50, P95 = 0.5, 0.95


@dataclass
class Figures:
    """What an integration's request rows in a window add up to (public as `FailureSummary`)."""

    requests: int = 0
    errors: int = 0
    cache_hits: int = 0
    stale_hits: int = 0
    timed: int = 0  # rows with a duration
    p50: float | None = None
    p95: float | None = None
    #: failed rows by failure class (a failure status without a class counts as `unknown`)
    by_class: dict[str, int] = field(default_factory=dict)


def failed(t: sa.Table) -> Any:
    """A failed attempt: classified as a failure, or answered with an HTTP error status."""
    return sa.or_(t.c.failure_class.is_not(None), t.c.status_code >= 400)


def failed_flag(t: sa.Table) -> Any:
    """1 for a failed attempt (`failed`), else 0: summed, the failed attempts of a group."""
    return sa.case((failed(t), 1), else_=0)


def failed_count(t: sa.Table) -> Any:
    """The number of failed attempts of a group (0, not NULL, for none)."""
    return sa.func.coalesce(sa.func.sum(failed_flag(t)), 0)


def _window(state: AppState, since: datetime, ids: Collection[int] | None) -> list[Any]:
    t = state.tables["requests"]
    where = [t.c.created_at >= since]
    if ids is not None:
        where.append(t.c.integration_id.in_(list(ids)))
    return where


def request_figures(
    state: AppState,
    since: datetime,
    ids: Collection[int] | None = None,
    hits: bool = True,
    latency: bool = False,
) -> dict[int, Figures]:
    """Figures per integration over request rows created since `since`.

    Counts come from one grouped query. With `latency`, p50/p95 too
    (continuous percentiles, as PostgreSQL's percentile_cont): in that same
    query on PostgreSQL, elsewhere in one more (see `_ranked_neighbours`).
    `hits=False` leaves the cache counters out (they are not in the covering index).
    """
    if ids is not None and not ids:
        return {}
    t = state.tables["requests"]
    postgres = state.db.session.get_bind().dialect.name == "postgresql"
    columns = [
        t.c.integration_id,
        sa.func.count(),
        failed_count(t),
        sa.func.count(t.c.duration_ms),
        sa.func.coalesce(sa.func.sum(t.c.cache_hits), 0) if hits else sa.literal(0),
        sa.func.coalesce(sa.func.sum(t.c.stale_hits), 0) if hits else sa.literal(0),
        *_class_sums(t),
    ]
    if latency and postgres:
        columns += [sa.func.percentile_cont(p).within_group(t.c.duration_ms) for p in (P50, P95)]
    query = sa.select(*columns).where(*_window(state, since, ids)).group_by(t.c.integration_id)
    figures = {}
    for row in state.db.session.execute(query):
        integration_id, requests, errors, timed, cache_hits, stale_hits, *rest = row
        figure = Figures(int(requests), int(errors), int(cache_hits), int(stale_hits), timed=int(timed))
        classes, percentiles = rest[: len(FailureClass)], rest[len(FailureClass) :]
        figure.by_class = {c.value: int(n) for c, n in zip(FailureClass, classes, strict=True) if n}
        if percentiles:
            figure.p50, figure.p95 = (None if v is None else float(v) for v in percentiles)
        figures[integration_id] = figure
    if latency and not postgres and any(f.timed for f in figures.values()):
        _add_ranked_latency(state, since, ids, figures)
    return figures


def _class_sums(t: sa.Table) -> list[Any]:
    """One count per failure class, in `FailureClass` order, of the failed rows."""
    named = sa.func.coalesce(t.c.failure_class, FailureClass.UNKNOWN.value)
    return [
        sa.func.coalesce(sa.func.sum(sa.case((sa.and_(failed(t), named == c.value), 1), else_=0)), 0)
        for c in FailureClass
    ]


def _add_ranked_latency(
    state: AppState, since: datetime, ids: Collection[int] | None, figures: dict[int, Figures]
) -> None:
    t = state.tables["requests"]
    where = [*_window(state, since, ids), t.c.duration_ms.is_not(None)]
    ranked = _ranked_neighbours(state.db.session, t, where)
    for integration_id, figure in figures.items():
        values = ranked.get(integration_id)
        if values:
            figure.p50 = _interpolate(values, figure.timed, P50)
            figure.p95 = _interpolate(values, figure.timed, P95)


def _ranked_neighbours(session: Any, t: sa.Table, where: list[Any]) -> dict[int, dict[int, float]]:
    """{integration: {rank: duration}} for the ranks on either side of each percentile's position.

    The position of fraction p among n sorted values is p*(n-1); the ranks
    wanted are its floor and the one after, i.e. the ranks r with
    p*(n-1) - 1 < r <= p*(n-1) + 1 (no floor function needed).
    """
    ranked = (
        sa.select(
            t.c.integration_id,
            t.c.duration_ms,
            (sa.func.row_number().over(partition_by=t.c.integration_id, order_by=t.c.duration_ms) - 1).label(
                "rank"
            ),
            sa.func.count().over(partition_by=t.c.integration_id).label("n"),
        )
        .where(*where)
        .subquery()
    )
    near = [
        sa.and_(ranked.c.rank > p * (ranked.c.n - 1) - 1, ranked.c.rank <= p * (ranked.c.n - 1) + 1)
        for p in (P50, P95)
    ]
    query = sa.select(ranked.c.integration_id, ranked.c.rank, ranked.c.duration_ms).where(sa.or_(*near))
    found: dict[int, dict[int, float]] = defaultdict(dict)
    for integration_id, rank, duration in session.execute(query).all():
        found[integration_id][int(rank)] = float(duration)
    return found


def continuous_percentile(ordered: list[float], fraction: float) -> float | None:
    """The `fraction` percentile of ascending `ordered` values, interpolated as percentile_cont does."""
    return _interpolate(dict(enumerate(ordered)), len(ordered), fraction) if ordered else None


def _interpolate(values: dict[int, float], count: int, fraction: float) -> float | None:
    position = fraction * (count - 1)
    low = math.floor(position)
    if low not in values:
        return None
    if low + 1 not in values:
        return values[low]
    return values[low] + (values[low + 1] - values[low]) * (position - low)


def top_errors(
    state: AppState, since: datetime, ids: Collection[int] | None = None, per_integration: int = 3
) -> dict[int, list[tuple[int, str]]]:
    """The most frequent failures per integration: [(count, label)], grouped by status and error."""
    t = state.tables["requests"]
    query = (
        sa.select(t.c.integration_id, t.c.status_code, t.c.error, sa.func.count())
        .where(*_window(state, since, ids), failed(t))
        .group_by(t.c.integration_id, t.c.status_code, t.c.error)
    )
    grouped: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for integration_id, status, error, count in state.db.session.execute(query).all():
        grouped[integration_id].append((count, _error_label(status, error)))
    return {i: sorted(found, key=lambda e: (-e[0], e[1]))[:per_integration] for i, found in grouped.items()}


def _error_label(status: int | None, error: str | None) -> str:
    if error and status is not None and str(status) not in error:
        return f"HTTP {status}: {error}"
    if error:
        return error
    return f"HTTP {status}" if status is not None else "failure without a status or message"
