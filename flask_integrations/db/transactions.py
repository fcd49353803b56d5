"""What happens after the caller's transaction, and writes that must outlive it.

One pair of session listeners serves the whole package:

- `after_commit(session, callback)` runs `callback()` once the session's outermost
  transaction commits, and never after a rollback; at once when no transaction is open.
  The signals of operation logs written inside the caller's transaction go out this way;
  `batch_after_commit` collects items (the jobs a transaction enqueues: the row a job is
  for must be committed first) and hands them over together.
- `run_detached(session, engine, work)` commits `work(connection)` on a connection of its
  own, so that the caller's rollback cannot undo it (health counters, request rows,
  idempotency keys). On SQLite that is impossible while the caller's connection holds the
  write lock (a second connection would wait, then fail with "database is locked"), and
  with the single-connection pools (`sqlite://` memory databases) a second connection is
  the caller's own. In those cases the work runs right after the caller's transaction
  ends, committed or rolled back.

When a transaction ends, its deferred writes run first, then (if it committed) the
after-commit callbacks, in the order they were registered: a job or a signal never comes
before the rows it is about.
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

_WRITES = "flask_integrations.deferred_writes"
_ON_COMMIT = "flask_integrations.after_commit"
_BATCHES = "flask_integrations.commit_batches"
_COMMITTED = "flask_integrations.committed"
_ROW_LOCKS = "flask_integrations.row_locks"


def plain_session(session: Session | scoped_session) -> Session:
    """The `Session` behind a scoped session (Flask-SQLAlchemy's `db.session`)."""
    return session() if isinstance(session, scoped_session) else session


def dialect_name(bind: Session | scoped_session | sa.Engine | sa.Connection) -> str:
    """'postgresql', 'sqlite', ... of an engine, a connection or a session's bind."""
    if isinstance(bind, sa.Engine | sa.Connection):
        return bind.dialect.name
    return plain_session(bind).get_bind().dialect.name


def after_commit(session: Session | scoped_session, callback: Callable[[], Any]) -> None:
    """Run `callback()` after the session's outermost transaction commits (dropped on rollback);
    at once when the session has no transaction open."""
    session = plain_session(session)
    if not session.in_transaction():
        callback()
        return
    session.info.setdefault(_ON_COMMIT, []).append(callback)


def batch_after_commit(
    session: Session | scoped_session, key: str, item: T, handler: Callable[[list[T]], Any]
) -> None:
    """Add `item` to the transaction's batch `key`; once the transaction commits, `handler(items)`
    runs once with the whole batch, in order. At once, with ``[item]``, when no transaction is open."""
    session = plain_session(session)
    if not session.in_transaction():
        handler([item])
        return
    batches = session.info.setdefault(_BATCHES, {})
    items = batches.get(key)
    if items is None:
        items = batches[key] = []
        after_commit(session, lambda: handler(items))
    items.append(item)


def shares_caller_connection(engine: sa.Engine) -> bool:
    """True when `engine.connect()` would hand back the caller's own DBAPI connection."""
    return isinstance(engine.pool, SingletonThreadPool | StaticPool)


def caller_holds_sqlite_write_lock(session: Session | scoped_session, engine: sa.Engine) -> bool:
    """True when a separate connection cannot write now without waiting on the caller."""
    if engine.dialect.name != "sqlite":
        return False
    session = plain_session(session)
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


def mark_row_locks(session: Session | scoped_session) -> None:
    """Note that the session's transaction holds row locks that other connections' inserts of
    child rows would wait on (MySQL's foreign key checks share-lock the parent row, which
    PostgreSQL's do not): the package's own rows then go into this transaction, till it ends."""
    plain_session(session).info[_ROW_LOCKS] = True


def holds_row_locks(session: Session | scoped_session) -> bool:
    """True while the session's transaction is marked by `mark_row_locks`."""
    return bool(plain_session(session).info.get(_ROW_LOCKS))


def run_detached(session: Session | scoped_session, engine: sa.Engine, work: Work, then: Then = None) -> bool:
    """Run `work(connection)` in a transaction of its own and commit it.

    Runs at once when that is safe, else right after the session's current
    transaction ends. `then(result)` runs after the commit. Returns True when
    the work ran at once.
    """
    session = plain_session(session)
    if caller_holds_sqlite_write_lock(session, engine):
        session.info.setdefault(_WRITES, []).append((engine, work, then))
        return False
    _execute(engine, work, then)
    return True


def _execute(engine: sa.Engine, work: Work, then: Then) -> None:
    with engine.begin() as connection:
        result = work(connection)
    if then is not None:
        then(result)


@event.listens_for(Session, "after_commit")
def _mark_committed(session: Session) -> None:
    # also fired when a savepoint is released: only the outermost commit counts
    if session.info.get(_ON_COMMIT) and not session.in_nested_transaction():
        session.info[_COMMITTED] = True


@event.listens_for(Session, "after_transaction_end")
def _transaction_ended(session: Session, transaction: Any) -> None:
    if transaction.parent is not None:
        return
    session.info.pop(_ROW_LOCKS, None)
    writes = session.info.pop(_WRITES, None)
    callbacks = session.info.pop(_ON_COMMIT, None)
    session.info.pop(_BATCHES, None)
    committed = session.info.pop(_COMMITTED, False)
    for engine, work, then in writes or ():
        try:
            _execute(engine, work, then)
        except Exception:
            logger.exception("flask-integrations: a deferred write failed after the transaction ended")
    if committed and callbacks:
        _run_all(callbacks)


def _run_all(callbacks: list[Callable[[], Any]]) -> None:
    """Run every callback; the first one's error is raised once all have run."""
    error: BaseException | None = None
    for callback in callbacks:
        try:
            callback()
        except Exception as exc:  # noqa: BLE001 - the others still run
            error = error or exc
    if error is not None:
        raise error
