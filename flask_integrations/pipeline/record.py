"""One `{p}_requests` row per attempt, committed on its own connection.

The row must survive the caller's rollback, so it never goes through the
caller's session. On PostgreSQL the rows go through a small engine of their
own with `synchronous_commit = off` (a lost log row on a server crash is
acceptable; the commit is several times cheaper). Where SQLite makes a second
connection unsafe, the row is written right after the caller's transaction
ends (see `detached.py`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..detached import run_detached
from ..state import AppState

_engines: dict[tuple[int, str], sa.Engine] = {}
_engines_lock = threading.Lock()


def log_engine(state: AppState) -> sa.Engine:
    """The engine request rows are written with."""
    engine = state.db.engine
    if engine.dialect.name != "postgresql":
        return engine
    key = (os.getpid(), engine.url.render_as_string(hide_password=False))
    with _engines_lock:
        if key not in _engines:
            _engines[key] = sa.create_engine(
                engine.url,
                pool_size=2,
                max_overflow=8,
                pool_pre_ping=True,
                connect_args={"options": "-c synchronous_commit=off"},
            )
        return _engines[key]


class CallLog:
    """The rows of one call: later attempts point at the first through `retry_of`."""

    def __init__(self, retry_of: int | None = None):
        self.first_id = retry_of
        self._explicit = retry_of is not None

    def retry_of(self) -> int | None:
        return self.first_id

    def remember(self, row_id: int | None) -> None:
        if self.first_id is None:
            self.first_id = row_id


def write_attempt(
    state: AppState, call: CallLog, values: dict[str, Any], then: Callable[[int | None], None]
) -> None:
    """Insert the attempt's row (now, or after the caller's transaction) and call `then(row_id)`."""
    table = state.tables["requests"]

    def work(connection: sa.Connection) -> int | None:
        now = utcnow()
        row = {**values, "retry_of": call.retry_of(), "created_at": now, "updated_at": now}
        row_id = connection.execute(sa.insert(table).values(row).returning(table.c.id)).scalar_one()
        call.remember(row_id)
        return row_id

    run_detached(state.db.session, log_engine(state), work, then)
