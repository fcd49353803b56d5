"""What the detail pages read beyond their own row: a webhook's attempts and duplicates, a run's items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ...db.statuses import WebhookStatus
from ...redaction import redact
from ...state import AppState

#: Rows a detail page lists at most (attempts, duplicates).
LISTED = 50
#: Items a run's page lists (the oldest first, of the status filtered by).
ITEMS_SHOWN = 200


def redacted_payload(state: AppState, payload: str | None) -> str | None:
    """A webhook's stored payload with values under `INTEGRATIONS_REDACT_KEYS` masked, for display."""
    if payload is None:
        return None
    return redact(payload, redact_keys=state.setting("REDACT_KEYS"))


def webhook_attempts(state: AppState, webhook: Any) -> list[Any]:
    """The `webhook` operation logs of this delivery's processing attempts, oldest first."""
    if webhook.integration_id is None:
        return []
    logs = state.tables["logs"]
    query = sa.select(logs).where(
        logs.c.integration_id == webhook.integration_id,
        logs.c.operation == "webhook",
        logs.c.created_at >= webhook.created_at,
    )
    if webhook.delivery_id:
        query = query.where(logs.c.external_id == webhook.delivery_id)
    rows = state.db.session.execute(query.order_by(logs.c.id).limit(LISTED * 4)).all()
    return [row for row in rows if (row.metadata or {}).get("webhook_id") == webhook.id][:LISTED]


def webhook_duplicates(state: AppState, webhook: Any) -> list[Any]:
    """Later deliveries of the same delivery id, stored as `duplicate` of this one."""
    if not webhook.delivery_id or webhook.status == WebhookStatus.DUPLICATE:
        return []
    t = state.tables["webhooks"]
    return state.db.session.execute(
        sa.select(t.c.id, t.c.created_at)
        .where(
            *_same_delivery(t, webhook),
            t.c.status == WebhookStatus.DUPLICATE,
            t.c.id != webhook.id,
        )
        .order_by(t.c.id)
        .limit(LISTED)
    ).all()


def original_of(state: AppState, webhook: Any) -> int | None:
    """For a `duplicate` row: the id of the delivery it repeated."""
    if webhook.status != WebhookStatus.DUPLICATE or not webhook.delivery_id:
        return None
    t = state.tables["webhooks"]
    return state.db.session.scalar(
        sa.select(t.c.id)
        .where(
            *_same_delivery(t, webhook),
            t.c.status != WebhookStatus.DUPLICATE,
        )
        .order_by(t.c.id)
        .limit(1)
    )


@dataclass
class RunPage:
    """A sync run's page: its log, its items counted by status, and a page of its items."""

    log: Any
    counts: dict[str, int]
    items: list[Any]
    status: str | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def share(self, status: str) -> float:
        """Percent of the run's items in `status` (the progress bar's widths)."""
        return 100.0 * self.counts.get(status, 0) / self.total if self.total else 0.0


def sync_run(state: AppState, log_id: int, status: str | None) -> RunPage | None:
    """The run whose top-level `sync` log is `log_id` (None if there is none)."""
    logs, items = state.tables["logs"], state.tables["sync_items"]
    log = state.db.session.execute(
        sa.select(logs).where(logs.c.id == log_id, logs.c.operation == "sync", logs.c.parent_id.is_(None))
    ).first()
    if log is None:
        return None
    counts = {
        row_status: int(count)
        for row_status, count in state.db.session.execute(
            sa.select(items.c.status, sa.func.count())
            .where(items.c.sync_log_id == log_id)
            .group_by(items.c.status)
        )
    }
    query = sa.select(items).where(items.c.sync_log_id == log_id)
    if status is not None:
        query = query.where(items.c.status == status)
    rows = state.db.session.execute(query.order_by(items.c.id).limit(ITEMS_SHOWN)).all()
    return RunPage(log, counts, rows, status)


def _same_delivery(t: sa.Table, webhook: Any) -> list[Any]:
    """The rows of the same provider, integration and delivery id as `webhook`."""
    same_integration = (
        t.c.integration_id.is_(None)
        if webhook.integration_id is None
        else t.c.integration_id == webhook.integration_id
    )
    return [same_integration, t.c.provider == webhook.provider, t.c.delivery_id == webhook.delivery_id]
