"""When and where sync work runs: the queues, the backoff of a failed item, the pacing of runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from ..clock import utcnow
from ..db import episodes
from ..db.models import Integration
from ..db.statuses import HealthStatus
from ..db.transactions import run_detached
from ..state import AppState, current_state

#: The episode marker of a stale sync (staleness.py begins it, `mark_synced` ends it).
STALE_EPISODE = "stale"
#: Doublings counted at most: 2^32 intervals is past any `max_backoff`.
MAX_DOUBLINGS = 32


def run_queue(state: AppState, provider_key: str) -> str:
    sync = state.setting("SYNC")
    return sync["queues"].get(provider_key) or sync["queue"]


def item_queue(state: AppState, provider_key: str) -> str:
    return state.setting("SYNC").get("item_queue") or run_queue(state, provider_key)


def item_delay(state: AppState, attempts: int) -> float:
    """Seconds before the retry that follows attempt number `attempts`."""
    backoff = list(state.setting("SYNC")["item_backoff"]) or [0]
    return float(backoff[min(max(attempts, 1), len(backoff)) - 1])


def backoff_factor(health_status: str, thresholds: dict[str, Any]) -> float:
    """How much longer than its interval an integration waits before its next sync."""
    return {
        HealthStatus.DEGRADED: thresholds["degraded_backoff"],
        HealthStatus.FAILING: thresholds["failing_backoff"],
    }.get(health_status, 1)


def sync_interval(integration: Integration, state: AppState) -> int | None:
    """Minutes between runs: the column, else the provider's, else None (not scheduled)."""
    if integration.sync_interval_minutes:
        return integration.sync_interval_minutes
    provider = state.providers.get(integration.provider)
    return getattr(provider, "sync_interval", None)


def next_sync_at(
    integration: Integration, state: AppState, now: datetime, failed_runs: int = 0
) -> datetime | None:
    """When the integration's next run is due: now + interval x the backoff of its health,
    doubled for each of `failed_runs` consecutive failed runs up to `max_backoff`."""
    interval = sync_interval(integration, state)
    if interval is None or integration.health_status == HealthStatus.DISABLED:
        return None
    factor = backoff_factor(integration.health_status, state.setting("HEALTH"))
    delay = timedelta(minutes=interval * factor)
    if failed_runs > 0:
        cap = max(timedelta(seconds=state.setting("SYNC")["max_backoff"]), delay)
        delay = min(delay * 2 ** min(failed_runs, MAX_DOUBLINGS), cap)
    return now + delay


def mark_synced(integration: Integration) -> None:
    """Record a successful run: `last_synced_at` now, `next_sync_at` paced by health; a stale
    episode ends (see staleness.py)."""
    state = current_state()
    t = state.tables["integrations"]
    now = utcnow()
    values = {"last_synced_at": now, "next_sync_at": next_sync_at(integration, state, now)}

    def work(connection: sa.Connection) -> None:
        connection.execute(sa.update(t).where(t.c.id == integration.id).values(updated_at=now, **values))
        episodes.end(connection, state.tables["idempotency_keys"], integration.id, STALE_EPISODE)

    def then(_: Any) -> None:
        for name, value in values.items():
            set_committed_value(integration, name, value)

    run_detached(state.db.session, state.engine(), work, then)
