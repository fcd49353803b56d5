"""The dashboard's pages (GET)."""

from __future__ import annotations

from flask import render_template, request

from ...clock import utcnow
from ...db.models import Integration
from ...db.statuses import FailureClass, HealthStatus, ItemStatus, WebhookStatus
from ...db.tables import MAX_ID
from ...health import incidents
from ...parsing import parse_int
from ...providers import HasHealthCheck, IncrementalSync, ScheduledSync
from ...state import current_state
from ...sync.staleness import stale_since
from ...webhooks import refusals
from . import details, queries, queues
from .blueprint import blueprint, found, page_number, report_invalid
from .chart import build_chart
from .formatting import MASK, Scrubber, credential_names, pretty_body, pretty_json
from .windows import DEFAULT_WINDOW, WINDOWS, Window

HEALTH_STATUSES = tuple(HealthStatus)
FAILURE_CLASSES = tuple(FailureClass)
RECEIVED_STATUSES = tuple(WebhookStatus)
FAILED = ItemStatus.FAILED
ITEM_STATUSES = (FAILED, ItemStatus.PENDING, ItemStatus.PROCESSING, ItemStatus.SUCCESS, ItemStatus.SKIPPED)
ALL = "all"


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


def _integer(name: str) -> int | None:
    value = request.args.get(name, "")
    number = parse_int(value, maximum=MAX_ID) or None
    if value and number is None:
        report_invalid(name, value, "an id")
    return number


def _window() -> Window:
    """The `window` argument's window (`1h`, `24h`, `7d`); the default 24 h when absent or reported."""
    return WINDOWS[_choice("window", tuple(WINDOWS)) or DEFAULT_WINDOW.name]


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
    lowered = value.lower()
    code = parse_int(lowered) if len(lowered) == 3 else None
    if not value or lowered == "none" or (code is not None and 100 <= code <= 599):
        return value
    if len(lowered) == 3 and lowered[0] in "12345" and lowered[1:] == "xx":
        return value
    report_invalid("status", value, "a status code such as 404, a class such as 5xx, or none")
    return ""


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
        endpoint=request.args.get("endpoint", "").replace("\x00", "").strip(),  # PostgreSQL refuses NUL
        status=_status_filter(),
        failure=_choice("failure", [*FAILURE_CLASSES, "none"], ""),
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
