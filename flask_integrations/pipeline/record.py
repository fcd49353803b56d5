"""One `{p}_requests` row per attempt, committed on its own connection.

The row must survive the caller's rollback, so it never goes through the
caller's session. Rows are written in batches by a thread of their own (see
`writer.py`). On PostgreSQL that thread uses a small engine of its own with
`synchronous_commit = off` (a lost log row on a server crash is acceptable;
the commit is several times cheaper). Where SQLite makes a second connection
unsafe (the caller's transaction holds the write lock, or a memory database
has a single connection), the row is written right after the caller's
transaction ends (see `detached.py`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..detached import caller_holds_sqlite_write_lock, run_detached, shares_caller_connection
from ..state import AppState
from .rows import InsertStatement, raw_cursor
from .writer import Finish, writer_for

_log_engines: weakref.WeakKeyDictionary[sa.Engine, tuple[int, sa.Engine]] = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


_app_engines: weakref.WeakKeyDictionary[AppState, sa.Engine] = weakref.WeakKeyDictionary()


def app_engine(state: AppState) -> sa.Engine:
    """The app's default engine, looked up once (Flask-SQLAlchemy's lookup costs a few µs a call)."""
    engine = _app_engines.get(state)
    if engine is None:
        engine = _app_engines[state] = state.db.engine
    return engine


def log_engine(state: AppState) -> sa.Engine:
    """The engine request rows are written with (one per app engine and process)."""
    engine = app_engine(state)
    if engine.dialect.name != "postgresql":
        return engine
    known = _log_engines.get(engine)
    if known is not None and known[0] == os.getpid():
        return known[1]
    with _engines_lock:
        created = sa.create_engine(
            engine.url,
            pool_size=2,
            max_overflow=8,
            pool_pre_ping=True,
            connect_args={"options": "-c synchronous_commit=off"},
        )
        _log_engines[engine] = (os.getpid(), created)
        return created


class RowInserter:
    """Inserts request rows in line, one round trip each (autocommit, no BEGIN/COMMIT).

    Used on SQLite when the requests table cannot reserve ids (see
    `rows.id_reserver`) and a second connection is really separate (see
    `detached.shares_caller_connection`).
    """

    def __init__(self, engine: sa.Engine, table: sa.Table):
        self.engine = engine
        self.statement = InsertStatement(engine, table, returning_id=True)

    def insert(self, row: dict[str, Any]) -> int:
        with raw_cursor(self.engine) as cursor:
            cursor.execute(self.statement.sql, self.statement.params(row))
            return cursor.fetchall()[0][0]


_inserters: weakref.WeakKeyDictionary[sa.Engine, RowInserter] = weakref.WeakKeyDictionary()


def inserter(engine: sa.Engine, table: sa.Table) -> RowInserter:
    with _engines_lock:
        if engine not in _inserters:
            _inserters[engine] = RowInserter(engine, table)
        return _inserters[engine]


class CallLog:
    """The rows of one call: later attempts point at the first through `retry_of`."""

    def __init__(self, retry_of: int | None = None):
        self.first_id = retry_of

    def retry_of(self) -> int | None:
        return self.first_id

    def remember(self, row_id: int | None) -> None:
        if self.first_id is None:
            self.first_id = row_id


def write_attempt(
    state: AppState,
    call: CallLog,
    values: dict[str, Any],
    then: Callable[[int | None], None],
    finish: Finish | None = None,
) -> None:
    """Insert the attempt's row (now, or after the caller's transaction) and call `then(row_id)`.

    `finish()` returns the rest of the row's values; the writer thread runs it
    where the row is written behind the call.
    """
    table = state.tables["requests"]
    engine = log_engine(state)

    def row(finished: bool = True) -> dict[str, Any]:
        now = utcnow()
        rest = finish() if finished and finish is not None else {}
        return {**values, **rest, "retry_of": call.retry_of(), "created_at": now, "updated_at": now}

    session = state.db.session()
    held = caller_holds_sqlite_write_lock(session, engine)
    writer = None if held else writer_for(app_engine(state), engine, table)
    if writer is not None or not (held or shares_caller_connection(engine)):
        if writer is not None:
            row_id = writer.submit(row(finished=False), finish)
        else:
            row_id = inserter(engine, table).insert(row())
        call.remember(row_id)
        then(row_id)
        return

    def work(connection: sa.Connection) -> int | None:
        row_id = connection.execute(sa.insert(table).values(row()).returning(table.c.id)).scalar_one()
        call.remember(row_id)
        return row_id

    run_detached(session, engine, work, then)
