"""The dashboard's pages (GET)."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import render_template, request

from ...clock import as_utc, utcnow
from ...db.models import Integration
from ...db.statuses import FailureClass, HealthStatus, ItemStatus, WebhookStatus
from ...db.tables import MAX_ID
from ...health import incidents
from ...parsing import parse_int
from ...providers import HasHealthCheck, IncrementalSync, ScheduledSync
from ...state import current_state
from ...sync.staleness import stale_since
from ...webhooks import refusals
from . import details, explorer, queries, queues
from .blueprint import blueprint, found, page_number, report_invalid
from .chart import build_chart
from .formatting import MASK, Scrubber, credential_names, pretty_body, pretty_json
from .windows import DEFAULT_WINDOW, EXPLORER_WINDOWS, WINDOWS, Window

HEALTH_STATUSES = tuple(HealthStatus)
FAILURE_CLASSES = tuple(FailureClass)
#: A failure filter: a class, "none" (succeeded) or "any" (failed); see queries.failure_condition.
FAILURE_FILTERS = (*FAILURE_CLASSES, "none", "any")
RECEIVED_STATUSES = tuple(WebhookStatus)
FAILED = ItemStatus.FAILED
ITEM_STATUSES = (FAILED, ItemStatus.PENDING, ItemStatus.PROCESSING, ItemStatus.SUCCESS, ItemStatus.SKIPPED)
ALL = "all"
#: The longest duration filter taken, in milliseconds (a day).
MAX_DURATION_MS = 86_400_000


def _template(name: str) -> str:
    return f"flask_integrations/dashboard/{name}.html"


def _choice(name: str, allowed: tuple[str, ...] | list[str], default: str | None = None) -> str | None:
    """A query argument restricted to `allowed` values; anything else is reported and the default."""
    value = request.args.get(name, "")
    if value in allowed:
        return value
    if value:
        report_invalid(name, value, "one of " + ", ".join(allowed))
    return default


def _integer(name: str, expected: str = "an id") -> int | None:
    value = request.args.get(name, "")
    number = parse_int(value, maximum=MAX_ID) or None
    if value and number is None:
        report_invalid(name, value, expected)
    return number


def _window(windows: dict[str, Window] = WINDOWS) -> Window:
    """The `window` argument's window among `windows`; the default 24 h when absent or reported."""
    return windows[_choice("window", tuple(windows)) or DEFAULT_WINDOW.name]


def _window_template_args(window: Window) -> dict[str, object]:
    """What the pages' window selector and their links (which keep a chosen window) need."""
    return {
        "window": window,
        "windows": tuple(WINDOWS.values()),
        "window_arg": None if window == DEFAULT_WINDOW else window.name,
    }


def _status_filter() -> str:
    """The request log's status filter: a code (404), a class (5xx) or none; else reported."""
    value = request.args.get("status", "").strip()
    if value and queries.status_range(value) is None:
        report_invalid("status", value, "a status code such as 404, a class such as 5xx, or none")
        return ""
    return value


@blueprint.get("/")
def overview() -> str:
    state = current_state()
    providers = sorted(state.providers)
    provider, health = _choice("provider", providers), _choice("health", HEALTH_STATUSES)
    window = _window()
    page = queries.overview(state, provider, health, page_number(), utcnow(), window)
    return render_template(
        _template("overview"),
        page=page,
        providers=providers,
        health_statuses=HEALTH_STATUSES,
        provider=provider,
        health=health,
        **_window_template_args(window),
    )


@blueprint.get("/integrations/<id:integration_id>")
def integration(integration_id: int) -> str:
    state = current_state()
    found_integration = found(queries.get_integration(state, integration_id))
    provider = state.providers.get(found_integration.provider)
    filters = queries.RequestFilters(
        endpoint=_text("endpoint"),
        status=_status_filter(),
        failure=_choice("failure", FAILURE_FILTERS, ""),
    )
    window = _window()
    return render_template(
        _template("integration"),
        integration=found_integration,
        provider=provider,
        can_sync=isinstance(provider, (ScheduledSync, IncrementalSync)),
        can_check=isinstance(provider, HasHealthCheck),
        breaker=found_integration.breaker_state(),
        overrides=found_integration.overrides(),
        stale_since=stale_since(found_integration, state),
        incidents=incidents.incidents(state, integration_id),
        summary=found_integration.failure_summary(hours=window.hours),
        credentials=credential_names(found_integration),
        mask=MASK,
        metadata=pretty_json(found_integration.metadata),
        chart=build_chart(queries.activity(state, integration_id, utcnow(), window), window),
        requests=queries.request_log(state, integration_id, filters, page_number()),
        filters=filters,
        failure_classes=FAILURE_CLASSES,
        operations=queries.operation_tree(state, integration_id),
        webhooks=queries.recent_webhooks(state, integration_id),
        runs=queries.sync_runs(state, integration_id),
        mappings=queries.mappings_count(state, integration_id),
        scrub=Scrubber(found_integration),
        **_window_template_args(window),
    )


@blueprint.get("/requests/<id:request_id>")
def request_detail(request_id: int) -> str:
    state = current_state()
    row = found(queries.get_request(state, request_id))
    owner = state.db.session.get(Integration, row.integration_id)
    scrub = Scrubber(owner)
    return render_template(
        _template("request"),
        row=row,
        integration=owner,
        request_body=scrub(pretty_body(row.request_data)),
        response_body=scrub(pretty_body(row.response_data)),
        scrub=scrub,
    )


