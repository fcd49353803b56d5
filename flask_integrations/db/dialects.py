"""What differs between the three databases: the names, and MySQL's isolation level.

MySQL and MariaDB open a REPEATABLE READ snapshot at a transaction's first read by
default: the caller's transaction would then not see what the package committed on a
connection of its own meanwhile (health counters, request rows, a refreshed token),
nor another worker's finished claim. Every MySQL connection of an app is therefore
switched to READ COMMITTED when it opens, which is PostgreSQL's default (Django does
the same for MySQL, for the same reason).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

#: The dialect names SQLAlchemy gives MySQL and MariaDB (`mysql+pymysql://` on MariaDB is "mysql").
MYSQL_DIALECTS = ("mysql", "mariadb")


def is_mysql(name: str) -> bool:
    """True for a dialect name of MySQL or MariaDB."""
    return name in MYSQL_DIALECTS


def read_committed(engine: sa.Engine) -> None:
    """Open every new connection of a MySQL or MariaDB `engine` in READ COMMITTED (see above)."""
    if not is_mysql(engine.dialect.name) or event.contains(engine, "connect", _set_read_committed):
        return
    event.listen(engine, "connect", _set_read_committed)
    engine.pool.dispose()  # connections opened before this have the server's default


def _set_read_committed(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    cursor.close()


Executor = sa.Connection | Any  # a Connection or a Session: both `execute`


def update_returning(
    executor: Executor,
    table: sa.Table,
    where: list[sa.ColumnElement[bool]],
    values: dict[str, Any],
    columns: list[sa.ColumnElement[Any]],
) -> list[sa.Row]:
    """``UPDATE table SET values WHERE where RETURNING columns``, where the database lacks it too.

    MySQL and MariaDB have no UPDATE ... RETURNING: the rows are locked first with
    ``SELECT id ... FOR UPDATE`` (in id order, so two claimers cannot deadlock), then
    updated and read back in the same transaction. Under READ COMMITTED the locking read
    sees the latest committed rows: a second claimer waits, then finds them taken, just as
    PostgreSQL's UPDATE re-checks its WHERE after the wait.
    """
    dialect = executor.get_bind().dialect if hasattr(executor, "get_bind") else executor.dialect
    if dialect.update_returning:
        return list(executor.execute(sa.update(table).where(*where).values(values).returning(*columns)))
    locked = sa.select(table.c.id).where(*where).order_by(table.c.id).with_for_update()
    ids = list(executor.execute(locked).scalars())
    if not ids:
        return []
    executor.execute(sa.update(table).where(table.c.id.in_(ids)).values(values))
    return list(executor.execute(sa.select(*columns).where(table.c.id.in_(ids)).order_by(table.c.id)))


def insert_unless_duplicate(executor: Executor, table: sa.Table, values: dict[str, Any]) -> int | None:
    """MySQL's ``INSERT IGNORE``: the new row's id, or None when a unique key already holds it.

    A concurrent insert of the same key makes this wait until that transaction ends,
    as PostgreSQL's ``ON CONFLICT DO NOTHING`` does. IGNORE also turns a foreign key
    failure into a skipped row: callers that must tell the two apart look the key up.
    """
    result = executor.execute(sa.insert(table).prefix_with("IGNORE"), values)
    return result.inserted_primary_key[0] if result.rowcount == 1 else None
