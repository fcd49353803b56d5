"""At-most-once keyed calls: one `{p}_idempotency_keys` row per (integration, key).

The row is committed on its own connection before the call runs, so a
rollback of the caller's work can never re-open a key whose side effect
already happened. The unique index decides between racing processes.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from ..clock import utcnow
from ..db.transactions import caller_holds_sqlite_write_lock, shares_caller_connection
from ..errors import IdempotencyConflict, IntegrationsError, StoredResponse
from ..state import AppState
from .writer import wait_for_thread_rows


def ensure_independent_commit(state: AppState) -> None:
    """Refuse a keyed call whose key row could not be committed independently."""
    engine = state.engine()
    if shares_caller_connection(engine):
        raise RuntimeError(
            "Idempotency keys need their own database connection, but this engine's pool "
            f"({type(engine.pool).__name__}) hands back the caller's connection; use a file database "
            "or a server database for keyed calls."
        )
    if caller_holds_sqlite_write_lock(state.db.session(), engine):
        raise RuntimeError(
            "A keyed call cannot run while this SQLite session holds uncommitted writes: commit "
            "(or roll back) the session first, so the idempotency key can be committed on its own."
        )


def claim(state: AppState, integration_id: int, key: str) -> None:
    """Commit the key row, or raise IdempotencyConflict if the key was used before."""
    ensure_independent_commit(state)
    table = state.tables["idempotency_keys"]
    now = utcnow()
    try:
        with state.engine().begin() as connection:
            connection.execute(
                sa.insert(table).values(
                    integration_id=integration_id, key=key, created_at=now, updated_at=now
                )
            )
    except sa.exc.IntegrityError:
        if not _key_exists(state, integration_id, key):
            raise IntegrationsError(
                f"Integration {integration_id} is not committed yet: commit it before a keyed call."
            ) from None
        raise IdempotencyConflict(
            integration_id,
            key,
            original_request_id(state, integration_id, key),
            stored_response(state, integration_id, key),
        ) from None


def _key_exists(state: AppState, integration_id: int, key: str) -> bool:
    table = state.tables["idempotency_keys"]
    with state.engine().connect() as connection:
        found = connection.execute(
            sa.select(table.c.id).where(table.c.integration_id == integration_id, table.c.key == key)
        ).first()
    return found is not None


def original_request_id(state: AppState, integration_id: int, key: str) -> int | None:
    table = state.tables["requests"]
    with state.engine().connect() as connection:
        return connection.execute(
            sa.select(sa.func.min(table.c.id)).where(
                table.c.integration_id == integration_id, table.c.idempotency_key == key
            )
        ).scalar()


def complete(state: AppState, integration_id: int, key: str, request_id: int | None) -> None:
    """Point the key row at the call's last request row: later conflicts carry its answer.

    The row is committed first (the writer thread may still hold it), so a conflict never
    points at a row another process cannot read yet. Without a row (it could not be
    written) the key stays as it is: conflicts then carry no response.
    """
    if request_id is None:
        return
    wait_for_thread_rows()
    table = state.tables["idempotency_keys"]
    with state.engine().begin() as connection:
        connection.execute(
            sa.update(table)
            .where(table.c.integration_id == integration_id, table.c.key == key)
            .values(request_id=request_id, updated_at=utcnow())
        )


def stored_response(state: AppState, integration_id: int, key: str) -> StoredResponse | None:
    """The first call's answer from its last request row; None while it runs (or if the row is gone)."""
    keys, requests = state.tables["idempotency_keys"], state.tables["requests"]
    query = (
        sa.select(requests.c.id, requests.c.status_code, requests.c.response_data)
        .select_from(keys.join(requests, requests.c.id == keys.c.request_id))
        .where(keys.c.integration_id == integration_id, keys.c.key == key)
    )
    with state.engine().connect() as connection:
        found = connection.execute(query).first()
    if found is None:
        return None
    return StoredResponse(found.status_code, decoded(found.response_data), found.id)


def decoded(text: str | None) -> object:
    """A stored body: decoded JSON where the text is JSON (as a live answer is decoded), else the text."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def release(state: AppState, integration_id: int, key: str) -> None:
    """Free the key: the upstream provably did not act, so the call may be made again."""
    table = state.tables["idempotency_keys"]
    with state.engine().begin() as connection:
        connection.execute(
            sa.delete(table).where(table.c.integration_id == integration_id, table.c.key == key)
        )
