"""The dashboard's reads. Every page issues a fixed number of queries, whatever its size.

Pages fetch one row more than they show to know whether a next page exists,
so no page counts a large table. Aggregates are computed only for the rows
on the page (see `health/summary.py`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ...db.dialects import is_mysql
from ...db.models import Integration, IntegrationLog, IntegrationRequest
from ...db.tables import REQUEST_FIGURE_COLUMNS
from ...db.transactions import dialect_name
from ...health.figures import failed, failed_count
from ...health.summary import FailureSummary, failure_summaries
from ...parsing import parse_int
from ...pipeline import overrides
from ...state import AppState
from .windows import Window

PER_PAGE = 50
#: Newest top-level operation logs shown on an integration page, and how deep their children go.
OPERATIONS_SHOWN, OPERATION_DEPTH, CHILDREN_PER_LEVEL = 25, 3, 500
RECENT_WEBHOOKS, RECENT_RUNS = 10, 10


@dataclass
class Page:
    """One page of rows; `has_next` comes from fetching one row more than shown."""

    items: list[Any]
    number: int
    has_next: bool

    @property
    def has_prev(self) -> bool:
        return self.number > 1


def fetch_page(
    state: AppState, query: sa.Select, number: int, per_page: int = PER_PAGE, scalars: bool = False
) -> Page:
    """Rows (or, with `scalars`, objects) of page `number` (from 1) of `query`, which must be ordered."""
    result = state.db.session.execute(query.limit(per_page + 1).offset((number - 1) * per_page))
    rows = list(result.scalars() if scalars else result.all())
    return Page(rows[:per_page], number, len(rows) > per_page)


# -- overview ------------------------------------------------------------------------------------


@dataclass
class OverviewRow:
    integration: Integration
    summary: FailureSummary
    breaker: str


def overview(
    state: AppState, provider: str | None, health: str | None, number: int, now: datetime, window: Window
) -> Page:
    """A page of integrations with their figures over `window` and their breaker state."""
    query = sa.select(Integration).order_by(Integration.id)
    if provider:
        query = query.where(Integration.provider == provider)
    if health:
        query = query.where(Integration.health_status == health)
    page = fetch_page(state, query, number, scalars=True)
    ids = [i.id for i in page.items]
    summaries = failure_summaries(state, ids, window.hours, now=now, top=0, hits=False)
    overrides.prefetch(state, ids)
    page.items = [OverviewRow(i, summaries[i.id], i.breaker_state()) for i in page.items]
    return page


# -- one integration -----------------------------------------------------------------------------


@dataclass
class Bucket:
    """One bar of the activity chart: the attempts created from `start` for the window's bar length."""

    start: datetime
    requests: int = 0
    errors: int = 0


def _bucket_start(state: AppState, column: Any, seconds: int) -> Any:
    """In SQL: the start, in seconds since the epoch, of the `seconds`-long bucket holding `column` (UTC).

    The length is written into the SQL, not bound: GROUP BY repeats the expression.
    """
    length = sa.literal_column(str(int(seconds)), sa.Integer)
    dialect = dialect_name(state.db.session)
    if dialect == "postgresql":
        return sa.func.floor(sa.extract("epoch", column) / length) * length
    if is_mysql(dialect):  # DATETIME(6) holding UTC: UNIX_TIMESTAMP() would read it in the session's zone
        since_epoch = sa.func.timestampdiff(sa.text("SECOND"), sa.literal_column("'1970-01-01'"), column)
        return sa.func.floor(since_epoch / length) * length
    return sa.cast(sa.func.strftime("%s", column), sa.Integer) // length * length  # integer division


def activity(state: AppState, integration_id: int, now: datetime, window: Window) -> list[Bucket]:
    """Requests and errors per bar of `window` (the current, partial one last), one query."""
    t = state.tables["requests"]
    length = window.bucket_seconds
    current = int(now.timestamp()) // length * length
    starts = [current - length * n for n in range(window.buckets - 1, -1, -1)]
    by_start = {start: Bucket(datetime.fromtimestamp(start, UTC)) for start in starts}
    key = _bucket_start(state, t.c.created_at, length).label("bucket")
    query = (
        sa.select(key, sa.func.count(), failed_count(t))
        .where(t.c.integration_id == integration_id, t.c.created_at >= by_start[starts[0]].start)
        .group_by(key)
    )
    for start, requests, errors in state.db.session.execute(query).all():
        bucket = by_start.get(int(start))
        if bucket is not None:
            bucket.requests, bucket.errors = int(requests), int(errors)
    return list(by_start.values())


