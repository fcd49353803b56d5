"""Sync runs: claim, enumerate, process items, finalise exactly once, sweep.

- `start_run` claims the integration: one conditional UPDATE on its row (a row
  lock held to the commit), then, under that lock, a check that no `sync` log
  of the integration younger than `lock_ttl` is `processing`, then the run's
  log (status `processing`). Two `flask integrations sync` at once: the second
  waits on the row lock, then sees the first's log and starts nothing.
- `sync_integration` runs the provider's enumeration; the items and the
  log's ``enumerated`` mark commit together, and the `process_sync_items`
  jobs (up to `items_per_job` ids each; in Redis mode one RQ group named by
  the run's batch id) are dispatched after that commit.
- `process_sync_items` claims its pending items in one UPDATE, runs each
  handler (the handler's work commits item by item), writes the successes in
  one UPDATE, retries a raising item alone with `item_backoff`, and only then
  (after its statuses committed) checks whether the run is complete.
- `finalise` claims the run with a conditional UPDATE on its log's status, in
  the same transaction as the new cursor: exactly one process finalises.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import uuid4

import sqlalchemy as sa

from .. import health, signals
from ..clock import utcnow
from ..logs import STATUS_SIGNALS, _merged_metadata, append_request_ids, operation_context
from ..models import Integration, IntegrationLog, IntegrationSyncItem
from ..pipeline.redact import exception_text, integration_secrets
from ..pipeline.timeline import collect_request_ids
from ..providers import IncrementalSync, ScheduledSync
from ..queue import attempt_note, enqueue
from ..state import AppState, current_state
from .session import SyncSession

logger = logging.getLogger("flask_integrations")

PENDING, PROCESSING, SUCCESS, SKIPPED, FAILED, PARTIAL = (
    "pending",
    "processing",
    "success",
    "skipped",
    "failed",
    "partial",
)
TERMINAL = (SUCCESS, SKIPPED, FAILED)
_MAX_ERROR_BYTES = 8192


class UnknownSyncEvent(LookupError):
    """No handler is registered for an item's event."""


# -- queues -------------------------------------------------------------------------------------


def run_queue(state: AppState, provider_key: str) -> str:
    sync = state.setting("SYNC")
    return sync["queues"].get(provider_key) or sync["queue"]


def item_queue(state: AppState, provider_key: str) -> str:
    return state.setting("SYNC").get("item_queue") or run_queue(state, provider_key)


def enqueue_items(
    state: AppState, provider_key: str, ids: list[int], delay: float | None = None, group: str | None = None
) -> int:
    """Enqueue `process_sync_items` jobs of up to `items_per_job` ids; returns how many jobs.

    With `group` (a run's batch id) the jobs go to RQ as one group of that name (Redis mode).
    """
    size = max(1, int(state.setting("SYNC")["items_per_job"]))
    queue = item_queue(state, provider_key)
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    for chunk in chunks:
        enqueue(
            state,
            process_sync_items,
            list(chunk),
            queue=queue,
            delay=delay,
            on_failure=items_abandoned,
            group=group,
        )
    return len(chunks)


# -- starting a run -----------------------------------------------------------------------------


def start_run(state: AppState, integration_id: int, due_only: bool = False) -> IntegrationLog | None:
    """Claim a run of the integration and write its `sync` log; None if a run is in flight (or not due)."""
    session = state.db.session
    session.commit()
    t = state.tables["integrations"]
    logs = state.tables["logs"]
    now = utcnow()
    conditions = [t.c.id == integration_id]
    if due_only:
        conditions += [
            t.c.is_active.is_(True),
            t.c.health_status != health.DISABLED,
            sa.or_(t.c.next_sync_at.is_(None), t.c.next_sync_at <= now),
        ]
    locked = session.execute(sa.update(t).where(*conditions).values(updated_at=now)).rowcount
    if not locked:
        session.rollback()
        return None
    lock_ttl = int(state.setting("SYNC")["lock_ttl"])
    in_flight = session.execute(
        sa.select(logs.c.id)
        .where(
            logs.c.integration_id == integration_id,
            logs.c.operation == "sync",
            logs.c.parent_id.is_(None),
            logs.c.status == PROCESSING,
            logs.c.created_at > now - timedelta(seconds=lock_ttl),
        )
        .limit(1)
    ).first()
    if in_flight is not None:
        session.rollback()
        return None
    integration = session.get(Integration, integration_id)
    batch_id = uuid4().hex
    log = integration.log_operation(
        "sync",
        "inbound",
        PROCESSING,
        summary=f"sync of {integration.provider} #{integration.id}",
        metadata={"batch_id": batch_id, "previous_cursor": integration.sync_cursor},
    )
    session.commit()
    return log


