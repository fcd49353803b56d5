"""The dashboard's actions (POST): each checks the CSRF token, does its work through the service
functions the CLI uses, flashes one sentence and redirects back to the page it came from.

An action that does not apply (a provider without sync, a skip of an item that
has not failed, ...) flashes an error instead; an unknown id is a 404.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, abort, flash, url_for

from ...db.models import Integration
from ...health.checks import check_and_record
from ...providers import HasHealthCheck, IncrementalSync, ScheduledSync
from ...state import AppState, current_state
from ...sync.admin import ItemError, retry_failed_items, skip_failed_items
from ...sync.admin import retry_item as retry_sync_item
from ...sync.admin import skip_item as skip_sync_item
from ...webhooks.recovery import ReplayError, replay
from ..access import require_csrf
from . import queries
from .blueprint import back_to, blueprint, found

SUCCESS, ERROR = "success", "error"

Outcome = tuple[str, str]  # (category, message)


def _named(integration: Integration) -> str:
    return f"“{integration.name}”"


def _sentence(text: str) -> str:
    """An error message of the services as a sentence: capital first letter, final full stop."""
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


# -- integrations --------------------------------------------------------------------------------


def _enable(state: AppState, integration: Integration) -> Outcome:
    integration.enable()
    state.db.session.commit()  # health writes wait for the end of the transaction
    return SUCCESS, f"{_named(integration)} enabled: active and healthy again."


def _disable(state: AppState, integration: Integration) -> Outcome:
    integration.disable()
    state.db.session.commit()
    return SUCCESS, f"{_named(integration)} disabled: no outbound calls or syncs until it is enabled."


def _sync_now(state: AppState, integration: Integration) -> Outcome:
    provider = state.providers.get(integration.provider)
    if not isinstance(provider, (ScheduledSync, IncrementalSync)):
        return ERROR, f"{_named(integration)} cannot sync: its provider has no sync() or sync_incremental()."
    if not integration.is_active:
        return ERROR, f"{_named(integration)} is disabled: enable it before starting a sync."
    log = integration.sync_now()
    if log is None:
        return ERROR, f"A sync run of {_named(integration)} is already in flight."
    return SUCCESS, f"Sync run #{log.id} of {_named(integration)} started."


def _health_check(state: AppState, integration: Integration) -> Outcome:
    provider = state.providers.get(integration.provider)
    if not isinstance(provider, HasHealthCheck):
        return ERROR, f"{_named(integration)} has no health check: its provider does not offer one."
    passed, detail = check_and_record(state, provider, integration)
    health = f"health is {integration.health_status}"
    if passed:
        return SUCCESS, f"Health check of {_named(integration)} passed; {health}."
    return ERROR, f"Health check of {_named(integration)} failed ({detail}); {health}."


def _reset_breaker(state: AppState, integration: Integration) -> Outcome:
    integration.reset_breaker()
    return SUCCESS, f"Circuit breaker of {_named(integration)} reset: closed."


INTEGRATION_ACTIONS: dict[str, Callable[[AppState, Integration], Outcome]] = {
    "enable": _enable,
    "disable": _disable,
    "sync-now": _sync_now,
    "health-check": _health_check,
    "reset-breaker": _reset_breaker,
}


@blueprint.post("/integrations/<id:integration_id>/<action>")
def integration_action(integration_id: int, action: str) -> Response:
    require_csrf()
    perform = INTEGRATION_ACTIONS.get(action)
    if perform is None:
        abort(404)
    state = current_state()
    integration = found(queries.get_integration(state, integration_id))
    category, message = perform(state, integration)
    flash(message, category)
    return back_to(url_for(".integration", integration_id=integration_id))


# -- webhooks and sync items ---------------------------------------------------------------------


@blueprint.post("/webhooks/<id:webhook_id>/replay")
def replay_webhook(webhook_id: int) -> Response:
    require_csrf()
    state = current_state()
    webhook = found(queries.get_row(state, "webhooks", webhook_id))
    try:
        replay(state, webhook_id)
    except ReplayError as exc:
        flash(_sentence(str(exc)), ERROR)
    else:
        flash(f"Webhook #{webhook_id} re-enqueued.", SUCCESS)
    if webhook.integration_id is None:
        return back_to(url_for(".webhooks"))
    return back_to(url_for(".integration", integration_id=webhook.integration_id))


def _item_action(item_id: int, perform: Callable[[AppState, int], str]) -> Response:
    require_csrf()
    state = current_state()
    item = found(queries.get_row(state, "sync_items", item_id))
    try:
        message = perform(state, item_id)
    except ItemError as exc:
        state.db.session.rollback()
        flash(_sentence(str(exc)), ERROR)
    else:
        flash(message, SUCCESS)
    return back_to(url_for(".integration", integration_id=item.integration_id))


def _retry(state: AppState, item_id: int) -> str:
    retry_sync_item(state, item_id)
    return f"Sync item #{item_id} sent back to a worker."


def _skip(state: AppState, item_id: int) -> str:
    run_status = skip_sync_item(state, item_id)
    return f"Sync item #{item_id} skipped." + (f" Its run is now {run_status}." if run_status else "")


def _run_action(log_id: int, perform: Callable[[AppState, int], str]) -> Response:
    require_csrf()
    state = current_state()
    found(queries.get_row(state, "logs", log_id))
    flash(perform(state, log_id), SUCCESS)
    return back_to(url_for(".sync_run", log_id=log_id))


def _retry_all(state: AppState, log_id: int) -> str:
    return f"{retry_failed_items(state, log_id)} failed item(s) of run #{log_id} sent back to a worker."


def _skip_all(state: AppState, log_id: int) -> str:
    skipped, run_status = skip_failed_items(state, log_id)
    return f"{skipped} failed item(s) of run #{log_id} skipped." + (
        f" The run is now {run_status}." if run_status else ""
    )


@blueprint.post("/sync-runs/<id:log_id>/retry-failed")
def retry_failed(log_id: int) -> Response:
    return _run_action(log_id, _retry_all)


@blueprint.post("/sync-runs/<id:log_id>/skip-failed")
def skip_failed(log_id: int) -> Response:
    return _run_action(log_id, _skip_all)


@blueprint.post("/sync-items/<id:item_id>/retry")
def retry_item(item_id: int) -> Response:
    return _item_action(item_id, _retry)


@blueprint.post("/sync-items/<id:item_id>/skip")
def skip_item(item_id: int) -> Response:
    return _item_action(item_id, _skip)
