"""Storing received webhooks, deduplicating them, and recovering or replaying them.

Nothing here knows about Flask requests: the blueprint reads the request and
passes plain values down.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .. import queue
from ..clock import as_utc, utcnow
from ..state import AppState

logger = logging.getLogger("flask_integrations")

#: Statuses of a webhook row.
RECEIVED_STATUSES = ("pending", "processing", "processed", "failed", "duplicate")

#: Header names never stored, besides any name containing one of `_SECRET_WORDS`.
_DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_SECRET_WORDS = ("token", "secret", "key")
_MAX_STRING = 255


def filter_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The headers worth storing: no credentials, no cookies; repeated names joined with ', '."""
    kept: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in _DROPPED_HEADERS or any(word in lowered for word in _SECRET_WORDS):
            continue
        name, value = clean_text(name), clean_text(value)
        kept[name] = f"{kept[name]}, {value}" if name in kept else value
    return kept


def clean_text(value: Any) -> str:
    """Text every database stores: no NUL characters, no lone surrogates."""
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd")


def short_text(value: Any) -> str | None:
    """An optional provider-supplied string (event type, delivery id) fit for a VARCHAR(255)."""
    if value is None:
        return None
    text = clean_text(value)
    return text[:_MAX_STRING] if text else None


def dedup_key(provider: str, integration_id: int | None, delivery_id: str) -> str:
    """sha256 of (provider, integration id or "-", delivery id): unique per delivery."""
    parts = [provider, "-" if integration_id is None else str(integration_id), delivery_id]
    return hashlib.sha256(json.dumps(parts).encode("utf-8", "replace")).hexdigest()


@dataclass
class Received:
    """The outcome of storing one delivery."""

    id: int | None
    duplicate: bool
    webhook_id: int  # the row written for this delivery (the duplicate row itself for duplicates)


def store_webhook(
    state: AppState,
    *,
    provider: str,
    integration_id: int | None,
    payload: str,
    headers: Mapping[str, str],
    event_type: str | None,
    delivery_id: str | None,
) -> Received:
    """Insert the delivery and commit; a delivery id seen before is stored as `duplicate`.

    The first row of a delivery id owns `dedup_key`; the unique index decides
    between concurrent deliveries (``INSERT ... ON CONFLICT DO NOTHING``).
    """
    session = state.db.session
    table = state.tables["webhooks"]
    now = utcnow()
    values: dict[str, Any] = {
        "integration_id": integration_id,
        "provider": provider,
        "event_type": short_text(event_type),
        "delivery_id": short_text(delivery_id),
        "payload": payload,
        "headers": dict(headers),
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }
    if delivery_id:
        key = dedup_key(provider, integration_id, delivery_id)
        new_id = _insert_unless_seen(session, table, {**values, "dedup_key": key})
        if new_id is None:
            original = session.scalar(sa.select(table.c.id).where(table.c.dedup_key == key))
            duplicate_id = session.execute(
                sa.insert(table).values({**values, "status": "duplicate"}).returning(table.c.id)
            ).scalar_one()
            session.commit()
            return Received(id=original, duplicate=True, webhook_id=duplicate_id)
    else:
        new_id = session.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar_one()
    session.commit()
    return Received(id=new_id, duplicate=False, webhook_id=new_id)


def _insert_unless_seen(session: Any, table: sa.Table, values: dict[str, Any]) -> int | None:
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = (
            insert(table).values(**values).on_conflict_do_nothing(index_elements=["dedup_key"])
        ).returning(table.c.id)
        return session.execute(statement).scalar_one_or_none()
    try:  # other dialects: the unique index still decides, in a savepoint
        with session.begin_nested():
            return session.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar_one()
    except sa.exc.IntegrityError:
        return None


def enqueue_processing(
    state: AppState, webhook_id: int, attempts_seen: int, delay: float | None = None
) -> None:
    from .jobs import process_webhook

    settings = state.setting("WEBHOOK")
    queue.enqueue(
        state,
        process_webhook,
        webhook_id,
        attempts_seen,
        queue=settings["queue"],
        delay=delay,
        job_timeout=int(settings["processing_timeout"]),
    )


def retry_delay(state: AppState, attempts: int) -> float:
    """Seconds a failed webhook waits before its next attempt."""
    return float(state.setting("WEBHOOK")["retry_delay"]) * attempts


# -- recovery and replay ------------------------------------------------------------------------


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
        table.c.status == "processing",
        table.c.updated_at < stale_before,
        batch_size=batch_size,
    ):
        reset = session.execute(
            sa.update(table)
            .where(table.c.id == row.id, table.c.status == "processing", table.c.attempts == row.attempts)
            .values(status="pending", updated_at=now)
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
        table.c.status == "pending",
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
    if row.status == "duplicate":
        raise ReplayError(f"webhook {webhook_id} is a duplicate delivery; replay the original instead")
    attempts = session.execute(
        sa.update(table)
        .where(table.c.id == webhook_id)
        .values(status="pending", error=None, processed_at=None, updated_at=utcnow())
        .returning(table.c.attempts)
    ).scalar_one()
    enqueue_processing(state, webhook_id, attempts)
    session.commit()
    return attempts
