"""Sync items: the `process_sync_items` job, each item's retries, and items a dead worker left.

`process_sync_items` claims its pending items in one UPDATE and runs each handler inside a
SAVEPOINT (a raising handler's work is undone alone); the successes are written in one UPDATE
that commits with their handlers' work, at least every `BATCH_SECONDS`. A raising item is
retried alone with `item_backoff` (a rate-limited one is deferred until the limit allows,
its try given back), and only then (after its statuses committed) the job
checks whether the run is complete (finalise.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa

from .. import signals
from ..clock import utcnow
from ..db.dialects import update_returning
from ..db.models import Integration, IntegrationSyncItem
from ..db.statuses import FailureClass, ItemStatus
from ..errors import RateLimitExceeded
from ..logs import operation_context
from ..pipeline import classify
from ..pipeline.classify import THROTTLE_DELAY
from ..queue import attempt_note, enqueue
from ..queue.names import PROCESS_SYNC_ITEMS, SYNC_ITEMS_ABANDONED
from ..redaction import error_text
from ..state import AppState, current_state
from .finalise import maybe_finalise
from .pacing import item_delay, item_queue

logger = logging.getLogger("flask_integrations")

#: An error stored for a run or an item is cut to this many bytes.
MAX_ERROR_BYTES = 8192
#: Handlers' work and their items' `success` commit together at least this often (seconds):
#: one commit per batch instead of one per item, and a dead worker loses at most a batch.
BATCH_SECONDS = 1.0
#: Bounds of a rate-limited item's deferral: no busy loop, and a day at most (the longest window).
MIN_DEFERRAL, MAX_DEFERRAL = 1.0, 86400.0


class UnknownSyncEvent(LookupError):
    """No handler is registered for an item's event."""


def enqueue_items(
    state: AppState,
    provider_key: str,
    ids: list[int],
    delay: float | None = None,
    group: str | None = None,
    wait_out_delay: bool = False,
) -> int:
    """Enqueue `process_sync_items` jobs of up to `items_per_job` ids; returns how many jobs.

    With `group` (a run's batch id) the jobs go to RQ as one group of that name (Redis mode);
    `wait_out_delay` see `queue.enqueue`.
    """
    size = max(1, int(state.setting("SYNC")["items_per_job"]))
    queue = item_queue(state, provider_key)
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    for chunk in chunks:
        enqueue(
            state,
            PROCESS_SYNC_ITEMS,
            list(chunk),
            queue=queue,
            delay=delay,
            on_failure=SYNC_ITEMS_ABANDONED,
            group=group,
            wait_out_delay=wait_out_delay,
        )
    return len(chunks)


def process_sync_items(item_ids: list[int]) -> dict[str, int]:
    """Process the pending items among `item_ids`; returns counts by outcome."""
    state = current_state()
    session = state.db.session
    t = state.tables["sync_items"]
    claimed = [
        row.id
        for row in update_returning(
            session,
            t,
            [t.c.id.in_(list(item_ids)), t.c.status == ItemStatus.PENDING],
            {"status": ItemStatus.PROCESSING, "attempts": t.c.attempts + 1, "updated_at": utcnow()},
            [t.c.id],
        )
    ]
    session.commit()
    outcome = {ItemStatus.SUCCESS: 0, ItemStatus.PENDING: 0, ItemStatus.FAILED: 0}
    if not claimed:
        return outcome
    rows = session.execute(
        sa.select(t.c.id, t.c.integration_id, t.c.event_class, t.c.payload, t.c.sync_log_id, t.c.attempts)
        .where(t.c.id.in_(claimed))
        .order_by(t.c.id)
    ).all()
    handlers = state.app.extensions["integrations"].sync_handlers()
    integrations: dict[int, Integration] = {}
    succeeded: list[int] = []
    failures: list[tuple[Any, BaseException]] = []
    batch_started = time.monotonic()
    for row in rows:
        integration = integrations.get(row.integration_id) or session.get(Integration, row.integration_id)
        integrations[row.integration_id] = integration
        with operation_context(integration, "sync"):
            try:
                with session.begin_nested():  # a raising handler's work is undone alone
                    handler_for(state, integration, row.event_class, handlers)(integration, row.payload)
            except Exception as exc:
                failures.append((row, exc))
                continue
        succeeded.append(row.id)
        if time.monotonic() - batch_started > BATCH_SECONDS:
            outcome[ItemStatus.SUCCESS] += _commit_successes(state, succeeded)
            succeeded, batch_started = [], time.monotonic()
    outcome[ItemStatus.SUCCESS] += _commit_successes(state, succeeded)
    for row, exc in failures:
        outcome[_item_failed(state, integrations[row.integration_id], row, exc)] += 1
    for log_id in sorted({row.sync_log_id for row in rows if row.sync_log_id is not None}):
        maybe_finalise(state, log_id)
    return outcome


def _commit_successes(state: AppState, item_ids: list[int]) -> int:
    """Mark these items `success` in the transaction that holds their handlers' work, and commit it."""
    t = state.tables["sync_items"]
    if item_ids:
        now = utcnow()
        state.db.session.execute(
            sa.update(t)
            .where(t.c.id.in_(item_ids), t.c.status == ItemStatus.PROCESSING)
            .values(status=ItemStatus.SUCCESS, error=None, completed_at=now, updated_at=now)
        )
    state.db.session.commit()
    return len(item_ids)


