"""The queues page's figures: RQ's queues and workers (Redis mode, read through RQ's own API), or
what waits for a sweep (embedded mode)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ...clock import as_utc, utcnow
from ...db.statuses import ItemStatus, WebhookStatus
from ...queue import queue_names, redis_connection, rq_queue
from ...state import AppState


@dataclass(frozen=True)
class QueueFigures:
    """One RQ queue: jobs by registry, and how long its oldest queued job has waited (seconds)."""

    name: str
    queued: int
    started: int
    scheduled: int
    deferred: int
    failed: int
    oldest_wait: float | None


@dataclass(frozen=True)
class WorkerRow:
    name: str
    state: str
    queues: list[str]
    current_job: str | None
    last_heartbeat: datetime | None


def rq_figures(state: AppState) -> tuple[list[QueueFigures], list[WorkerRow]]:
    """The extension's queues and every worker listening on one of them."""
    from rq import Worker

    connection = redis_connection(state)
    names = queue_names(state)
    queues = [_queue_figures(rq_queue(state, name)) for name in names]
    workers = [
        WorkerRow(
            name=worker.name,
            state=str(worker.get_state()),
            queues=worker.queue_names(),
            current_job=worker.get_current_job_id(),
            last_heartbeat=as_utc(worker.last_heartbeat) if worker.last_heartbeat else None,
        )
        for worker in Worker.all(connection=connection)
        if set(worker.queue_names()) & set(names)
    ]
    return queues, sorted(workers, key=lambda w: w.name)


def _queue_figures(queue: Any) -> QueueFigures:
    from rq.job import Job

    oldest_wait = None
    first = queue.get_job_ids(0, 1)
    if first:
        job = Job.fetch(first[0], connection=queue.connection)
        if job.enqueued_at is not None:
            oldest_wait = (utcnow() - as_utc(job.enqueued_at)).total_seconds()
    return QueueFigures(
        name=queue.name,
        queued=queue.count,
        started=queue.started_job_registry.count,
        scheduled=queue.scheduled_job_registry.count,
        deferred=queue.deferred_job_registry.count,
        failed=queue.failed_job_registry.count,
        oldest_wait=oldest_wait,
    )


def waiting_rows(state: AppState) -> dict[str, int]:
    """Embedded mode: the rows a sweep (``flask integrations sync`` / ``recover-webhooks``) picks up."""
    items, webhooks = state.tables["sync_items"], state.tables["webhooks"]
    session = state.db.session
    return {
        "pending sync items": int(
            session.scalar(
                sa.select(sa.func.count()).select_from(items).where(items.c.status == ItemStatus.PENDING)
            )
            or 0
        ),
        "pending webhooks": int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(webhooks)
                .where(webhooks.c.status == WebhookStatus.PENDING)
            )
            or 0
        ),
    }
