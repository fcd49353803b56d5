"""What an operator does to sync items: list the failed ones, skip or retry one (or a run's all)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..db.models import Integration
from ..db.statuses import ItemStatus
from ..state import AppState
from .finalise import maybe_finalise
from .items import enqueue_items


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
    t = state.tables["sync_items"]
    row = _item_row(state, item_id)
    if row.status != ItemStatus.FAILED:
        raise ItemError(f"sync item {item_id} is {row.status}: only failed items can be skipped.")
    skipped = _skip_failed(state, t.c.id == item_id)
    if not skipped:
        raise ItemError(f"sync item {item_id} changed status meanwhile: try again.")
    return maybe_finalise(state, row.sync_log_id) if row.sync_log_id is not None else None


def retry_item(state: AppState, item_id: int) -> None:
    """Send a `failed` (or waiting `pending`) item back to a worker, with a fresh count of tries."""
    session = state.db.session
    t = state.tables["sync_items"]
    row = _item_row(state, item_id)
    if row.status not in (ItemStatus.FAILED, ItemStatus.PENDING):
        raise ItemError(f"sync item {item_id} is {row.status}: only failed or pending items can be retried.")
    provider_key = session.get(Integration, row.integration_id).provider
    retried = _send_back(state, t.c.id == item_id, row.status)
    if not retried:
        session.rollback()
        raise ItemError(f"sync item {item_id} changed status meanwhile: try again.")
    enqueue_items(state, provider_key, [item_id])
    session.commit()


def retry_failed_items(state: AppState, log_id: int) -> int:
    """Send every `failed` item of a run back to a worker with fresh tries; returns how many."""
    session = state.db.session
    t = state.tables["sync_items"]
    rows = session.execute(
        sa.select(t.c.id, Integration.provider)
        .join(Integration.__table__, Integration.__table__.c.id == t.c.integration_id)
        .where(t.c.sync_log_id == log_id, t.c.status == ItemStatus.FAILED)
        .order_by(t.c.id)
    ).all()
    if not rows:
        return 0
    ids = [r.id for r in rows]
    retried = _send_back(state, t.c.id.in_(ids), ItemStatus.FAILED)
    enqueue_items(state, rows[0].provider, ids)  # the job claims only those still pending
    session.commit()
    return retried


def _send_back(state: AppState, which: Any, status: str) -> int:
    """Make the items `which` selects that are still `status` pending again with fresh tries (not
    committed: the caller enqueues them first); how many were."""
    t = state.tables["sync_items"]
    return state.db.session.execute(
        sa.update(t)
        .where(which, t.c.status == status)
        .values(status=ItemStatus.PENDING, attempts=0, completed_at=None, updated_at=utcnow())
    ).rowcount


def _skip_failed(state: AppState, which: Any) -> int:
    """Mark the `failed` items `which` selects `skipped` and commit; how many were (a concurrent
    change of status leaves an item out)."""
    t = state.tables["sync_items"]
    skipped = state.db.session.execute(
        sa.update(t)
        .where(which, t.c.status == ItemStatus.FAILED)
        .values(status=ItemStatus.SKIPPED, updated_at=utcnow())
    ).rowcount
    state.db.session.commit()
    return skipped


def skip_failed_items(state: AppState, log_id: int) -> tuple[int, str | None]:
    """Mark every `failed` item of a run `skipped` and re-finalise it: (how many, the run's new status)."""
    skipped = _skip_failed(state, state.tables["sync_items"].c.sync_log_id == log_id)
    return skipped, (maybe_finalise(state, log_id) if skipped else None)


def failed_items(state: AppState, integration_id: int | None = None, since: Any = None) -> list[Any]:
    t = state.tables["sync_items"]
    query = sa.select(t).where(t.c.status == ItemStatus.FAILED).order_by(t.c.id)
    if integration_id is not None:
        query = query.where(t.c.integration_id == integration_id)
    if since is not None:
        query = query.where(t.c.updated_at >= since)
    return list(state.db.session.execute(query).all())
