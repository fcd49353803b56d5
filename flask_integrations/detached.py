"""Writes that must outlive the caller's transaction.

Health counters, request rows and idempotency keys are committed on their own
connection so that the caller's rollback cannot undo them. On SQLite that is
impossible while the caller's connection holds the write lock (a second
connection would wait, then fail with "database is locked"), and with the
single-connection pools (`sqlite://` memory databases) a second connection is
the caller's own. In those cases the write waits and runs right after the
caller's transaction ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.pool import SingletonThreadPool, StaticPool

logger = logging.getLogger("flask_integrations")

T = TypeVar("T")
Work = Callable[[sa.Connection], T]
Then = Callable[[T], None] | None

_PENDING = "flask_integrations.after_transaction"


def shares_caller_connection(engine: sa.Engine) -> bool:
    """True when `engine.connect()` would hand back the caller's own DBAPI connection."""
    return isinstance(engine.pool, SingletonThreadPool | StaticPool)


def caller_holds_sqlite_write_lock(session: Session, engine: sa.Engine) -> bool:
    """True when a separate connection cannot write now without waiting on the caller."""
    if engine.dialect.name != "sqlite":
        return False
    transaction = session.get_transaction()
    if transaction is None:
        return False
    if shares_caller_connection(engine):
        return True
    connection = _connection_held(session, transaction, engine)
    if connection is None:  # the transaction has not touched this database yet: no lock
        return False
    return bool(getattr(connection.connection.dbapi_connection, "in_transaction", False))


def _connection_held(session: Session, transaction: Any, engine: sa.Engine) -> sa.Connection | None:
    """The connection the session's transaction holds on `engine`, without checking one out.

    SQLAlchemy keeps them in `SessionTransaction._connections` (shared with
    nested transactions); this is called for every request row, and the
    public `session.connection()` costs ten times as much and checks out a
    connection the caller may never have needed.
    """
    held = getattr(transaction, "_connections", None)
    if not isinstance(held, dict):  # another SQLAlchemy release: the public way
        return session.connection(bind_arguments={"bind": engine})
    entry = held.get(engine)
    return entry[0] if entry else None


def run_detached(session: Session | scoped_session, engine: sa.Engine, work: Work, then: Then = None) -> bool:
    """Run `work(connection)` in a transaction of its own and commit it.

    Runs at once when that is safe, else right after the session's current
    transaction ends. `then(result)` runs after the commit. Returns True when
    the work ran at once.
    """
    if isinstance(session, scoped_session):
        session = session()
    if caller_holds_sqlite_write_lock(session, engine):
        session.info.setdefault(_PENDING, []).append((engine, work, then))
        return False
    _execute(engine, work, then)
    return True


def _execute(engine: sa.Engine, work: Work, then: Then) -> None:
    with engine.begin() as connection:
        result = work(connection)
    if then is not None:
        then(result)


@event.listens_for(Session, "after_transaction_end")
def _run_deferred(session: Session, transaction: Any) -> None:
    if transaction.parent is not None or not session.info.get(_PENDING):
        return
    pending = session.info.pop(_PENDING)
    for engine, work, then in pending:
        try:
            _execute(engine, work, then)
        except Exception:
            logger.exception("flask-integrations: a deferred write failed after the transaction ended")
