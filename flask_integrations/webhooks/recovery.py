"""Webhooks a dead worker or a lost job left behind, and replays asked for by an operator."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from ..clock import as_utc, utcnow
from ..db.dialects import update_returning
from ..db.statuses import WebhookStatus
from ..state import AppState
from .jobs import enqueue_processing, retry_delay


@dataclass
class Recovered:
    stale_processing: int = 0
    pending: int = 0


def recover(state: AppState, batch_size: int = 500) -> Recovered:
    """Re-enqueue webhooks a dead worker or a lost job left behind.

    `processing` rows older than `processing_timeout` go back to `pending`
    (conditional on the attempts value seen: a slow job that is still alive
    cannot then finish them) and are re-enqueued. `pending` rows are
    re-enqueued once older than `pending_timeout`, or - for a retry - once
    its delay has passed (embedded mode: the delay alone; Redis mode: the
    delay plus `pending_timeout`, since RQ's scheduler is due to run it).
    """
    session = state.db.session
    table = state.tables["webhooks"]
    settings = state.setting("WEBHOOK")
    embedded = not state.setting("REDIS_URL")
    now = utcnow()
    result = Recovered()

    stale_before = now - timedelta(seconds=settings["processing_timeout"])
    for row in _scan(
        session,
        table,
        table.c.status == WebhookStatus.PROCESSING,
        table.c.updated_at < stale_before,
        batch_size=batch_size,
    ):
        reset = session.execute(
            sa.update(table)
            .where(
                table.c.id == row.id,
                table.c.status == WebhookStatus.PROCESSING,
                table.c.attempts == row.attempts,
            )
            .values(status=WebhookStatus.PENDING, updated_at=now)
        ).rowcount
        if reset:
            enqueue_processing(state, row.id, row.attempts)
            result.stale_processing += 1
        session.commit()

    pending_timeout = float(settings["pending_timeout"])
    earliest = min(pending_timeout, float(settings["retry_delay"])) if embedded else pending_timeout
    for row in _scan(
        session,
        table,
        table.c.status == WebhookStatus.PENDING,
        table.c.updated_at <= now - timedelta(seconds=earliest),
        batch_size=batch_size,
    ):
        age = (now - as_utc(row.updated_at)).total_seconds()
        if row.attempts == 0:
            due = age >= pending_timeout
        else:
            wait = retry_delay(state, row.attempts)
            due = age >= (wait if embedded else wait + pending_timeout)
        if due:
            enqueue_processing(state, row.id, row.attempts)
            result.pending += 1
    session.commit()
    return result


def _scan(session: Any, table: sa.Table, *conditions: Any, batch_size: int) -> Iterable[Any]:
    """Rows matching `conditions` in id order, read in keyset batches."""
    last_id = 0
    while True:
        rows = session.execute(
            sa.select(table.c.id, table.c.attempts, table.c.updated_at)
            .where(*conditions, table.c.id > last_id)
            .order_by(table.c.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id


class ReplayError(Exception):
    """A webhook that cannot be replayed: unknown id or a duplicate delivery."""


def replay(state: AppState, webhook_id: int) -> int:
    """Reset a stored webhook to `pending` and enqueue it; returns its attempts value.

    `attempts` keeps counting (it fences older claims): a replay of a row that
    already used `max_attempts` gets one attempt.
    """
    session = state.db.session
    table = state.tables["webhooks"]
    row = session.execute(sa.select(table.c.id, table.c.status).where(table.c.id == webhook_id)).first()
    if row is None:
        raise ReplayError(f"no webhook with id {webhook_id}")
    if row.status == WebhookStatus.DUPLICATE:
        raise ReplayError(f"webhook {webhook_id} is a duplicate delivery; replay the original instead")
    values = {"status": WebhookStatus.PENDING, "error": None, "processed_at": None, "updated_at": utcnow()}
    (attempts,) = update_returning(session, table, [table.c.id == webhook_id], values, [table.c.attempts])[0]
    enqueue_processing(state, webhook_id, attempts)
    session.commit()
    return attempts
