"""Webhooks the route refused (400, 401, 413), counted per provider and integration for a day.

A misconfigured secret makes every delivery a 401 that no row records; these counts make it
visible on the dashboard's webhooks page. They live in the state store (shared by every process
in Redis mode, this process's in the embedded mode) in one hash per hour that expires after a day,
and a failing store never fails a webhook (the count is dropped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..state import AppState
from ..state.store import fail_open

#: The refusals counted: a bad body, a signature not verified, a body too large.
COUNTED = (400, 401, 413)
WINDOW_HOURS = 24
_HOUR = 3600


@dataclass(frozen=True)
class Refusal:
    provider: str
    integration_id: int | None
    status: int
    count: int


def _key(hour: int) -> str:
    return f"webhook-refusals:{hour}"


@fail_open(None)
def count(state: AppState, provider: str, integration_id: int | None, status: int) -> None:
    """Count one refused delivery (only the statuses in `COUNTED`)."""
    if status not in COUNTED:
        return
    hour = int(time.time() // _HOUR)
    field = f"{provider}|{integration_id or ''}|{status}"
    state.store.hash_incr(_key(hour), {field: 1}, ttl=(WINDOW_HOURS + 1) * _HOUR)


@fail_open([])
def last_day(state: AppState) -> list[Refusal]:
    """The refusals of the last 24 hours, most frequent first."""
    hour = int(time.time() // _HOUR)
    totals: dict[str, int] = {}
    for past in range(hour - WINDOW_HOURS + 1, hour + 1):
        for field, amount in state.store.hash_get(_key(past)).items():
            totals[field] = totals.get(field, 0) + amount
    refusals = []
    for field, amount in totals.items():
        provider, integration, status = field.rsplit("|", 2)
        refusals.append(Refusal(provider, int(integration) if integration else None, int(status), amount))
    return sorted(refusals, key=lambda r: (-r.count, r.provider, r.integration_id or 0, r.status))
