"""Incidents: one `incident` operation log per episode of an integration going bad.

An incident opens when health leaves `healthy` or the breaker opens, whichever comes
first, and closes when health is `healthy` and the breaker is closed again. It follows
the signals `health_changed`, `breaker_opened` and `breaker_closed`, each sent by the one
process that saw its transition; the episode marker (db/episodes.py) keeps a second
cause from opening a second incident. Each side writes its own change before reading the other's, so of two
processes that finish the recovery at the same moment at least one sees both done, and
the marker lets only one of them close it.

On closing, the log gets the episode's figures from the request rows written while it
was open: failures by class, the first and last error (texts already scrubbed when the
rows were written), and its duration.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .. import signals
from ..clock import as_utc, utcnow
from ..db import episodes
from ..db.statuses import BreakerState, Direction, HealthStatus
from ..db.transactions import run_detached
from ..pipeline import breaker
from ..state import AppState, current_state
from .figures import failed

logger = logging.getLogger("flask_integrations")

OPERATION = "incident"
EPISODE = "incident"
OPEN, CLOSED = "open", "closed"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@signals.health_changed.connect
def _on_health_changed(_: Any, integration: Any, old_status: str, new_status: str, **__: Any) -> None:
    if old_status == HealthStatus.HEALTHY and new_status != HealthStatus.HEALTHY:
        _open(current_state(), integration.id, f"health {new_status}")
    elif new_status == HealthStatus.HEALTHY:
        maybe_close(current_state(), integration.id)


@signals.breaker_opened.connect
def _on_breaker_opened(_: Any, integration: Any, **__: Any) -> None:
    _open(current_state(), integration.id, "circuit breaker opened")


@signals.breaker_closed.connect
def _on_breaker_closed(_: Any, integration: Any, **__: Any) -> None:
    maybe_close(current_state(), integration.id)


def maybe_close(state: AppState, integration_id: int) -> None:
    """Health is healthy or the breaker closed: close the open incident if the other is too."""

    def work(connection: sa.Connection) -> None:
        integrations = state.tables["integrations"]
        health = connection.execute(
            sa.select(integrations.c.health_status).where(integrations.c.id == integration_id)
        ).scalar()
        if health not in (HealthStatus.HEALTHY, None) or _breaker_not_closed(state, integration_id):
            return
        if episodes.end(connection, state.tables["idempotency_keys"], integration_id, EPISODE):
            _close_log(state, connection, integration_id)

    _guarded(state, work)


def _open(state: AppState, integration_id: int, cause: str) -> None:
    now = utcnow()

    def work(connection: sa.Connection) -> None:
        if not episodes.begin(connection, state.tables["idempotency_keys"], integration_id, EPISODE):
            return
        logs = state.tables["logs"]
        connection.execute(
            sa.insert(logs).values(
                integration_id=integration_id,
                operation=OPERATION,
                direction=Direction.OUTBOUND,
                status=OPEN,
                summary=f"Incident: {cause}",
                metadata={"opened_by": cause, "since": _streak_start(state, connection, integration_id, now)},
                created_at=now,
                updated_at=now,
            )
        )
        logger.warning("flask-integrations: integration %s: incident opened (%s)", integration_id, cause)

    _guarded(state, work)


def _streak_start(state: AppState, connection: sa.Connection, integration_id: int, now: datetime) -> str:
    """When the failures that led here began: just after the last successful attempt."""
    requests = state.tables["requests"]
    last_success = connection.execute(
        sa.select(requests.c.created_at)
        .where(requests.c.integration_id == integration_id, requests.c.created_at <= now, ~failed(requests))
        .order_by(requests.c.created_at.desc())
        .limit(1)
    ).scalar()
    return as_utc(last_success or EPOCH).isoformat()  # never a success: every failure counts


def _guarded(state: AppState, work: Any) -> None:
    try:
        run_detached(state.db.session, state.engine(), work)
    except IntegrityError:  # another process began the same episode at the same moment
        return
    except Exception:  # noqa: BLE001 - bookkeeping must never fail the call that triggered it
        logger.exception("flask-integrations: could not record an incident")


def _breaker_not_closed(state: AppState, integration_id: int) -> bool:
    return breaker.breaker_state(state.store, integration_id, state.setting("BREAKER")) != BreakerState.CLOSED


def _close_log(state: AppState, connection: sa.Connection, integration_id: int) -> None:
    logs = state.tables["logs"]
    row = connection.execute(
        sa.select(logs.c.id, logs.c.created_at, logs.c.metadata)
        .where(logs.c.integration_id == integration_id, logs.c.operation == OPERATION, logs.c.status == OPEN)
        .order_by(logs.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return
    now = utcnow()
    since = (row.metadata or {}).get("since")
    began = datetime.fromisoformat(since) if since else as_utc(row.created_at)
    figures = episode_figures(state, connection, integration_id, began)
    failures = sum(figures["failures"].values())
    minutes = max(1, round((now - as_utc(row.created_at)).total_seconds() / 60))
    connection.execute(
        sa.update(logs)
        .where(logs.c.id == row.id)
        .values(
            status=CLOSED,
            summary=f"Incident over: {failures} failed attempt(s) in {minutes} min",
            metadata={**(row.metadata or {}), **figures, "closed_at": now.isoformat()},
            error=figures["last_error"],
            duration_ms=int((now - as_utc(row.created_at)).total_seconds() * 1000),
            updated_at=now,
        )
    )
    logger.warning(
        "flask-integrations: integration %s: incident closed after %s min", integration_id, minutes
    )


def episode_figures(state: AppState, connection: Any, integration_id: int, since: datetime) -> dict[str, Any]:
    """Failed attempts by class and the first and last error among the request rows after `since`."""
    requests = state.tables["requests"]
    in_episode = sa.and_(
        requests.c.integration_id == integration_id, requests.c.created_at > since, failed(requests)
    )
    counts = connection.execute(
        sa.select(requests.c.failure_class, sa.func.count())
        .where(in_episode)
        .group_by(requests.c.failure_class)
    ).all()

    def error_at(order: Any) -> str | None:
        found = connection.execute(
            sa.select(requests.c.status_code, requests.c.error).where(in_episode).order_by(order).limit(1)
        ).first()
        if found is None:
            return None
        return found.error or (f"HTTP {found.status_code}" if found.status_code else None)

    return {
        "failures": {str(kind or "unknown"): int(count) for kind, count in counts},
        "first_error": error_at(requests.c.id.asc()),
        "last_error": error_at(requests.c.id.desc()),
    }


def incidents(state: AppState, integration_id: int, limit: int = 20) -> list[Any]:
    """The integration's latest incident logs, newest first (the integration page lists them)."""
    logs = state.tables["logs"]
    return state.db.session.execute(
        sa.select(logs)
        .where(logs.c.integration_id == integration_id, logs.c.operation == OPERATION)
        .order_by(logs.c.id.desc())
        .limit(limit)
    ).all()