def handler_for(state: AppState, integration: Integration, event: str, handlers: dict[str, Any]) -> Any:
    """The handler of an item: its provider's `@on_sync_item` method, else `@integrations.sync_handler`."""
    provider = state.providers.get(integration.provider)
    method = provider.sync_item_handler(event) if hasattr(provider, "sync_item_handler") else None
    handler = method or handlers.get(event)
    if handler is None:
        raise UnknownSyncEvent(
            f"no sync handler is registered for event {event!r}: give the provider an "
            f"@on_sync_item({event!r}) method, or register one with @integrations.sync_handler(...) "
            "in a module the worker imports"
        )
    return handler


def items_abandoned(item_ids: list[int]) -> int:
    """RQ failed a `process_sync_items` job itself (its worker died, it timed out): the items it left
    `processing` go back to `pending` and to a worker again, or become `failed` once out of tries.

    Returns how many items were re-enqueued.
    """
    state = current_state()
    session = state.db.session
    t = state.tables["sync_items"]
    tries = int(state.setting("SYNC")["item_tries"])
    now = utcnow()
    rows = session.execute(
        sa.select(t.c.id, t.c.attempts, t.c.sync_log_id, Integration.provider)
        .join(Integration.__table__, Integration.__table__.c.id == t.c.integration_id)
        .where(t.c.id.in_(list(item_ids)), t.c.status == ItemStatus.PROCESSING)
    ).all()
    lost = "the worker running this item was lost (killed, or the job timed out)"
    retry = [r for r in rows if r.attempts < tries]
    exhausted = [r.id for r in rows if r.attempts >= tries]
    requeued: list[int] = []
    if retry:
        where = [t.c.id.in_([r.id for r in retry]), t.c.status == ItemStatus.PROCESSING]
        values = {"status": ItemStatus.PENDING, "error": lost, "updated_at": now}
        requeued = [row.id for row in update_returning(session, t, where, values, [t.c.id])]
        enqueue_items(state, retry[0].provider, requeued)
    if exhausted:
        session.execute(
            sa.update(t)
            .where(t.c.id.in_(exhausted), t.c.status == ItemStatus.PROCESSING)
            .values(status=ItemStatus.FAILED, error=lost, completed_at=now, updated_at=now)
        )
    session.commit()
    for log_id in sorted({r.sync_log_id for r in rows if r.sync_log_id is not None}):
        maybe_finalise(state, log_id)
    return len(requeued)


def _item_failed(state: AppState, integration: Integration, row: Any, exc: BaseException) -> str:
    """Back to `pending` with a delayed job of its own, or `failed` after `item_tries`; a
    rate-limited item is deferred without using a try."""
    wait = throttle_wait(state, integration, exc)
    if wait is not None:
        return _defer(state, integration, row, exc, wait)
    session = state.db.session
    t = state.tables["sync_items"]
    error = safe_error(integration, exc)
    sync = state.setting("SYNC")
    retry = row.attempts < int(sync["item_tries"]) and not isinstance(exc, UnknownSyncEvent)
    now = utcnow()
    if retry:
        values = {"status": ItemStatus.PENDING, "error": error, "updated_at": now}
    else:
        values = {"status": ItemStatus.FAILED, "error": error, "completed_at": now, "updated_at": now}
    written = session.execute(
        sa.update(t).where(t.c.id == row.id, t.c.status == ItemStatus.PROCESSING).values(**values)
    ).rowcount
    if written and retry:
        enqueue_items(state, integration.provider, [row.id], delay=item_delay(state, row.attempts))
    session.commit()
    logger.warning(
        "flask-integrations: sync item %s (%s) failed (%s): %s",
        row.id,
        row.event_class,
        attempt_note(row.attempts, int(sync["item_tries"]), retry),
        error,
    )
    if written and not retry:
        signals.sync_item_failed.send(state.app, item=session.get(IntegrationSyncItem, row.id), error=error)
    return ItemStatus.PENDING if retry else ItemStatus.FAILED


def throttle_wait(state: AppState, integration: Integration, exc: BaseException) -> float | None:
    """Seconds until the limit a handler hit (our limiter, an upstream 429, a provider's own
    throttle class) lets calls through again; None for any other failure."""
    provider = state.providers.get(integration.provider)
    told = classify.provider_failure_class(provider, exc, None)
    if (told or classify.classify_exception(exc)) != FailureClass.THROTTLE:
        return None
    ours = next((link for link in classify.chain(exc) if isinstance(link, RateLimitExceeded)), None)
    found = ours.retry_after if ours is not None else classify.find_retry_after(exc)
    return min(max(found if found is not None else THROTTLE_DELAY, MIN_DEFERRAL), MAX_DEFERRAL)


def _defer(state: AppState, integration: Integration, row: Any, exc: BaseException, wait: float) -> str:
    """Back to `pending`, its try given back, with a job due when the limit allows."""
    session = state.db.session
    t = state.tables["sync_items"]
    error = f"deferred {wait:.0f} s, rate limited: {safe_error(integration, exc)}"
    written = session.execute(
        sa.update(t)
        .where(t.c.id == row.id, t.c.status == ItemStatus.PROCESSING)
        .values(
            status=ItemStatus.PENDING,
            attempts=t.c.attempts - 1,
            error=error[:MAX_ERROR_BYTES],
            updated_at=utcnow(),
        )
    ).rowcount
    if written:
        enqueue_items(state, integration.provider, [row.id], delay=wait, wait_out_delay=True)
    session.commit()
    logger.info("flask-integrations: sync item %s (%s) %s", row.id, row.event_class, error)
    return ItemStatus.PENDING


def safe_error(integration: Integration | None, exc: BaseException) -> str:
    """An exception as stored for a run or an item: `Type: message`, secrets scrubbed, size-capped."""
    return error_text(exc, integration, MAX_ERROR_BYTES)
