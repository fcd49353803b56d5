"""One `{p}_requests` row per attempt, committed on its own connection.

The row must survive the caller's rollback, so it never goes through the
caller's session. On PostgreSQL the rows go through a small engine of their
own with `synchronous_commit = off` (a lost log row on a server crash is
acceptable; the commit is several times cheaper), written in batches by a
thread of their own (see `writer.py`). Where SQLite makes a second
connection unsafe, the row is written right after the caller's transaction
ends (see `detached.py`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..detached import caller_holds_sqlite_write_lock, run_detached, shares_caller_connection
from ..state import AppState
from .writer import writer_for

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
    """Inserts request rows with a statement compiled once, on a raw DBAPI connection.

    SQLAlchemy's per-statement machinery (compilation lookup, parameter
    processing, result wrapping) costs several times the insert itself on
    this hot path; a pool checkout costs about 10 µs. Each insert checks a
    connection out, runs in autocommit (one round trip, no BEGIN/COMMIT), and
    gives it back as it found it. Used only when a second connection is really
    separate (see `detached.shares_caller_connection`).
    """

    def __init__(self, engine: sa.Engine, table: sa.Table):
        columns = [c for c in table.columns if c.name != "id"]
        statement = (
            sa.insert(table).values({c.name: sa.bindparam(c.name) for c in columns}).returning(table.c.id)
        )
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.order = list(compiled.positiontup or []) if compiled.positional else None
        self.sqlite = engine.dialect.name == "sqlite"
        self.datetime_columns = [c.name for c in columns if _is_datetime(c)]
        self.engine = engine

    def _params(self, row: dict[str, Any]) -> Any:
        if self.sqlite:  # the storage format of SQLAlchemy's SQLite DateTime, in UTC
            row = dict(row)
            formatted: dict[datetime, str] = {}
            for name in self.datetime_columns:
                value = row.get(name)
                if isinstance(value, datetime):
                    if value not in formatted:
                        formatted[value] = value.astimezone(UTC).strftime(SQLITE_DATETIME)
                    row[name] = formatted[value]
        return [row[name] for name in self.order] if self.order is not None else row

    def insert(self, row: dict[str, Any]) -> int:
        connection = self.engine.raw_connection()
        try:
            with _autocommit(connection.dbapi_connection):
                cursor = connection.cursor()
                try:
                    cursor.execute(self.sql, self._params(row))
                    return cursor.fetchall()[0][0]
                finally:
                    cursor.close()
        except BaseException:
            connection.invalidate()
            raise
        finally:
            connection.close()


def _is_datetime(column: sa.Column) -> bool:
    """A DateTime column, or a type decorator over one (UTCDateTime)."""
    return isinstance(getattr(column.type, "impl", column.type), sa.DateTime)


@contextmanager
def _autocommit(dbapi_connection: Any) -> Iterator[None]:
    """One statement, one round trip; the connection goes back to the pool as it was."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        previous = dbapi_connection.isolation_level
        dbapi_connection.isolation_level = None
        try:
            yield
        finally:
            dbapi_connection.isolation_level = previous
    else:  # psycopg and other PEP 249 drivers with an autocommit attribute
        previous = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            yield
        finally:
            dbapi_connection.autocommit = previous


SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"
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
    state: AppState, call: CallLog, values: dict[str, Any], then: Callable[[int | None], None]
) -> None:
    """Insert the attempt's row (now, or after the caller's transaction) and call `then(row_id)`."""
    table = state.tables["requests"]
    engine = log_engine(state)

    def row() -> dict[str, Any]:
        now = utcnow()
        return {**values, "retry_of": call.retry_of(), "created_at": now, "updated_at": now}

    if engine.dialect.name == "postgresql":
        row_id = writer_for(app_engine(state), engine, table).submit(row())
        call.remember(row_id)
        then(row_id)
        return
    if not shares_caller_connection(engine) and not caller_holds_sqlite_write_lock(
        state.db.session(), engine
    ):
        row_id = inserter(engine, table).insert(row())
        call.remember(row_id)
        then(row_id)
        return

    def work(connection: sa.Connection) -> int | None:
        row_id = connection.execute(sa.insert(table).values(row()).returning(table.c.id)).scalar_one()
        call.remember(row_id)
        return row_id

    run_detached(state.db.session, engine, work, then)