def sync_now(integration: Integration) -> IntegrationLog | None:
    """Start a run at once; None if one is in flight. The enumeration runs as a job.

    The claim is its own transaction: work pending in the session is committed first.
    """
    state = current_state()
    log = start_run(state, integration.id)
    if log is None:
        return None
    args, queue = (integration.id, log.id), run_queue(state, integration.provider)
    state.db.session.commit()  # reading the ids may have begun a transaction: the job would wait for it
    enqueue(state, sync_integration, *args, queue=queue)
    return log


# -- the run ------------------------------------------------------------------------------------


def sync_integration(integration_id: int, log_id: int | None = None) -> str | None:
    """Enumerate one run and enqueue its items; claims a run itself when `log_id` is None."""
    state = current_state()
    session = state.db.session
    if log_id is None:
        log = start_run(state, integration_id)
        if log is None:
            logger.info("flask-integrations: a sync of integration %s is in flight: skipped", integration_id)
            return None
        log_id = log.id
    log = session.get(IntegrationLog, log_id)
    integration = session.get(Integration, integration_id)
    if log is None or integration is None or log.status != PROCESSING:
        return None
    metadata = dict(log.metadata or {})
    if metadata.get("enumerated"):
        return None
    provider = state.provider(integration.provider)
    provider_key = integration.provider
    run = SyncSession(
        state, integration, log_id, metadata.get("batch_id") or uuid4().hex, integration.sync_cursor
    )
    with operation_context(integration, "sync"), collect_request_ids() as request_ids:
        try:
            if isinstance(provider, ScheduledSync):
                provider.sync(integration, run)
            if isinstance(provider, IncrementalSync):
                provider.sync_incremental(integration, run)
            if not isinstance(provider, (ScheduledSync, IncrementalSync)):
                raise TypeError(f"provider {provider_key!r} has no sync() or sync_incremental()")
            run.flush()
            _mark_enumerated(state, log_id, len(run.item_ids), run.stopped)
            enqueue_items(state, provider_key, run.item_ids, group=run.batch_id)
            session.commit()
            logger.info(
                "flask-integrations: sync run %s of integration %s dispatched %s item(s)",
                log_id,
                integration_id,
                len(run.item_ids),
            )
        except Exception as exc:
            session.rollback()
            error = safe_error(integration, exc)
            logger.warning("flask-integrations: sync of integration %s failed: %s", integration_id, error)
            append_request_ids(log_id, request_ids)
            finalise(state, log_id, enumeration_error=error)
            return FAILED
    append_request_ids(log_id, request_ids)
    if not run.item_ids:
        return finalise(state, log_id)
    return PROCESSING


def _mark_enumerated(state: AppState, log_id: int, count: int, stopped: bool) -> None:
    logs = state.tables["logs"]
    patch = {"enumerated": True, "item_count": count, "stopped_at_max_items": stopped}
    state.db.session.execute(
        sa.update(logs)
        .where(logs.c.id == log_id)
        .values(metadata=_merged_metadata(logs.c.metadata, patch, _dialect(state)), updated_at=utcnow())
    )


# -- items --------------------------------------------------------------------------------------