#: What a status filter of "none" stands for: attempts without an HTTP status (connection errors).
NO_STATUS = (0, 0)


def status_range(value: str) -> tuple[int, int] | None:
    """A status filter as [low, high): '404' → (404, 405), '5xx' → (500, 600), 'none' → `NO_STATUS`.

    None when `value` is none of these (the pages report it).
    """
    status = value.strip().lower()
    if status == "none":
        return NO_STATUS
    if len(status) == 3 and status[0] in "12345" and status[1:] == "xx":
        low = int(status[0]) * 100
        return low, low + 100
    code = parse_int(status) if len(status) == 3 else None
    if code is not None and 100 <= code <= 599:
        return code, code + 1
    return None


def status_condition(t: sa.Table, value: str) -> Any | None:
    """The SQL condition of a status filter (see `status_range`); None for a blank or invalid one."""
    bounds = status_range(value) if value else None
    if bounds is None:
        return None
    if bounds == NO_STATUS:
        return t.c.status_code.is_(None)
    low, high = bounds
    return (
        t.c.status_code == low if high == low + 1 else sa.and_(t.c.status_code >= low, t.c.status_code < high)
    )


def endpoint_prefix(t: sa.Table, prefix: str) -> Any:
    """Endpoints starting with `prefix` (LIKE with its wildcards escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return t.c.endpoint.like(escaped + "%", escape="\\")


def failure_condition(t: sa.Table, value: str) -> Any | None:
    """A failure class, "none" (successful attempts) or "any" (every failed one); None when blank."""
    if value == "none":  # the pipeline classifies every failure it records
        return t.c.failure_class.is_(None)
    if value == "any":
        return failed(t)
    return t.c.failure_class == value if value else None


@dataclass
class RequestFilters:
    """The request log's filters, from the query string; blank means any."""

    endpoint: str = ""
    status: str = ""  # a code ("404"), a class ("4xx") or "none" (no status: connection errors)
    failure: str = ""  # a failure class, "none" for successful attempts, "any" for failed ones

    def conditions(self, t: sa.Table) -> list[Any]:
        where = [endpoint_prefix(t, self.endpoint)] if self.endpoint else []
        optional = (status_condition(t, self.status), failure_condition(t, self.failure))
        return where + [c for c in optional if c is not None]


def request_log(state: AppState, integration_id: int, filters: RequestFilters, number: int) -> Page:
    """A page of the integration's request rows, newest first, without their bodies."""
    t = state.tables["requests"]
    query = (
        sa.select(
            t.c.id,
            t.c.created_at,
            t.c.method,
            t.c.endpoint,
            t.c.status_code,
            t.c.duration_ms,
            t.c.failure_class,
            t.c.error,
            t.c.retry_of,
        )
        .where(t.c.integration_id == integration_id, *filters.conditions(t))
        .order_by(*(c.desc() for c in log_order(t)))
    )
    return fetch_page(state, query, number)


def log_order(t: sa.Table) -> tuple[Any, ...]:
    """The request log's order, newest first: `ix_{p}_req_int_figures`' own order after the
    integration, then the id. Ordering by (created_at, id) alone made MySQL and MariaDB (no
    incremental sort) sort every row of the integration for each page; only rows of the same
    microsecond come out differently."""
    return (t.c.created_at, *(t.c[name] for name in REQUEST_FIGURE_COLUMNS), t.c.id)


@dataclass
class LogNode:
    log: IntegrationLog
    children: list[LogNode] = field(default_factory=list)


def operation_tree(state: AppState, integration_id: int) -> list[LogNode]:
    """The newest top-level operation logs with their children, one query per level."""
    session = state.db.session
    top = IntegrationLog.for_integration(integration_id).top_level().newest_first().limit(OPERATIONS_SHOWN)
    roots = [LogNode(log) for log in session.scalars(top)]
    level = {node.log.id: node for node in roots}
    for _ in range(OPERATION_DEPTH):
        if not level:
            break
        children = session.scalars(
            sa.select(IntegrationLog)
            .where(IntegrationLog.parent_id.in_(list(level)))
            .order_by(IntegrationLog.id)
            .limit(CHILDREN_PER_LEVEL)
        )
        next_level = {}
        for child in children:
            node = LogNode(child)
            level[child.parent_id].children.append(node)
            next_level[child.id] = node
        level = next_level
    return roots


