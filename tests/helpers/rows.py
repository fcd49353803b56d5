"""Request history made directly: request rows, and the open breaker their failures would leave.

For tests that need a past the clock cannot make for real (rows of yesterday, of 30 hours ago).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flask_integrations.clock import utcnow
from flask_integrations.pipeline import breaker
from flask_integrations.state import current_state
from tests.helpers.app import db

#: what a row holds unless the test says otherwise
DEFAULTS: dict[str, Any] = {
    "endpoint": "tickets",
    "method": "GET",
    "status_code": 200,
    "duration_ms": 10,
    "error": None,
    "failure_class": None,
    "cache_hits": 0,
    "stale_hits": 0,
}


def add_requests(integration_id: int, *rows: dict[str, Any]) -> None:
    """Insert request rows of `integration_id` in one statement and commit (needs an app context).

    Each dict overrides `DEFAULTS` and names any other column; a row is created (and updated)
    a minute ago, or `hours_ago=N` hours and a minute ago, or at `at=` (a UTC datetime).
    """
    now = utcnow()
    values = []
    for row in rows:
        row = dict(row)
        created: datetime = row.pop("at", None) or now - timedelta(hours=row.pop("hours_ago", 0), minutes=1)
        row.pop("hours_ago", None)
        values.append(
            {
                "integration_id": integration_id,
                **DEFAULTS,
                "created_at": created,
                "updated_at": created,
                **row,
            }
        )
    columns = {name for value in values for name in value}  # one statement: every row names every column
    values = [{name: value.get(name) for name in columns} for value in values]
    db.session.execute(sa.insert(current_state().tables["requests"]), values)
    db.session.commit()


def failure(status: int | None, error: str | None, failure_class: str = "upstream", **row: Any) -> dict:
    """A failed request's row for `add_requests`: status (None: no answer), error and failure class."""
    return {"status_code": status, "error": error, "failure_class": failure_class, **row}


def seed_figures(integration_id: int) -> None:
    """10 rows in the window (10..100 ms, 5 failed) and one 30 hours old: p50 55 ms, p95 95.5 ms."""
    add_requests(
        integration_id,
        *({"duration_ms": ms} for ms in (10, 20, 30, 40, 50)),
        failure(503, "HTTP 503", duration_ms=60),
        failure(503, "HTTP 503", duration_ms=70),
        failure(429, "HTTP 429", "throttle", duration_ms=80),
        failure(None, "ConnectError: connection refused", duration_ms=90),
        failure(404, "HTTP 404", "client", duration_ms=100),
        failure(500, "HTTP 500", duration_ms=1000, hours_ago=30),
    )


def open_breaker(integration_id: int) -> None:
    """Open the integration's breaker as `threshold` upstream failures in a row do (app context)."""
    store, settings = current_state().store, current_state().setting("BREAKER")
    for _ in range(settings["threshold"]):
        breaker.after_attempt(
            store,
            integration_id,
            "upstream",
            settings,
            breaker.before_attempt(store, integration_id, settings),
        )