def process_sync_items(item_ids: list[int]) -> dict[str, int]:
    """Process the pending items among `item_ids`; returns counts by outcome."""
    state = current_state()
    session = state.db.session
    t = state.tables["sync_items"]
    claimed = (
        session.execute(
            sa.update(t)
            .where(t.c.id.in_(list(item_ids)), t.c.status == PENDING)
            .values(status=PROCESSING, attempts=t.c.attempts + 1, updated_at=utcnow())
            .returning(t.c.id)
        )
        .scalars()
        .all()
    )
    session.commit()
    outcome = {SUCCESS: 0, PENDING: 0, FAILED: 0}
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
    for row in rows:
        integration = integrations.get(row.integration_id) or session.get(Integration, row.integration_id)
        integrations[row.integration_id] = integration
        with operation_context(integration, "sync"):
            try:
                handler = handlers.get(row.event_class)
                if handler is None:
                    raise UnknownSyncEvent(
                        f"no sync handler is registered for event {row.event_class!r}; register one with "
                        "@integrations.sync_handler(...) in a module the worker imports"
                    )
                handler(integration, row.payload)
                session.commit()
                succeeded.append(row.id)
                outcome[SUCCESS] += 1
            except Exception as exc:
                session.rollback()
                outcome[_item_failed(state, integration, row, exc)] += 1
    if succeeded:
        session.execute(
            sa.update(t)
            .where(t.c.id.in_(succeeded), t.c.status == PROCESSING)
            .values(status=SUCCESS, error=None, completed_at=utcnow(), updated_at=utcnow())
        )
        session.commit()
    for log_id in sorted({row.sync_log_id for row in rows if row.sync_log_id is not None}):
        maybe_finalise(state, log_id)
    return outcome


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
        .where(t.c.id.in_(list(item_ids)), t.c.status == PROCESSING)
    ).all()
    lost = "the worker running this item was lost (killed, or the job timed out)"
    retry = [r for r in rows if r.attempts < tries]
    exhausted = [r.id for r in rows if r.attempts >= tries]
    requeued: list[int] = []
    if retry:
        requeued = list(
            session.execute(
                sa.update(t)
                .where(t.c.id.in_([r.id for r in retry]), t.c.status == PROCESSING)
                .values(status=PENDING, error=lost, updated_at=now)
                .returning(t.c.id)
            ).scalars()
        )
        enqueue_items(state, retry[0].provider, requeued)
    if exhausted:
        session.execute(
            sa.update(t)
            .where(t.c.id.in_(exhausted), t.c.status == PROCESSING)
            .values(status=FAILED, error=lost, completed_at=now, updated_at=now)
        )
    session.commit()
    for log_id in sorted({r.sync_log_id for r in rows if r.sync_log_id is not None}):
        maybe_finalise(state, log_id)
    return len(requeued)