def recent_webhooks(state: AppState, integration_id: int) -> list[Any]:
    t = state.tables["webhooks"]
    query = (
        sa.select(
            t.c.id, t.c.created_at, t.c.event_type, t.c.delivery_id, t.c.status, t.c.attempts, t.c.error
        )
        .where(t.c.integration_id == integration_id)
        .order_by(t.c.created_at.desc(), t.c.id.desc())
        .limit(RECENT_WEBHOOKS)
    )
    return list(state.db.session.execute(query).all())


@dataclass
class SyncRun:
    log: Any
    items: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.items.values())


def sync_runs(state: AppState, integration_id: int) -> list[SyncRun]:
    """The newest `sync` run logs with their items counted by status (two queries)."""
    logs, items = state.tables["logs"], state.tables["sync_items"]
    runs = state.db.session.execute(
        sa.select(logs.c.id, logs.c.status, logs.c.created_at, logs.c.duration_ms, logs.c.error)
        .where(
            logs.c.integration_id == integration_id, logs.c.operation == "sync", logs.c.parent_id.is_(None)
        )
        .order_by(logs.c.created_at.desc(), logs.c.id.desc())
        .limit(RECENT_RUNS)
    ).all()
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    if runs:
        grouped = state.db.session.execute(
            sa.select(items.c.sync_log_id, items.c.status, sa.func.count())
            .where(items.c.sync_log_id.in_([r.id for r in runs]))
            .group_by(items.c.sync_log_id, items.c.status)
        )
        for log_id, status, count in grouped:
            counts[log_id][status] = int(count)
    return [SyncRun(run, counts.get(run.id, {})) for run in runs]


def mappings_count(state: AppState, integration_id: int) -> int:
    t = state.tables["mappings"]
    query = sa.select(sa.func.count()).select_from(t).where(t.c.integration_id == integration_id)
    return int(state.db.session.scalar(query) or 0)


def get_integration(state: AppState, integration_id: int) -> Integration | None:
    return state.db.session.get(Integration, integration_id)


def get_request(state: AppState, request_id: int) -> IntegrationRequest | None:
    return state.db.session.get(IntegrationRequest, request_id)


# -- across integrations -------------------------------------------------------------------------


def webhooks(
    state: AppState, status: str | None, provider: str | None, integration_id: int | None, number: int
) -> Page:
    """A page of webhooks, newest first, with their integration's name."""
    t, ints = state.tables["webhooks"], state.tables["integrations"]
    query = (
        sa.select(
            t.c.id,
            t.c.created_at,
            t.c.provider,
            t.c.integration_id,
            ints.c.name.label("integration_name"),
            t.c.event_type,
            t.c.delivery_id,
            t.c.status,
            t.c.attempts,
            t.c.error,
        )
        .select_from(t.outerjoin(ints, ints.c.id == t.c.integration_id))
        .order_by(t.c.id.desc())
    )
    query = _filtered(query, t, status=status, provider=provider, integration_id=integration_id)
    return fetch_page(state, query, number)


def sync_items(state: AppState, status: str | None, integration_id: int | None, number: int) -> Page:
    """A page of sync items (all statuses when `status` is None), newest first."""
    t, ints = state.tables["sync_items"], state.tables["integrations"]
    query = (
        sa.select(
            t.c.id,
            t.c.integration_id,
            ints.c.name.label("integration_name"),
            t.c.sync_log_id,
            t.c.event_class,
            t.c.external_id,
            t.c.status,
            t.c.attempts,
            t.c.error,
            t.c.updated_at,
        )
        .select_from(t.join(ints, ints.c.id == t.c.integration_id))
        .order_by(t.c.id.desc())
    )
    query = _filtered(query, t, status=status, integration_id=integration_id)
    return fetch_page(state, query, number)


def _filtered(query: sa.Select, t: sa.Table, **filters: Any) -> sa.Select:
    for name, value in filters.items():
        if value is not None and value != "":
            query = query.where(t.c[name] == value)
    return query


def get_row(state: AppState, kind: str, row_id: int) -> Any:
    """One row of a table by id, or None."""
    t = state.tables[kind]
    return state.db.session.execute(sa.select(t).where(t.c.id == row_id)).first()
