"""Finalising a sync run, exactly once: its outcome, its cursor, its pacing, its signals.

`finalise` claims the run with a conditional UPDATE on its log's status, in the same
transaction as the new cursor: exactly one process finalises. Call `maybe_finalise`
only after your items' statuses committed: two jobs checking inside their own
transactions could each see the other's items unfinished, and the run would never end.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from .. import signals
from ..clock import utcnow
from ..db.models import Integration, IntegrationLog
from ..db.statuses import TERMINAL_ITEM_STATUSES, ItemStatus, LogStatus
from ..db.transactions import dialect_name
from ..logs import STATUS_SIGNALS
from ..logs.writing import merged_metadata
from ..queue import enqueue
from ..queue.names import SYNC_REPORT_DELETIONS
from ..state import AppState
from .pacing import next_sync_at, run_queue
from .staleness import consecutive_failed_runs


def run_chain(metadata: dict[str, Any] | None, log_id: int) -> list[int]:
    """The run `log_id` and the crashed runs it continues (see positions.py)."""
    return [*(metadata or {}).get("resumed_from", []), log_id]


logger = logging.getLogger("flask_integrations")


def maybe_finalise(state: AppState, log_id: int) -> str | None:
    """Finalise the run if every item of it is terminal (call after your statuses committed)."""
    t = state.tables["sync_items"]
    open_items = state.db.session.execute(
        sa.select(sa.func.count()).where(t.c.sync_log_id == log_id, t.c.status.not_in(TERMINAL_ITEM_STATUSES))
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
    enumeration_error = enumeration_error or metadata.get("enumeration_error")
    first = log.status == LogStatus.PROCESSING
    if enumeration_error is None and not metadata.get("enumerated"):
        return None  # still enumerating, or an enumeration that failed: never finalised from items
    if not first and log.status not in (LogStatus.PARTIAL, LogStatus.FAILED):
        return None
    counts = dict(
        session.execute(
            sa.select(items.c.status, sa.func.count())
            .where(items.c.sync_log_id == log_id)
            .group_by(items.c.status)
        ).all()
    )
    if any(counts.get(s) for s in (ItemStatus.PENDING, ItemStatus.PROCESSING)):
        session.commit()
        return None
    succeeded = counts.get(ItemStatus.SUCCESS, 0)
    skipped, failed = counts.get(ItemStatus.SKIPPED, 0), counts.get(ItemStatus.FAILED, 0)
    if enumeration_error is not None:
        status = LogStatus.FAILED
    elif failed:
        status = LogStatus.PARTIAL if succeeded else LogStatus.FAILED
    else:
        status = LogStatus.SUCCESS
    if not first and status != LogStatus.SUCCESS:
        session.commit()
        return None
    integration = session.get(Integration, log.integration_id)
    now = utcnow()
    patch = {"success_count": succeeded, "skipped_count": skipped, "failure_count": failed}
    values: dict[str, Any] = {
        "status": status,
        "updated_at": now,
        "metadata": merged_metadata(logs.c.metadata, patch, dialect_name(state.engine())),
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
    if status == LogStatus.SUCCESS:
        checkpoints = (
            session.execute(
                sa.select(items.c.checkpoint_value).where(
                    items.c.sync_log_id.in_(run_chain(metadata, log_id)),
                    items.c.status.in_((ItemStatus.SUCCESS, ItemStatus.SKIPPED)),
                    items.c.checkpoint_value.is_not(None),
                )
            )
            .scalars()
            .all()
        )
        cursor = next_cursor(state.provider(integration.provider), integration.sync_cursor, checkpoints)
        if cursor != integration.sync_cursor:
            session.execute(sa.update(ints).where(ints.c.id == integration.id).values(sync_cursor=cursor))
        session.execute(  # the run's page shows the cursor before and after it
            sa.update(logs)
            .where(logs.c.id == log_id)
            .values(
                metadata=merged_metadata(logs.c.metadata, {"cursor": cursor}, dialect_name(state.engine()))
            )
        )
    if first and status != LogStatus.SUCCESS:
        failed_runs = consecutive_failed_runs(state, integration.id) if status == LogStatus.FAILED else 0
        paced = next_sync_at(integration, state, now, failed_runs)
        session.execute(sa.update(ints).where(ints.c.id == integration.id).values(next_sync_at=paced))
    session.commit()
    session.expire(integration)
    if first and status == LogStatus.SUCCESS:
        integration.mark_synced()
        provider = state.provider(integration.provider)
        if getattr(provider, "detects_deletions", False) and not metadata.get("stopped_at_max_items"):
            enqueue(state, SYNC_REPORT_DELETIONS, log_id, queue=run_queue(state, integration.provider))
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
