"""The requests explorer's reads: request rows across integrations, filtered, newest first.

Pages are keyset pages: `before=<id>` shows the rows older than that request,
`after=<id>` the rows newer than it, both in (created_at, id) order, so a page
costs the same however deep it is and rows written meanwhile shift nothing.

Every filtered column is in the index ``ix_{p}_req_explorer`` (created_at, id,
then the filtered columns, migration fi_0006), so on SQLite and PostgreSQL a row
that does not match is rejected from its index entry; the page's rows are read by
id afterwards. The figures are bounded too, so that a page costs at most about one
scan of its window's index entries, on a table of any size: p50/p95 are of the
newest `SAMPLE_ROWS` matches, the count stops at `COUNT_LIMIT` ("100,000+"), and
the error rate is of every match below that count, of the newest `SAMPLE_ROWS` above it.
The provider filter is `integration_id + 0 IN (...)`: an expression no index serves, so
that SQLite reads the rows newest first from the explorer's index instead of gathering
them per integration through ``ix_{p}_req_int_figures`` and sorting them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ...db.models import Integration
from ...health.figures import P50, P95, continuous_percentile, failed_flag
from ...state import AppState
from .formatting import Scrubber
from .queries import RequestFilters

PER_PAGE = 50
NO_OWNER = Scrubber(None)
COUNT_LIMIT = 100_000
SAMPLE_ROWS = 10_000
#: The columns of the explorer's table (the bodies stay on the request's own page).
ROW_COLUMNS = (
    "id",
    "created_at",
    "integration_id",
    "method",
    "endpoint",
    "status_code",
    "duration_ms",
    "failure_class",
    "error",
    "provider_request_id",
    "retry_of",
)


#: Methods matched in any case (`?method=post`); any other method (an SDK operation) as typed.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def http_method(value: str) -> str:
    """`value` in capitals when it is an HTTP method: the pipeline stores those in capitals.

    An equality, not ``upper(method) = ...``: PostgreSQL then checks it inside the index scan,
    about three times faster on a window of 500,000 rows than calling upper() on each.
    """
    return value.upper() if value.upper() in HTTP_METHODS else value


@dataclass
class ExplorerFilters:
    """The explorer's filters; None or blank means any. `since`/`until` bound created_at: [since, until)."""

    since: datetime | None = None
    until: datetime | None = None
    provider: str | None = None
    integration_id: int | None = None
    endpoint: str = ""
    method: str = ""
    status: str = ""
    failure_class: str = ""
    min_duration: int | None = None
    provider_request_id: str = ""

    def conditions(self, state: AppState) -> list[Any]:
        t = state.tables["requests"]
        where: list[Any] = []
        if self.since is not None:
            where.append(t.c.created_at >= self.since)
        if self.until is not None:
            where.append(t.c.created_at < self.until)
        if self.provider:
            ints = state.tables["integrations"]
            of_provider = sa.select(ints.c.id).where(ints.c.provider == self.provider)
            where.append((t.c.integration_id + 0).in_(of_provider))
        if self.integration_id is not None:
            where.append(t.c.integration_id == self.integration_id)
        if self.method:
            where.append(t.c.method == http_method(self.method))
        if self.min_duration is not None:
            where.append(t.c.duration_ms >= self.min_duration)
        if self.provider_request_id:
            where.append(t.c.provider_request_id == self.provider_request_id)
        # the filters the integration page's request log has too, built the same way
        return where + RequestFilters(self.endpoint, self.status, self.failure_class).conditions(t)


@dataclass
class ExplorerRow:
    row: Any
    integration: Integration | None
    scrub: Scrubber  # the owner's credential values out of the shown texts


@dataclass
class ExplorerPage:
    """Rows newest first; `older`/`newer` are the ids to page from (None at either end)."""

    rows: list[ExplorerRow]
    older: int | None
    newer: int | None
    #: the newest page, with no page past it: it holds every matching row
    complete: bool = False


@dataclass
class ExplorerFigures:
    """What the newest matching rows add up to (see the module's docstring for the bounds)."""

    count: int
    errors: int
    errors_of: int  # the matches the errors are counted among: all, or the newest `SAMPLE_ROWS`
    p50: float | None
    p95: float | None
    sampled: bool  # p50/p95 are of the newest `SAMPLE_ROWS` matches only

    @property
    def capped(self) -> bool:
        """At least `COUNT_LIMIT` rows matched: the page says "100,000+" and counts those."""
        return self.count >= COUNT_LIMIT


