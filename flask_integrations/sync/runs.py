"""Sync runs: claiming a run, and the provider's enumeration of its items.

- `start_run` claims the integration: one conditional UPDATE on its row (a row
  lock held to the commit), then, under that lock, a check that no `sync` log
  of the integration younger than `lock_ttl` is `processing`, then the run's
  log (status `processing`). Two `flask integrations sync` at once: the second
  waits on the row lock, then sees the first's log and starts nothing.
- `sync_integration` (a job) runs the provider's enumeration; the items and the
  log's ``enumerated`` mark commit together, and the `process_sync_items` jobs
  (see items.py) are dispatched after that commit.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from uuid import uuid4

import sqlalchemy as sa

from ..clock import utcnow
from ..db.dialects import is_mysql
from ..db.models import Integration, IntegrationLog
from ..db.statuses import HealthStatus, LogStatus
from ..db.transactions import dialect_name, mark_row_locks
from ..logs import append_request_ids, collect_request_ids, operation_context
from ..providers import IncrementalSync, ScheduledSync
from ..queue import enqueue
from ..queue.names import SYNC_ENUMERATION_ABANDONED, SYNC_INTEGRATION
from ..state import AppState, current_state
from .finalise import finalise, maybe_finalise
from .items import enqueue_items, safe_error
from .pacing import run_queue
from .positions import end_enumeration, resume_point, write_run_metadata
from .session import SyncSession

logger = logging.getLogger("flask_integrations")


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
            t.c.health_status != HealthStatus.DISABLED,
            sa.or_(t.c.next_sync_at.is_(None), t.c.next_sync_at <= now),
        ]
    locked = session.execute(sa.update(t).where(*conditions).values(updated_at=now)).rowcount
    if not locked:
        session.rollback()
        return None
    if is_mysql(dialect_name(session)):  # the log's foreign key check would wait on this row lock
        mark_row_locks(session)
    lock_ttl = int(state.setting("SYNC")["lock_ttl"])
    in_flight = session.execute(
        sa.select(logs.c.id)
        .where(
            logs.c.integration_id == integration_id,
            logs.c.operation == "sync",
            logs.c.parent_id.is_(None),
            logs.c.status == LogStatus.PROCESSING,
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
        LogStatus.PROCESSING,
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
    enqueue_run(state, integration.id, log.id, integration.provider)
    return log


def enqueue_run(state: AppState, integration_id: int, log_id: int, provider_key: str) -> None:
    """Enqueue the enumeration of a claimed run (with a callback for a worker that dies in it)."""
    state.db.session.commit()  # reading the ids may have begun a transaction: the job would wait for it
    enqueue(
        state,
        SYNC_INTEGRATION,
        integration_id,
        log_id,
        queue=run_queue(state, provider_key),
        on_failure=SYNC_ENUMERATION_ABANDONED,
    )


def enumeration_abandoned(
    integration_id: int | None, log_id: int | None, error: str = "the worker enumerating the run died"
) -> int:
    """RQ failed the enumeration job itself (its worker died, it timed out), or the sweep found it
    unfinished after `lock_ttl`: the items it saved still run, then the run ends `failed`, and
    the next run resumes at its saved position. Returns 1 when this call ended the enumeration."""
    state = current_state()
    log = state.db.session.get(IntegrationLog, log_id) if log_id is not None else None
    if log is None or log.status != LogStatus.PROCESSING or (log.metadata or {}).get("enumerated"):
        state.db.session.rollback()
        return 0
    logger.warning("flask-integrations: sync run %s: %s", log_id, error)
    end_enumeration(state, log_id, error)
    maybe_finalise(state, log_id)
    return 1


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
    if log is None or integration is None or log.status != LogStatus.PROCESSING:
        return None
    metadata = dict(log.metadata or {})
    if metadata.get("enumerated"):
        return None
    provider = state.provider(integration.provider)
    provider_key = integration.provider
    run = SyncSession(
        state,
        integration,
        log_id,
        metadata.get("batch_id") or uuid4().hex,
        integration.sync_cursor,
        position=_resume(state, integration_id, log_id, metadata),
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
            patch = {"enumerated": True, "item_count": len(run.item_ids), "stopped_at_max_items": run.stopped}
            write_run_metadata(state, log_id, patch)
            enqueue_items(state, provider_key, run.item_ids[run.enqueued :], group=run.batch_id)
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
            end_enumeration(state, log_id, error, run.enqueued)
            return maybe_finalise(state, log_id) or LogStatus.PROCESSING
    append_request_ids(log_id, request_ids)
    if not run.item_ids:
        return finalise(state, log_id)
    return LogStatus.PROCESSING


def _resume(state: AppState, integration_id: int, log_id: int, metadata: dict) -> object:
    """The position this run starts at, written to its log at once (a crash before its first
    `save_position` must not lose it); None for a run that starts from the beginning."""
    if "resumed_from" in metadata:  # the job runs again (RQ retried it): keep what was decided
        return metadata.get("position")
    position, chain = resume_point(state, integration_id, log_id)
    if chain:
        write_run_metadata(state, log_id, {"position": position, "resumed_from": chain})
        state.db.session.commit()
        logger.info("flask-integrations: sync run %s resumes run %s at its saved position", log_id, chain[-1])
    return position
