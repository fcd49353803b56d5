"""The lock that serialises token refreshes of one integration across processes.

Which lock guards a refresh depends on where the app keeps shared state:

- Redis mode: a Redis lock (`Store.acquire_lock`, expiring after `refresh_lock_ttl`),
  polled for up to `refresh_lock_wait` seconds. It fails closed: if Redis is
  unreachable the refresh does not happen (`StoreUnavailable`).
- Embedded mode on PostgreSQL: the integration's row itself, locked with
  ``SELECT ... FOR UPDATE`` by `tokens.TokenRow` on its own connection; the
  server releases it if the process dies. No lock here (`NO_LOCK`).
- Embedded mode on MySQL or MariaDB: a named lock, ``GET_LOCK``, held by a connection of
  its own for the refresh; the server releases it if the process dies. (Locking the row
  instead would block every insert of a request or log row of the integration meanwhile:
  MySQL's foreign key checks share-lock the parent row.)
- Embedded mode on a SQLite file: a lock row in ``{p}_idempotency_keys`` under the
  reserved key `REFRESH_LOCK_KEY`, whose unique index lets one process insert it.
  Each insert is a short transaction of its own, so the database's single write
  lock is never held while the provider answers. A row older than
  `refresh_lock_ttl` (its holder died) is taken over.
- A single-connection pool (an in-memory SQLite database): the database lives in
  this process only, so the memory store's process-local lock is enough.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa

from ..clock import utcnow
from ..db.dialects import is_mysql
from ..db.transactions import shares_caller_connection
from ..errors import IntegrationsError
from ..state import AppState

#: Key of the refresh lock row in `{p}_idempotency_keys` (reserved: do not use it for calls).
REFRESH_LOCK_KEY = "flask-integrations:oauth-refresh"

_FIRST_POLL = 0.02
_MAX_POLL = 0.25


def lock_wait_exceeded(integration_id: int, wait: float) -> IntegrationsError:
    return IntegrationsError(
        f"Gave up after {wait:g}s waiting for the token refresh lock of integration {integration_id}: "
        "another process is refreshing it and has not finished, or this session holds uncommitted "
        "changes to the integration (commit them first)."
    )


def uses_row_lock(state: AppState) -> bool:
    """True when the integration's own row (PostgreSQL, embedded mode) is the lock."""
    return not state.setting("REDIS_URL") and state.engine().dialect.name == "postgresql"


@contextmanager
def refresh_lock(state: AppState, integration_id: int) -> Iterator[None]:
    """Hold the refresh lock of one integration (see the module docstring for which one)."""
    settings = state.setting("OAUTH")
    ttl, wait = float(settings["refresh_lock_ttl"]), float(settings["refresh_lock_wait"])
    engine = state.engine()
    if state.setting("REDIS_URL") or shares_caller_connection(engine):
        with _store_lock(state, integration_id, ttl, wait):
            yield
    elif uses_row_lock(state):
        yield
    elif is_mysql(engine.dialect.name):
        with _named_lock(engine, state.tables["integrations"].name, integration_id, wait):
            yield
    else:
        with _row_lock(state, integration_id, ttl, wait):
            yield


@contextmanager
def _named_lock(engine: sa.Engine, table: str, integration_id: int, wait: float) -> Iterator[None]:
    # GET_LOCK names are server-wide and at most 64 characters: the database and table go in hashed
    scope = hashlib.sha1(f"{engine.url.database}/{table}".encode()).hexdigest()[:16]
    name = f"fi-oauth-{scope}-{integration_id}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        got = connection.scalar(sa.text("SELECT GET_LOCK(:name, :wait)"), {"name": name, "wait": wait})
        if got != 1:
            raise lock_wait_exceeded(integration_id, wait)
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def _polls(integration_id: int, wait: float) -> Iterator[None]:
    """Yield until `wait` seconds have passed, sleeping a little longer each time; then raise."""
    deadline = time.monotonic() + wait
    delay = _FIRST_POLL
    while True:
        yield
        if time.monotonic() >= deadline:
            raise lock_wait_exceeded(integration_id, wait)
        time.sleep(min(delay * (0.5 + random.random()), max(deadline - time.monotonic(), 0)))
        delay = min(delay * 1.5, _MAX_POLL)


def forget(state: AppState, integration_id: int) -> None:
    """Drop a refresh lock left under a deleted integration's id (Redis mode)."""
    if state.setting("REDIS_URL"):
        state.store.delete(_store_lock_name(integration_id))


def _store_lock_name(integration_id: int) -> str:
    return f"oauth-refresh:{integration_id}"


@contextmanager
def _store_lock(state: AppState, integration_id: int, ttl: float, wait: float) -> Iterator[None]:
    store = state.store
    name = _store_lock_name(integration_id)
    token = None
    for _ in _polls(integration_id, wait):
        token = store.acquire_lock(name, ttl)
        if token is not None:
            break
    try:
        yield
    finally:
        store.release_lock(name, token)


@contextmanager
def _row_lock(state: AppState, integration_id: int, ttl: float, wait: float) -> Iterator[None]:
    table = state.tables["idempotency_keys"]
    engine = state.engine()
    row_id = None
    for _ in _polls(integration_id, wait):
        row_id = _insert_lock_row(engine, table, integration_id)
        if row_id is None and _take_over_stale(engine, table, integration_id, ttl):
            row_id = _insert_lock_row(engine, table, integration_id)
        if row_id is not None:
            break
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(sa.delete(table).where(table.c.id == row_id))


def _insert_lock_row(engine: sa.Engine, table: sa.Table, integration_id: int) -> int | None:
    now = utcnow()
    values = {"integration_id": integration_id, "key": REFRESH_LOCK_KEY, "created_at": now, "updated_at": now}
    try:
        with engine.begin() as connection:
            return connection.execute(sa.insert(table).values(values)).inserted_primary_key[0]
    except sa.exc.IntegrityError:
        return None
    except sa.exc.OperationalError as exc:  # SQLite busy past its timeout: poll again
        if _busy(exc):
            return None
        raise


def _take_over_stale(engine: sa.Engine, table: sa.Table, integration_id: int, ttl: float) -> bool:
    """Delete a lock row older than `ttl` (its holder died); True when one was deleted."""
    cutoff = utcnow() - timedelta(seconds=ttl)
    stale = sa.delete(table).where(
        table.c.integration_id == integration_id,
        table.c.key == REFRESH_LOCK_KEY,
        table.c.created_at < cutoff,
    )
    try:
        with engine.begin() as connection:
            return bool(connection.execute(stale).rowcount)
    except sa.exc.OperationalError as exc:  # SQLite busy past its timeout: poll again
        if _busy(exc):
            return False
        raise


def _busy(exc: sa.exc.OperationalError) -> bool:
    return "locked" in str(exc.orig).lower()