def page(
    state: AppState, filters: ExplorerFilters, before: int | None = None, after: int | None = None
) -> ExplorerPage | None:
    """A page of matching rows; None when `before`/`after` names no request row."""
    t = state.tables["requests"]
    where = filters.conditions(state)
    newest_first = after is None
    anchor_id = before if newest_first else after
    if anchor_id is not None:
        anchor = state.db.session.execute(sa.select(t.c.created_at).where(t.c.id == anchor_id)).scalar()
        if anchor is None:
            return None
        where.append(_beyond(t, anchor, anchor_id, older=newest_first))
    order = (t.c.created_at.desc(), t.c.id.desc()) if newest_first else (t.c.created_at, t.c.id)
    # ids first, judged on the index alone; then the shown columns of those rows only
    ids = sa.select(t.c.id).where(*where).order_by(*order).limit(PER_PAGE + 1)
    found = [row_id for (row_id,) in state.db.session.execute(ids)]
    more = len(found) > PER_PAGE
    rows = _rows(state, found[:PER_PAGE])  # newest first, whichever way the page was read
    ids_shown = [r.row.id for r in rows]
    if newest_first:
        older = ids_shown[-1] if more else None
        newer = ids_shown[0] if before is not None and ids_shown else None
    else:
        older = ids_shown[-1] if ids_shown else None
        newer = ids_shown[0] if more else None
    return ExplorerPage(rows, older, newer, complete=anchor_id is None and not more)


def _beyond(t: sa.Table, created_at: datetime, row_id: int, older: bool) -> Any:
    """Rows after (created_at, id) in the page's direction, written so that the index range is used."""
    if older:
        return sa.and_(t.c.created_at <= created_at, sa.or_(t.c.created_at < created_at, t.c.id < row_id))
    return sa.and_(t.c.created_at >= created_at, sa.or_(t.c.created_at > created_at, t.c.id > row_id))


def _rows(state: AppState, ids: list[int]) -> list[ExplorerRow]:
    if not ids:
        return []
    t = state.tables["requests"]
    columns = [*(t.c[name] for name in ROW_COLUMNS), _failed_flag(t)]
    query = sa.select(*columns).where(t.c.id.in_(ids)).order_by(t.c.created_at.desc(), t.c.id.desc())
    rows = state.db.session.execute(query).all()
    owners = {
        i.id: i
        for i in state.db.session.scalars(
            sa.select(Integration).where(Integration.id.in_({r.integration_id for r in rows}))
        )
    }
    scrubbers = {i: Scrubber(owner) for i, owner in owners.items()}
    return [
        ExplorerRow(r, owners.get(r.integration_id), scrubbers.get(r.integration_id, NO_OWNER)) for r in rows
    ]


def figures(state: AppState, filters: ExplorerFilters, page: ExplorerPage | None = None) -> ExplorerFigures:
    """Count, errors and p50/p95 of the newest matching rows (see the module's docstring for the bounds).

    A first `page` that holds every match gives them without another scan of the window (a rare
    filter's page read the whole window already); else the newest `SAMPLE_ROWS` are read, and
    the count goes on in SQL only when there are more.
    """
    if page is not None and page.complete:
        sample = [(r.row.failed, r.row.duration_ms) for r in page.rows]
    else:
        t = state.tables["requests"]
        query = (
            sa.select(_failed_flag(t), t.c.duration_ms)
            .where(*filters.conditions(state))
            .order_by(t.c.created_at.desc(), t.c.id.desc())
            .limit(SAMPLE_ROWS + 1)
        )
        sample = [tuple(row) for row in state.db.session.execute(query)]
    more, sample = len(sample) > SAMPLE_ROWS, sample[:SAMPLE_ROWS]
    count, errors, errors_of = len(sample), sum(flag for flag, _ in sample), len(sample)
    if more:
        count, all_errors = _count(state, filters)
        if count < COUNT_LIMIT:  # every match counted; else the error rate stays the newest ones'
            errors, errors_of = all_errors, count
    ordered = sorted(float(ms) for _, ms in sample if ms is not None)
    p50, p95 = continuous_percentile(ordered, P50), continuous_percentile(ordered, P95)
    return ExplorerFigures(count, errors, errors_of, p50, p95, sampled=count > SAMPLE_ROWS)


def _count(state: AppState, filters: ExplorerFilters) -> tuple[int, int]:
    """Matching rows and failed ones, up to `COUNT_LIMIT` of them, in one SQL aggregate.

    Unordered: the database reads the matches in whatever order is cheapest (on PostgreSQL
    a parallel scan without merging the workers' rows back into time order).
    """
    t = state.tables["requests"]
    matches = sa.select(_failed_flag(t)).where(*filters.conditions(state)).limit(COUNT_LIMIT).subquery()
    query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(matches.c.failed), 0))
    count, errors = state.db.session.execute(query).one()
    return int(count), int(errors)


def _failed_flag(t: sa.Table) -> Any:
    return failed_flag(t).label("failed")
