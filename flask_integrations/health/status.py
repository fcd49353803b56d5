"""Health: one counter of consecutive upstream failures and the status it implies.

Only `upstream` failures count (and degrade health); a success resets the
counter; `client`, `throttle` and `unknown` failures neither count nor reset.
Every write is one atomic statement on its own connection, so concurrent
processes never lose a count and exactly one of them sees each transition.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from .. import signals
from ..clock import utcnow
from ..db.dialects import update_returning
from ..db.models import Integration
from ..db.statuses import FailureClass, HealthStatus
from ..db.transactions import run_detached
from ..state import AppState, current_state

HEALTHY, DEGRADED, FAILING, DISABLED = (
    HealthStatus.HEALTHY,
    HealthStatus.DEGRADED,
    HealthStatus.FAILING,
    HealthStatus.DISABLED,
)


def status_for(failures: int, thresholds: dict[str, Any]) -> str:
    disabled_after = thresholds["disabled_after"]
    if disabled_after is not None and failures >= disabled_after:
        return DISABLED
    if failures >= thresholds["failing_after"]:
        return FAILING
    if failures >= thresholds["degraded_after"]:
        return DEGRADED
    return HEALTHY


def _table(state: AppState) -> sa.Table:
    return state.tables["integrations"]


_PENDING = "_fi_health_writes_pending"


def _run(state: AppState, integration: Integration, work: Any, then: Any) -> None:
    """Run a health write; while it waits for the caller's transaction the object is marked pending."""

    def then_and_settle(result: Any) -> None:
        setattr(integration, _PENDING, max(0, getattr(integration, _PENDING, 0) - 1))
        then(result)

    setattr(integration, _PENDING, getattr(integration, _PENDING, 0) + 1)
    run_detached(state.db.session, state.db.engine, work, then_and_settle)


def _apply(integration: Integration, values: dict[str, Any]) -> None:
    for name, value in values.items():
        set_committed_value(integration, name, value)


def _send_transition(state: AppState, integration: Integration, old: str, new: str) -> None:
    if old == new:
        return
    signals.health_changed.send(state.app, integration=integration, old_status=old, new_status=new)
    if new == DISABLED:
        signals.integration_disabled.send(state.app, integration=integration)


def record_failure(integration: Integration, failure_class: str) -> None:
    """Count an `upstream` failure atomically (other classes neither count nor reset); see the module."""
    if failure_class not in tuple(FailureClass):
        raise ValueError(f"failure_class must be one of {', '.join(FailureClass)}, got {failure_class!r}.")
    if failure_class != FailureClass.UPSTREAM:
        return
    state = current_state()
    thresholds = state.setting("HEALTH")
    t = _table(state)
    count = t.c.consecutive_failures + 1
    status_case = [
        (count >= thresholds["failing_after"], FAILING),
        (count >= thresholds["degraded_after"], DEGRADED),
    ]
    active = t.c.is_active
    if thresholds["disabled_after"] is not None:
        status_case.insert(0, (count >= thresholds["disabled_after"], DISABLED))
        active = sa.case((count >= thresholds["disabled_after"], sa.false()), else_=t.c.is_active)
    now = utcnow()
    # MySQL assigns left to right, in the table's column order, and later expressions see
    # earlier assignments: is_active and health_status come before consecutive_failures.
    values = {
        "consecutive_failures": count,
        "health_status": sa.case(*status_case, else_=HEALTHY),
        "is_active": active,
        "last_error_at": now,
        "updated_at": now,
    }
    where = [t.c.id == integration.id, t.c.health_status != DISABLED]
    returned = [t.c.consecutive_failures, t.c.health_status, t.c.is_active]

    def work(connection: sa.Connection) -> Any:
        rows = update_returning(connection, t, where, values, returned)
        return rows[0] if rows else None

    def then(row: Any) -> None:
        if row is None:
            return
        failures, new_status, is_active = row
        _apply(
            integration,
            {
                "consecutive_failures": failures,
                "health_status": new_status,
                "is_active": is_active,
                "last_error_at": now,
            },
        )
        _send_transition(state, integration, status_for(failures - 1, thresholds), new_status)

    _run(state, integration, work, then)


def record_success(integration: Integration) -> None:
    """Reset the counter; cheap when the integration is already known healthy."""
    known_healthy = integration.consecutive_failures == 0 and integration.health_status in (HEALTHY, DISABLED)
    if known_healthy and not getattr(integration, _PENDING, 0):
        return
    state = current_state()
    t = _table(state)

    def work(connection: sa.Connection) -> tuple[str, str] | None:
        for _ in range(3):
            row = connection.execute(
                sa.select(t.c.health_status, t.c.consecutive_failures).where(t.c.id == integration.id)
            ).first()
            if row is None or row.health_status == DISABLED:
                return None
            if row.consecutive_failures == 0 and row.health_status == HEALTHY:
                return (HEALTHY, HEALTHY)
            changed = connection.execute(
                sa.update(t)
                .where(
                    t.c.id == integration.id,
                    t.c.health_status == row.health_status,
                    t.c.consecutive_failures == row.consecutive_failures,
                )
                .values(consecutive_failures=0, health_status=HEALTHY, updated_at=utcnow())
            ).rowcount
            if changed:
                return (row.health_status, HEALTHY)
        return None

    def then(result: tuple[str, str] | None) -> None:
        if result is None:
            return
        _apply(integration, {"consecutive_failures": 0, "health_status": HEALTHY})
        _send_transition(state, integration, *result)

    _run(state, integration, work, then)


def enable(integration: Integration) -> None:
    """Active and healthy again, counter reset."""
    state = current_state()
    t = _table(state)

    def work(connection: sa.Connection) -> str | None:
        old = connection.execute(sa.select(t.c.health_status).where(t.c.id == integration.id)).scalar()
        connection.execute(
            sa.update(t)
            .where(t.c.id == integration.id)
            .values(is_active=True, health_status=HEALTHY, consecutive_failures=0, updated_at=utcnow())
        )
        return old

    def then(old: str | None) -> None:
        _apply(integration, {"is_active": True, "health_status": HEALTHY, "consecutive_failures": 0})
        if old is not None:
            _send_transition(state, integration, old, HEALTHY)

    _run(state, integration, work, then)


def disable(integration: Integration) -> None:
    """Inactive: no outbound calls or syncs. Health is left as it is."""
    state = current_state()
    t = _table(state)

    def work(connection: sa.Connection) -> None:
        connection.execute(
            sa.update(t).where(t.c.id == integration.id).values(is_active=False, updated_at=utcnow())
        )

    _run(state, integration, work, lambda _: _apply(integration, {"is_active": False}))