@blueprint.get("/requests")
def requests_explorer() -> str:
    state = current_state()
    providers = sorted(state.providers)
    filters, window = _explorer_filters(providers)
    before, after = _integer("before", "a request id"), _integer("after", "a request id")
    page = explorer.page(state, filters, before, after)
    if page is None:
        report_invalid("before" if before else "after", str(before or after), "the id of a stored request")
        page = explorer.page(state, filters)
    return render_template(
        _template("requests"),
        page=page,
        figures=explorer.figures(state, filters, page),
        filters=filters,
        window=window,
        windows=tuple(EXPLORER_WINDOWS.values()),
        providers=providers,
        failure_classes=FAILURE_CLASSES,
        count_limit=explorer.COUNT_LIMIT,
        sample_rows=explorer.SAMPLE_ROWS,
        paged=bool(before or after),
    )


def _explorer_filters(providers: list[str]) -> tuple[explorer.ExplorerFilters, Window | None]:
    """The explorer's filters from the query string, each invalid one reported and left out,
    and the window they cover (None when `from`/`to` replace it)."""
    since, until = _moment("from"), _moment("to", end_of_day=True)
    if since is not None and until is not None and until <= since:
        report_invalid("to", request.args["to"], "a moment after from")
        until = None
    window = None
    if since is None and until is None:
        window = _window(EXPLORER_WINDOWS)
        since = utcnow() - window.span
    duration = request.args.get("min_duration", "").strip()
    min_duration = parse_int(duration, maximum=MAX_DURATION_MS)
    if duration and min_duration is None:
        report_invalid("min_duration", duration, "a number of milliseconds")
    filters = explorer.ExplorerFilters(
        since=since,
        until=until,
        provider=_choice("provider", providers),
        integration_id=_integer("integration"),
        endpoint=_text("endpoint"),
        method=_text("method"),
        status=_status_filter(),
        failure_class=_choice("failure_class", FAILURE_FILTERS, "") or "",
        min_duration=min_duration,
        provider_request_id=_text("provider_request_id"),
    )
    return filters, window


def _text(name: str) -> str:
    """A free-text filter, without NUL (PostgreSQL refuses it) and surrounding blanks."""
    return request.args.get(name, "").replace("\x00", "").strip()


def _moment(name: str, end_of_day: bool = False) -> datetime | None:
    """An ISO date or date-time argument in UTC (naive means UTC); a date alone is its day's start
    (with `end_of_day`, the next day's start, so that `to=2026-12-05` takes in the whole day)."""
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        report_invalid(name, value, "a date or a date and time, such as 2026-12-01 or 2026-12-01T14:30")
        return None
    if end_of_day and len(value) == len("2026-12-01"):
        moment += timedelta(days=1)
    return as_utc(moment)


@blueprint.get("/webhooks")
def webhooks() -> str:
    state = current_state()
    providers = sorted(state.providers)
    status = _choice("status", RECEIVED_STATUSES)
    provider = _choice("provider", providers)
    integration_id = _integer("integration")
    page = queries.webhooks(state, status, provider, integration_id, page_number())
    return render_template(
        _template("webhooks"),
        page=page,
        statuses=RECEIVED_STATUSES,
        providers=providers,
        status=status,
        provider=provider,
        integration_id=integration_id,
        refused=refusals.last_day(state),
    )


@blueprint.get("/webhooks/<id:webhook_id>")
def webhook_detail(webhook_id: int) -> str:
    state = current_state()
    row = found(queries.get_row(state, "webhooks", webhook_id))
    owner = state.db.session.get(Integration, row.integration_id) if row.integration_id else None
    scrub = Scrubber(owner)
    return render_template(
        _template("webhook"),
        row=row,
        integration=owner,
        payload=scrub(pretty_body(details.redacted_payload(state, row.payload))),
        headers=scrub(pretty_json(row.headers)),
        attempts=details.webhook_attempts(state, row),
        duplicates=details.webhook_duplicates(state, row),
        original_id=details.original_of(state, row),
        scrub=scrub,
    )


@blueprint.get("/sync-runs/<id:log_id>")
def sync_run(log_id: int) -> str:
    state = current_state()
    status = _choice("status", ITEM_STATUSES)
    run = found(details.sync_run(state, log_id, status))
    owner = state.db.session.get(Integration, run.log.integration_id)
    metadata = run.log.metadata or {}
    return render_template(
        _template("sync_run"),
        run=run,
        integration=owner,
        statuses=ITEM_STATUSES,
        cursor_before=pretty_json(metadata.get("previous_cursor")),
        cursor_after=pretty_json(metadata["cursor"]) if "cursor" in metadata else None,
        request_ids=metadata.get("request_ids") or [],
        scrub=Scrubber(owner),
    )


@blueprint.get("/queues")
def queues_page() -> str:
    state = current_state()
    redis_mode = bool(state.setting("REDIS_URL"))
    figures, workers, unreachable = [], [], None
    if redis_mode:
        try:
            figures, workers = queues.rq_figures(state)
        except Exception as exc:  # noqa: BLE001 - Redis down: say so on the page, never a 500
            unreachable = type(exc).__name__
    return render_template(
        _template("queues"),
        redis_mode=redis_mode,
        queues=figures,
        workers=workers,
        unreachable=unreachable,
        waiting=queues.waiting_rows(state),
        now=utcnow(),
    )


@blueprint.get("/sync-items")
def sync_items() -> str:
    state = current_state()
    status = _choice("status", [*ITEM_STATUSES, ALL], FAILED)
    integration_id = _integer("integration")
    page = queries.sync_items(state, None if status == ALL else status, integration_id, page_number())
    return render_template(
        _template("sync_items"),
        page=page,
        statuses=ITEM_STATUSES,
        status=status,
        integration_id=integration_id,
        failed=FAILED,
    )
