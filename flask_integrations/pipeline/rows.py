"""The request row's INSERT compiled once, and ids reserved before their rows are written.

SQLAlchemy's per-statement machinery (compilation lookup, parameter
processing, result wrapping) costs several times the insert itself on the
pipeline's hot path, so request rows are inserted with a statement compiled
once, on a raw DBAPI connection.

A row written behind the call (see `writer.py`) needs its id at once. On
PostgreSQL the ids come from the table's sequence. On SQLite they come from
`sqlite_sequence`, which is why the requests table is declared AUTOINCREMENT
there: SQLite then never hands out an id at or below the reserved ones, in
this process or any other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"

ReserveIds = Callable[[int], list[int]]


class InsertStatement:
    """`INSERT INTO requests (...)` as driver SQL, and a row's parameters in the driver's form.

    With `returning_id` the id column is left to the database and returned (by RETURNING,
    or as the cursor's `lastrowid` where the database has none: MySQL); otherwise the row
    carries its id.
    """

    def __init__(self, engine: sa.Engine, table: sa.Table, returning_id: bool = False):
        columns = [c for c in table.columns if not (returning_id and c.name == "id")]
        statement = sa.insert(table).values({c.name: sa.bindparam(c.name) for c in columns})
        self.returns_rows = returning_id and engine.dialect.insert_returning
        if self.returns_rows:
            statement = statement.returning(table.c.id)
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.order = list(compiled.positiontup or []) if compiled.positional else None
        sqlite = engine.dialect.name == "sqlite"
        self.datetime_columns = [c.name for c in columns if sqlite and _is_datetime(c)]
        self.names = [c.name for c in columns]
        preparer = engine.dialect.identifier_preparer
        quoted_names = ", ".join(preparer.quote(name) for name in self.names)
        self.copy_sql = f"COPY {preparer.format_table(table)} ({quoted_names}) FROM STDIN"

    def write_many(self, cursor: Any, rows: list[dict[str, Any]]) -> None:
        """Insert `rows` with one statement: COPY with psycopg 3, else `executemany`.

        psycopg's `executemany` costs about 60 µs of Python a row, under the GIL
        the calling threads need; its COPY about a third of that. sqlite3
        loops over the rows in C.
        """
        if callable(getattr(cursor, "copy", None)):  # psycopg 3
            with cursor.copy(self.copy_sql) as copy:
                for row in rows:
                    copy.write_row([row[name] for name in self.names])
            return
        cursor.executemany(self.sql, [self.params(row) for row in rows])

    def params(self, row: dict[str, Any]) -> Any:
        if self.datetime_columns:  # the storage format of SQLAlchemy's SQLite DateTime, in UTC
            row = dict(row)
            formatted: dict[datetime, str] = {}
            for name in self.datetime_columns:
                value = row.get(name)
                if isinstance(value, datetime):
                    if value not in formatted:
                        formatted[value] = value.astimezone(UTC).strftime(SQLITE_DATETIME)
                    row[name] = formatted[value]
        return [row[name] for name in self.order] if self.order is not None else row


def _is_datetime(column: sa.Column) -> bool:
    """A DateTime column, or a type decorator over one (UTCDateTime)."""
    return isinstance(getattr(column.type, "impl", column.type), sa.DateTime)


@contextmanager
def _autocommit(dbapi_connection: Any) -> Iterator[None]:
    """Statements run as they are sent; the connection goes back to the pool as it was."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        previous = dbapi_connection.isolation_level
        dbapi_connection.isolation_level = None
        try:
            yield
        finally:
            dbapi_connection.isolation_level = previous
    elif callable(getattr(dbapi_connection, "autocommit", None)):  # PyMySQL, mysqlclient: methods
        previous = dbapi_connection.get_autocommit()
        dbapi_connection.autocommit(True)
        try:
            yield
        finally:
            dbapi_connection.autocommit(previous)
    else:  # psycopg and other PEP 249 drivers with an autocommit attribute
        previous = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            yield
        finally:
            dbapi_connection.autocommit = previous


@contextmanager
def raw_cursor(engine: sa.Engine, *, transaction: bool = False) -> Iterator[Any]:
    """A DBAPI cursor on a pooled connection; a failure discards the connection.

    Each statement commits as it runs, unless `transaction`: then the block's
    statements are committed together when it ends.
    """
    connection = engine.raw_connection()
    try:
        with nullcontext() if transaction else _autocommit(connection.dbapi_connection):
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        if transaction:
            connection.commit()
    except BaseException:
        connection.invalidate()  # a failed transaction or a dead connection: start clean
        raise
    finally:
        connection.close()


def id_reserver(engine: sa.Engine, table: sa.Table) -> ReserveIds | None:
    """How to reserve ids of `table` ahead of its rows, or None where this database cannot."""
    if engine.dialect.name == "postgresql":
        return _PostgresIds(engine, table)
    if engine.dialect.name == "sqlite" and _declared_autoincrement(engine, table):
        return _SqliteIds(engine, table)
    return None


class _PostgresIds:
    def __init__(self, engine: sa.Engine, table: sa.Table):
        self.engine = engine
        self.sql = sa.text(
            f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) FROM generate_series(1, :n)"
        )

    def __call__(self, n: int) -> list[int]:
        with self.engine.connect() as connection:
            return list(connection.execute(self.sql, {"n": n}).scalars())


class _SqliteIds:
    """Moves the table's `sqlite_sequence` entry up by `n` in one write transaction."""

    def __init__(self, engine: sa.Engine, table: sa.Table):
        self.engine = engine
        self.name = table.name
        self.quoted = engine.dialect.identifier_preparer.quote(table.name)
        self.highest = 0  # the table may be dropped and made again under this engine (tests, dev)

    def __call__(self, n: int) -> list[int]:
        with raw_cursor(self.engine) as cursor:
            cursor.execute("BEGIN IMMEDIATE")
            try:
                sequence = cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (self.name,))
                known = sequence.fetchone()
                top = cursor.execute(f"SELECT max(id) FROM {self.quoted}").fetchone()[0] or 0
                start = max(known[0] if known else 0, top, self.highest)
                if known:
                    sql = "UPDATE sqlite_sequence SET seq = :seq WHERE name = :name"
                else:
                    sql = "INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :seq)"
                cursor.execute(sql, {"name": self.name, "seq": start + n})
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        self.highest = start + n
        return list(range(start + 1, start + n + 1))


def _declared_autoincrement(engine: sa.Engine, table: sa.Table) -> bool:
    """True when SQLite keeps `table`'s highest id in `sqlite_sequence` (see the module's docstring)."""
    with raw_cursor(engine) as cursor:
        found = cursor.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
        ).fetchone()
    return bool(found) and "AUTOINCREMENT" in found[0].upper()
