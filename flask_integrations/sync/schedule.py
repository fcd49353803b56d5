"""Which integrations are due, starting their runs, and sweeping up after dead workers.

`flask integrations sync` (from cron) and `flask_integrations.cron.sync_due` call `sweep`
then `start_due`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..db.models import Integration, IntegrationLog
from ..db.statuses import HealthStatus, ItemStatus, LogStatus
from ..providers import IncrementalSync, ScheduledSync
from ..state import AppState
from .finalise import maybe_finalise
from .items import enqueue_items
from .pacing import item_delay
from .runs import enqueue_run, enumeration_abandoned, start_run
from .staleness import detect_stale


def due_integrations(state: AppState) -> list[int]:
    """Active, not disabled, `next_sync_at` NULL or passed, with a known interval."""
    t = state.tables["integrations"]
    now = utcnow()
    rows = state.db.session.execute(
        sa.select(t.c.id, t.c.provider, t.c.sync_interval_minutes)
        .where(
            t.c.is_active.is_(True),
            t.c.health_status != HealthStatus.DISABLED,
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
    enqueue_run(state, integration_id, log.id, state.db.session.get(Integration, integration_id).provider)
    return log


def start_due(state: AppState) -> list[IntegrationLog]:
    """Start a run of every due integration; returns the run logs of those started."""
    started = [start_run_and_enqueue(state, integration_id) for integration_id in due_integrations(state)]
    return [log for log in started if log is not None]


def sweep(state: AppState, processing_timeout: float | None = None, now: Any = None) -> dict[str, int]:
    """Reset items a dead worker left `processing`, re-enqueue pending items whose wait has passed,
    fail runs whose enumeration never finished within `lock_ttl`, re-finalise complete runs, and
    signal integrations whose syncs went stale."""
    session = state.db.session
    items, logs = state.tables["sync_items"], state.tables["logs"]
    now = now or utcnow()
    settings = state.setting("SYNC")
    lock_ttl = int(settings["lock_ttl"])
    lost_after = int(settings["pending_timeout"])  # a never-tried pending item whose job was lost
    timeout = lock_ttl if processing_timeout is None else processing_timeout
    reset = session.execute(
        sa.update(items)
        .where(items.c.status == ItemStatus.PROCESSING, items.c.updated_at < now - timedelta(seconds=timeout))
        .values(status=ItemStatus.PENDING, updated_at=now - timedelta(seconds=lost_after + 1))
    ).rowcount
    session.commit()
    shortest = min([lost_after, *[float(b) for b in settings["item_backoff"]]])
    rows = session.execute(
        sa.select(items.c.id, items.c.attempts, items.c.updated_at, Integration.provider)
        .join(Integration.__table__, Integration.__table__.c.id == items.c.integration_id)
        .where(items.c.status == ItemStatus.PENDING, items.c.updated_at <= now - timedelta(seconds=shortest))
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
            logs.c.status == LogStatus.PROCESSING,
            logs.c.created_at < now - timedelta(seconds=lock_ttl),
        )
    ).all()
    session.commit()
    abandoned = 0
    for row in stale:
        if not (row.metadata or {}).get("enumerated"):
            abandoned += enumeration_abandoned(None, row.id, "the enumeration did not finish within lock_ttl")
    finalised = advance(state)
    return {
        "reset": reset,
        "requeued": sum(len(v) for v in due.values()),
        "abandoned": abandoned,
        "finalised": finalised,
        "stale": detect_stale(state),
    }


def advance(state: AppState, integration_id: int | None = None) -> int:
    """Re-finalise every run whose items are all terminal (stuck or since skipped/retried)."""
    session = state.db.session
    logs = state.tables["logs"]
    query = sa.select(logs.c.id).where(
        logs.c.operation == "sync",
        logs.c.parent_id.is_(None),
        logs.c.status.in_((LogStatus.PROCESSING, LogStatus.PARTIAL, LogStatus.FAILED)),
    )
    if integration_id is not None:
        query = query.where(logs.c.integration_id == integration_id)
    ids = session.execute(query.order_by(logs.c.id)).scalars().all()
    session.commit()
    return sum(maybe_finalise(state, log_id) is not None for log_id in ids)
