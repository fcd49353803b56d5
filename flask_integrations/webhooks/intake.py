"""Storing a received webhook, exactly once per delivery id.

Nothing here knows about Flask requests: the blueprint reads the request and
passes plain values down.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..clock import utcnow
from ..db.dialects import insert_unless_duplicate, is_mysql
from ..db.statuses import WebhookStatus
from ..redaction import clean_text, scrub
from ..state import AppState

logger = logging.getLogger("flask_integrations")

#: Header names never stored: anything that names a credential, a cookie or a signature
#: (``Authorization``, ``X-Webhook-Password``, ``X-Hook-Auth``, ``X-Api-Key``,
#: ``X-Hub-Signature-256``, ...). Verification reads signatures from the request itself,
#: before anything is stored; nothing after it needs them.
SECRET_HEADER = re.compile(r"auth|pass|pwd|token|secret|key|sig|cookie|session|credential", re.I)
_MAX_STRING = 255


def filter_headers(headers: Iterable[tuple[str, str]], secrets: Iterable[str] = ()) -> dict[str, str]:
    """The headers worth storing: none whose name looks secret, and none of the integration's
    credential values (`secrets`) in the others; repeated names joined with ', '."""
    secrets = tuple(secrets)
    kept: dict[str, str] = {}
    for name, value in headers:
        name = clean_text(str(name))
        if SECRET_HEADER.search(name):
            continue
        value = scrub(str(value), secrets) or ""
        kept[name] = f"{kept[name]}, {value}" if name in kept else value
    return kept


def short_text(value: Any) -> str | None:
    """An optional provider-supplied string (event type, delivery id) fit for a VARCHAR(255)."""
    if value is None:
        return None
    text = clean_text(value if isinstance(value, str) else str(value))
    return text[:_MAX_STRING] if text else None


def dedup_key(provider: str, integration_id: int | None, delivery_id: str) -> str:
    """sha256 of (provider, integration id or "-", delivery id): unique per delivery."""
    parts = [provider, "-" if integration_id is None else str(integration_id), delivery_id]
    return hashlib.sha256(json.dumps(parts).encode("utf-8", "replace")).hexdigest()


@functools.cache
def _unless_seen_statement(table: sa.Table, dialect: str) -> Any:
    """``INSERT ... ON CONFLICT (dedup_key) DO NOTHING RETURNING id``, built once per table: the
    values go in as parameters, so SQLAlchemy reuses its compiled form for every delivery."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(table.c.id)


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
    secrets: Iterable[str] = (),
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
        "event_type": scrub(short_text(event_type), secrets),
        "delivery_id": scrub(short_text(delivery_id), secrets),
        "payload": payload,
        "headers": dict(headers),
        "status": WebhookStatus.PENDING,
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
                sa.insert(table).values({**values, "status": WebhookStatus.DUPLICATE})
            ).inserted_primary_key[0]
            session.commit()
            return Received(id=original, duplicate=True, webhook_id=duplicate_id)
    else:
        new_id = session.execute(sa.insert(table).values(**values)).inserted_primary_key[0]
    session.commit()
    return Received(id=new_id, duplicate=False, webhook_id=new_id)


def _insert_unless_seen(session: Any, table: sa.Table, values: dict[str, Any]) -> int | None:
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        return session.execute(_unless_seen_statement(table, dialect), values).scalar_one_or_none()
    if is_mysql(dialect):
        return insert_unless_duplicate(session, table, values)
    try:  # other dialects: the unique index still decides, in a savepoint
        with session.begin_nested():
            return session.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar_one()
    except sa.exc.IntegrityError:
        return None