def _item_failed(state: AppState, integration: Integration, row: Any, exc: BaseException) -> str:
    """Back to `pending` with a delayed job of its own, or `failed` after `item_tries`."""
    session = state.db.session
    t = state.tables["sync_items"]
    error = safe_error(integration, exc)
    sync = state.setting("SYNC")
    retry = row.attempts < int(sync["item_tries"]) and not isinstance(exc, UnknownSyncEvent)
    now = utcnow()
    if retry:
        values = {"status": PENDING, "error": error, "updated_at": now}
    else:
        values = {"status": FAILED, "error": error, "completed_at": now, "updated_at": now}
    written = session.execute(
        sa.update(t).where(t.c.id == row.id, t.c.status == PROCESSING).values(**values)
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
    return PENDING if retry else FAILED


def item_delay(state: AppState, attempts: int) -> float:
    """Seconds before the retry that follows attempt number `attempts`."""
    backoff = list(state.setting("SYNC")["item_backoff"]) or [0]
    return float(backoff[min(max(attempts, 1), len(backoff)) - 1])


def safe_error(integration: Integration | None, exc: BaseException) -> str:
    return exception_text(exc, integration_secrets(integration), _MAX_ERROR_BYTES)


# -- finalisation -------------------------------------------------------------------------------


def maybe_finalise(state: AppState, log_id: int) -> str | None:
    """Finalise the run if every item of it is terminal (call after your statuses committed)."""
    t = state.tables["sync_items"]
    open_items = state.db.session.execute(
        sa.select(sa.func.count()).where(t.c.sync_log_id == log_id, t.c.status.not_in(TERMINAL))
    ).scalar_one()
    state.db.session.commit()
    if open_items:
        return None
    return finalise(state, log_id)


def finalise(state: AppState, log_id: int, enumeration_error: str | None = None) -> str | None:
    """Claim the run (its log's status, read then conditionally updated) and apply its outcome.

    A `processing` run is finalised once. A `partial`/`failed` run whose
    failed items were since skipped or retried successfully is finalised again,
    once, to `success` (the cursor catches up). Returns the new status, or
    None when there was nothing to do or another process did it.
    """
    session = state.db.session
    logs, items, ints = state.tables["logs"], state.tables["sync_items"], state.tables["integrations"]
    log = session.execute(
        sa.select(logs.c.status, logs.c.metadata, logs.c.integration_id, logs.c.created_at).where(
            logs.c.id == log_id
        )
    ).one_or_none()
    if log is None:
        return None
    metadata = log.metadata or {}
    first = log.status == PROCESSING
    if enumeration_error is None and not metadata.get("enumerated"):
        return None  # still enumerating, or an enumeration that failed: never finalised from items
    if not first and log.status not in (PARTIAL, FAILED):
        return None
    counts = dict(
        session.execute(
            sa.select(items.c.status, sa.func.count())
            .where(items.c.sync_log_id == log_id)
            .group_by(items.c.status)
        ).all()
    )
    if any(counts.get(s) for s in (PENDING, PROCESSING)):
        session.commit()
        return None
    succeeded, skipped, failed = counts.get(SUCCESS, 0), counts.get(SKIPPED, 0), counts.get(FAILED, 0)
    if enumeration_error is not None:
        status = FAILED
    elif failed:
        status = PARTIAL if succeeded else FAILED
    else:
        status = SUCCESS
    if not first and status != SUCCESS:
        session.commit()
        return None
    integration = session.get(Integration, log.integration_id)
    now = utcnow()
    patch = {"success_count": succeeded, "skipped_count": skipped, "failure_count": failed}
    values: dict[str, Any] = {
        "status": status,
        "updated_at": now,
        "metadata": _merged_metadata(logs.c.metadata, patch, _dialect(state)),
    }
    if first:
        values["duration_ms"] = int((now - log.created_at).total_seconds() * 1000)
    if enumeration_error is not None:
        values["error"] = enumeration_error
    elif failed:
        values["error"] = f"{failed} item(s) failed"
    else:  # a partial/failed run whose items were since skipped or retried: its old error is gone
        values["error"] = None
    claimed = session.execute(
        sa.update(logs).where(logs.c.id == log_id, logs.c.status == log.status).values(**values)
    ).rowcount
    if not claimed:
        session.rollback()
        return None
    if status == SUCCESS:
        checkpoints = (
            session.execute(
                sa.select(items.c.checkpoint_value).where(
                    items.c.sync_log_id == log_id,
                    items.c.status.in_((SUCCESS, SKIPPED)),
                    items.c.checkpoint_value.is_not(None),
                )
            )
            .scalars()
            .all()
        )
        cursor = next_cursor(state.provider(integration.provider), integration.sync_cursor, checkpoints)
        if cursor != integration.sync_cursor:
            session.execute(sa.update(ints).where(ints.c.id == integration.id).values(sync_cursor=cursor))
    if first and status != SUCCESS:
        paced = health.next_sync_at(integration, state, now)
        session.execute(sa.update(ints).where(ints.c.id == integration.id).values(next_sync_at=paced))
    session.commit()
    session.expire(integration)
    if first and status == SUCCESS:
        integration.mark_synced()
        session.commit()
    _send_signals(state, log_id, integration, status)
    logger.info(
        "flask-integrations: sync run %s of integration %s: %s %s", log_id, integration.id, status, patch
    )
    return status


def next_cursor(provider: Any, previous: Any, checkpoints: list[Any]) -> Any:
    """`reduce_checkpoints([previous] + checkpoints)`, never behind `previous`."""
    if not checkpoints:
        return previous
    candidate = provider.reduce_checkpoints([previous, *checkpoints])
    if previous is None:
        return candidate
    return candidate if provider.reduce_checkpoints([previous, candidate]) == candidate else previous


def _send_signals(state: AppState, log_id: int, integration: Integration, status: str) -> None:
    log = state.db.session.get(IntegrationLog, log_id)
    signal = STATUS_SIGNALS.get(status)
    if signal is not None:
        signal.send(state.app, log=log, integration=integration)
    signals.sync_completed.send(state.app, integration=integration, log=log, status=status)


def _dialect(state: AppState) -> str:
    return state.db.engine.dialect.name


# -- recovery -----------------------------------------------------------------------------------


def sweep(state: AppState, processing_timeout: float | None = None, now: Any = None) -> dict[str, int]:
    """Reset items a dead worker left `processing`, re-enqueue pending items whose wait has passed,
    fail runs whose enumeration never finished within `lock_ttl`, and re-finalise complete runs."""
    session = state.db.session
    items, logs = state.tables["sync_items"], state.tables["logs"]
    now = now or utcnow()
    settings = state.setting("SYNC")
    lock_ttl = int(settings["lock_ttl"])
    lost_after = int(settings["pending_timeout"])  # a never-tried pending item whose job was lost
    timeout = lock_ttl if processing_timeout is None else processing_timeout
    reset = session.execute(
        sa.update(items)
        .where(items.c.status == PROCESSING, items.c.updated_at < now - timedelta(seconds=timeout))
        .values(status=PENDING, updated_at=now - timedelta(seconds=lost_after + 1))
    ).rowcount
    session.commit()
    shortest = min([lost_after, *[float(b) for b in settings["item_backoff"]]])
    rows = session.execute(
        sa.select(items.c.id, items.c.attempts, items.c.updated_at, Integration.provider)
        .join(Integration.__table__, Integration.__table__.c.id == items.c.integration_id)
        .where(items.c.status == PENDING, items.c.updated_at <= now - timedelta(seconds=shortest))
        .order_by(items.c.id)
        .limit(int(settings["max_items_per_run"]))
    ).all()
    due: dict[str, list[int]] = {}
    for row in rows:
        wait = item_delay(state, row.attempts) if row.attempts else lost_after
        if row.updated_at <= now - timedelta(seconds=wait):
            due.setdefault(row.provider, []).append(row.id)
    for provider_key, ids in due.items():
        enqueue_items(state, provider_key, ids)
    session.commit()
    stale = session.execute(
        sa.select(logs.c.id, logs.c.metadata).where(
            logs.c.operation == "sync",
            logs.c.parent_id.is_(None),
            logs.c.status == PROCESSING,
            logs.c.created_at < now - timedelta(seconds=lock_ttl),
        )
    ).all()
    session.commit()
    abandoned = 0
    for row in stale:
        if not (row.metadata or {}).get("enumerated"):
            error = "the enumeration did not finish within lock_ttl"
            abandoned += finalise(state, row.id, enumeration_error=error) is not None
    finalised = advance(state)
    return {
        "reset": reset,
        "requeued": sum(len(v) for v in due.values()),
        "abandoned": abandoned,
        "finalised": finalised,
    }


def advance(state: AppState, integration_id: int | None = None) -> int:
    """Re-finalise every run whose items are all terminal (stuck or since skipped/retried)."""
    session = state.db.session
    logs = state.tables["logs"]
    query = sa.select(logs.c.id).where(
        logs.c.operation == "sync",
        logs.c.parent_id.is_(None),
        logs.c.status.in_((PROCESSING, PARTIAL, FAILED)),
    )
    if integration_id is not None:
        query = query.where(logs.c.integration_id == integration_id)
    ids = session.execute(query.order_by(logs.c.id)).scalars().all()
    session.commit()
    return sum(maybe_finalise(state, log_id) is not None for log_id in ids)


def due_integrations(state: AppState) -> list[int]:
    """Active, not disabled, `next_sync_at` NULL or passed, with a known interval."""
    t = state.tables["integrations"]
    now = utcnow()
    rows = state.db.session.execute(
        sa.select(t.c.id, t.c.provider, t.c.sync_interval_minutes)
        .where(
            t.c.is_active.is_(True),
            t.c.health_status != health.DISABLED,
            sa.or_(t.c.next_sync_at.is_(None), t.c.next_sync_at <= now),
        )
        .order_by(t.c.id)
    ).all()
    due = []
    for row in rows:
        provider = state.providers.get(row.provider)
        if not isinstance(provider, (ScheduledSync, IncrementalSync)):
            continue
        if row.sync_interval_minutes or getattr(provider, "sync_interval", None):
            due.append(row.id)
    return due


def start_run_and_enqueue(state: AppState, integration_id: int) -> IntegrationLog | None:
    """Claim a run of a due integration and enqueue its enumeration; None if not due or in flight."""
    log = start_run(state, integration_id, due_only=True)
    if log is None:
        return None
    provider_key = state.db.session.get(Integration, integration_id).provider
    log_id = log.id
    state.db.session.commit()
    enqueue(state, sync_integration, integration_id, log_id, queue=run_queue(state, provider_key))
    return log


def start_due(state: AppState) -> list[IntegrationLog]:
    """Start a run of every due integration; returns the run logs of those started."""
    started = [start_run_and_enqueue(state, integration_id) for integration_id in due_integrations(state)]
    return [log for log in started if log is not None]


__all__ = [
    "advance",
    "due_integrations",
    "finalise",
    "items_abandoned",
    "maybe_finalise",
    "process_sync_items",
    "start_due",
    "start_run_and_enqueue",
    "start_run",
    "sweep",
    "sync_integration",
    "sync_now",
]


# -- operator actions ---------------------------------------------------------------------------


class ItemError(Exception):
    """An operator action on a sync item that cannot be done (unknown id, wrong status)."""


def _item_row(state: AppState, item_id: int) -> Any:
    t = state.tables["sync_items"]
    row = state.db.session.execute(
        sa.select(t.c.id, t.c.status, t.c.sync_log_id, t.c.integration_id).where(t.c.id == item_id)
    ).one_or_none()
    if row is None:
        raise ItemError(f"sync item {item_id} does not exist.")
    return row


def skip_item(state: AppState, item_id: int) -> str | None:
    """Mark a `failed` item `skipped`, then re-finalise its run; returns the run's new status, if any."""
    session = state.db.session
    t = state.tables["sync_items"]
    row = _item_row(state, item_id)
    if row.status != FAILED:
        raise ItemError(f"sync item {item_id} is {row.status}: only failed items can be skipped.")
    skipped = session.execute(
        sa.update(t)
        .where(t.c.id == item_id, t.c.status == FAILED)
        .values(status=SKIPPED, updated_at=utcnow())
    ).rowcount
    session.commit()
    if not skipped:
        raise ItemError(f"sync item {item_id} changed status meanwhile: try again.")
    return maybe_finalise(state, row.sync_log_id) if row.sync_log_id is not None else None


def retry_item(state: AppState, item_id: int) -> None:
    """Send a `failed` (or waiting `pending`) item back to a worker, with a fresh count of tries."""
    session = state.db.session
    t = state.tables["sync_items"]
    row = _item_row(state, item_id)
    if row.status not in (FAILED, PENDING):
        raise ItemError(f"sync item {item_id} is {row.status}: only failed or pending items can be retried.")
    provider_key = session.get(Integration, row.integration_id).provider
    retried = session.execute(
        sa.update(t)
        .where(t.c.id == item_id, t.c.status == row.status)
        .values(status=PENDING, attempts=0, completed_at=None, updated_at=utcnow())
    ).rowcount
    if not retried:
        session.rollback()
        raise ItemError(f"sync item {item_id} changed status meanwhile: try again.")
    enqueue_items(state, provider_key, [item_id])
    session.commit()


def failed_items(state: AppState, integration_id: int | None = None, since: Any = None) -> list[Any]:
    t = state.tables["sync_items"]
    query = sa.select(t).where(t.c.status == FAILED).order_by(t.c.id)
    if integration_id is not None:
        query = query.where(t.c.integration_id == integration_id)
    if since is not None:
        query = query.where(t.c.updated_at >= since)
    return list(state.db.session.execute(query).all())
