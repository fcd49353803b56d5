"""Stale syncs and the backoff of failing runs (SPEC 15).

Stale: an active, scheduled integration whose last successful run (or, never synced,
its creation) is older than ``INTEGRATIONS_SYNC["stale_after"]`` intervals. Handlers
that fail while the API answers fine keep health `healthy`; staleness is what shows
it. `sync_stale` is sent once per episode (an episode marker, db/episodes.py): by the
sweep that first finds it, again only after a successful run ended the episode
(`pacing.mark_synced`).

Backoff (`pacing.next_sync_at`): after N consecutive failed runs the next one waits
interval x health factor x 2^N, at most ``INTEGRATIONS_SYNC["max_backoff"]`` seconds
(never less than the health's pacing alone).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .. import signals
from ..clock import as_utc, utcnow
from ..db import episodes
from ..db.models import Integration
from ..db.statuses import HealthStatus, LogStatus
from ..state import AppState
from .pacing import STALE_EPISODE as EPISODE
from .pacing import sync_interval

#: Runs looked at when counting consecutive failures (2^32 intervals is past any cap).
RECENT_RUNS = 32


def stale_since(integration: Integration, state: AppState, now: datetime | None = None) -> datetime | None:
    """When the integration's syncs went stale (its last success, or its creation), or None if fresh."""
    interval = sync_interval(integration, state)
    if interval is None or not integration.is_active or integration.health_status == HealthStatus.DISABLED:
        return None
    since = as_utc(integration.last_synced_at or integration.created_at)
    limit = timedelta(minutes=interval * state.setting("SYNC")["stale_after"])
    return since if (now or utcnow()) - since > limit else None


def detect_stale(state: AppState) -> int:
    """Begin a stale episode for each newly stale integration and send `sync_stale`; returns how many."""
    integrations = state.tables["integrations"]
    rows = state.db.session.scalars(
        sa.select(Integration).where(
            integrations.c.is_active.is_(True), integrations.c.health_status != HealthStatus.DISABLED
        )
    ).all()
    now = utcnow()
    began = 0
    for integration in rows:
        since = stale_since(integration, state, now)
        if since is not None and _begin(state, integration.id):
            began += 1
            signals.sync_stale.send(state.app, integration=integration, since=integration.last_synced_at)
    state.db.session.commit()
    return began


def _begin(state: AppState, integration_id: int) -> bool:
    try:
        with state.engine().begin() as connection:
            return episodes.begin(connection, state.tables["idempotency_keys"], integration_id, EPISODE)
    except IntegrityError:  # another sweep began it at the same moment
        return False


def consecutive_failed_runs(state: AppState, integration_id: int) -> int:
    """Failed runs since the last one that did not fail, counting the newest."""
    logs = state.tables["logs"]
    statuses = state.db.session.execute(
        sa.select(logs.c.status)
        .where(
            logs.c.integration_id == integration_id,
            logs.c.operation == "sync",
            logs.c.parent_id.is_(None),
            logs.c.status.in_((LogStatus.SUCCESS, LogStatus.PARTIAL, LogStatus.FAILED)),
        )
        .order_by(logs.c.id.desc())
        .limit(RECENT_RUNS)
    ).scalars()
    count = 0
    for status in statuses:
        if status != LogStatus.FAILED:
            break
        count += 1
    return count
