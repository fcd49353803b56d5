"""The `process_webhook` job: claim, route to the provider's handler, record the outcome."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..db.dialects import update_returning
from ..db.models import IntegrationWebhook
from ..db.statuses import LogStatus, WebhookStatus
from ..logs import operation_context
from ..providers import NO_HANDLER, HandlesWebhooks
from ..queue import attempt_note, enqueue
from ..queue.names import PROCESS_WEBHOOK
from ..redaction import error_text
from ..state import AppState, current_state

logger = logging.getLogger("flask_integrations")

_MAX_ERROR_BYTES = 8192


def process_webhook(webhook_id: int, attempts_seen: int | None = None) -> str | None:
    """Process one stored webhook; returns its new status (None if another job has it).

    The claim (`pending` -> `processing`, ``attempts + 1``) is one conditional
    UPDATE; `attempts_seen` makes it a fencing token, so a re-enqueued job and
    a slow original cannot both run, and the final status is written only if
    this job's claim still holds. The handler's own database work commits in
    the same transaction as the final status.
    """
    state = current_state()
    session = state.db.session
    table = state.tables["webhooks"]
    conditions = [table.c.id == webhook_id, table.c.status == WebhookStatus.PENDING]
    if attempts_seen is not None:
        conditions.append(table.c.attempts == attempts_seen)
    values = {"status": WebhookStatus.PROCESSING, "attempts": table.c.attempts + 1, "updated_at": utcnow()}
    rows = update_returning(session, table, conditions, values, [table.c.attempts])
    claimed = rows[0].attempts if rows else None
    session.commit()
    if claimed is None:
        logger.info("flask-integrations: webhook %s is not pending (or was claimed): skipped", webhook_id)
        return None

    webhook = session.get(IntegrationWebhook, webhook_id)
    integration = webhook.integration
    started = time.monotonic()
    try:
        with _context(integration):
            handled = _run_handler(state, webhook, integration)
    except Exception as exc:
        session.rollback()
        return _record_failure(state, webhook_id, claimed, integration, exc, started)
    return _record_success(state, webhook, claimed, integration, handled, started)


def enqueue_processing(
    state: AppState, webhook_id: int, attempts_seen: int, delay: float | None = None
) -> None:
    """Enqueue `process_webhook` for a stored row; `attempts_seen` fences the claim (see there)."""
    settings = state.setting("WEBHOOK")
    enqueue(
        state,
        PROCESS_WEBHOOK,
        webhook_id,
        attempts_seen,
        queue=settings["queue"],
        delay=delay,
        job_timeout=int(settings["processing_timeout"]),
    )


def retry_delay(state: AppState, attempts: int) -> float:
    """Seconds a failed webhook waits before its next attempt."""
    return float(state.setting("WEBHOOK")["retry_delay"]) * attempts


def _context(integration: Any) -> Any:
    return operation_context(integration, "webhook") if integration is not None else nullcontext()


def _run_handler(state: AppState, webhook: IntegrationWebhook, integration: Any) -> bool:
    """Call the handler for the event; False when the provider has none for it."""
    provider = state.provider(webhook.provider)
    if not isinstance(provider, HandlesWebhooks):
        raise TypeError(f"provider {webhook.provider!r} no longer handles webhooks")
    handler = provider.webhook_handlers().get(webhook.event_type) if webhook.event_type else None
    if handler is not None:
        handler(integration, webhook)
        return True
    return provider.handle_webhook(integration, webhook) is not NO_HANDLER


def _finish(state: AppState, webhook_id: int, claimed: int, **values: Any) -> bool:
    table = state.tables["webhooks"]
    return bool(
        state.db.session.execute(
            sa.update(table)
            .where(
                table.c.id == webhook_id,
                table.c.status == WebhookStatus.PROCESSING,
                table.c.attempts == claimed,
            )
            .values(updated_at=utcnow(), **values)
        ).rowcount
    )


def _record_success(
    state: AppState,
    webhook: IntegrationWebhook,
    claimed: int,
    integration: Any,
    handled: bool,
    started: float,
) -> str | None:
    session = state.db.session
    webhook_id, event_type, delivery_id = webhook.id, webhook.event_type, webhook.delivery_id
    if not _finish(
        state, webhook_id, claimed, status=WebhookStatus.PROCESSED, processed_at=utcnow(), error=None
    ):
        session.rollback()
        logger.warning(
            "flask-integrations: webhook %s was reclaimed while processing: result dropped", webhook_id
        )
        return None
    note = None if handled else f"no handler for event {event_type!r}"
    if note:
        logger.info("flask-integrations: webhook %s: %s", webhook_id, note)
    _write_log(
        state,
        integration,
        webhook_id,
        event_type,
        delivery_id,
        claimed,
        LogStatus.SUCCESS,
        started,
        note=note,
    )
    session.commit()
    return WebhookStatus.PROCESSED


def _record_failure(
    state: AppState, webhook_id: int, claimed: int, integration: Any, exc: BaseException, started: float
) -> str | None:
    session = state.db.session
    error = _safe_error(integration, exc)
    max_attempts = int(state.setting("WEBHOOK")["max_attempts"])
    retry = claimed < max_attempts
    status = WebhookStatus.PENDING if retry else WebhookStatus.FAILED
    if not _finish(state, webhook_id, claimed, status=status, error=error):
        session.rollback()
        return None
    row = session.execute(
        sa.select(state.tables["webhooks"].c.event_type, state.tables["webhooks"].c.delivery_id).where(
            state.tables["webhooks"].c.id == webhook_id
        )
    ).one()
    _write_log(
        state,
        integration,
        webhook_id,
        row.event_type,
        row.delivery_id,
        claimed,
        LogStatus.FAILED,
        started,
        error=error,
    )
    if retry:
        enqueue_processing(state, webhook_id, claimed, delay=retry_delay(state, claimed))
    session.commit()
    logger.warning(
        "flask-integrations: webhook %s failed (%s): %s",
        webhook_id,
        attempt_note(claimed, max_attempts, retry),
        error,
    )
    return status


def _safe_error(integration: Any, exc: BaseException) -> str:
    """The error text with the integration's credential values scrubbed, cut to a sane size."""
    return error_text(exc, integration, _MAX_ERROR_BYTES)


def _write_log(
    state: AppState,
    integration: Any,
    webhook_id: int,
    event_type: str | None,
    delivery_id: str | None,
    attempt: int,
    status: str,
    started: float,
    note: str | None = None,
    error: str | None = None,
) -> None:
    """One operation log (`webhook`, inbound) per attempt; none without an integration."""
    if integration is None:
        return
    metadata: dict[str, Any] = {
        "webhook_id": webhook_id,
        "event_type": event_type,
        "delivery_id": delivery_id,
        "attempt": attempt,
    }
    if note:
        metadata["note"] = note
    summary = f"{event_type or 'webhook'} #{webhook_id}" + (" (no handler)" if note else "")
    try:
        integration.log_operation(
            "webhook",
            "inbound",
            status,
            summary=summary[:255],
            external_id=delivery_id,
            metadata=metadata,
            error=error,
            duration_ms=(time.monotonic() - started) * 1000,
        )
    except Exception:  # the log is a record of the outcome, never a reason to lose it
        logger.exception("flask-integrations: could not write the operation log of webhook %s", webhook_id)
