"""One `{p}_requests` row per attempt: its values, and where and when it is written.

The row must survive the caller's rollback, so it never goes through the caller's
session: it is written in batches by a thread of its own (see `writer.py`), or in line
where a writer cannot reserve ids. Where SQLite makes a second connection unsafe (the
caller's transaction holds the write lock, or a memory database has a single
connection), the row is written right after the caller's transaction ends (see
`db/transactions.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa

from .. import signals
from ..clock import utcnow
from ..db.models import polymorphic_ref
from ..db.transactions import caller_holds_sqlite_write_lock, run_detached, shares_caller_connection
from ..logs.timeline import note as note_request_id
from ..redaction import error_text, integration_secrets, prepare_body, scrub_for
from ..state import AppState
from .context import RequestContext
from .http import decode
from .rows import InsertStatement, raw_cursor
from .writer import Finish, log_engine, wait_for_thread_rows, writer_for

if TYPE_CHECKING:  # pragma: no cover
    from .builder import RequestBuilder
    from .outcome import Outcome

REQUEST_ID_HEADERS = ("request-id", "x-request-id", "x-github-request-id", "x-amzn-requestid")


class RowInserter:
    """Inserts request rows in line, one round trip each (autocommit, no BEGIN/COMMIT).

    Used on MySQL and MariaDB, and on SQLite when the requests table cannot reserve ids (see
    `rows.id_reserver`) and a second connection is really separate (see
    `db.transactions.shares_caller_connection`).
    """

    def __init__(self, engine: sa.Engine, table: sa.Table):
        self.engine = engine
        self.statement = InsertStatement(engine, table, returning_id=True)

    def insert(self, row: dict[str, Any]) -> int:
        with raw_cursor(self.engine) as cursor:
            cursor.execute(self.statement.sql, self.statement.params(row))
            return cursor.fetchall()[0][0] if self.statement.returns_rows else cursor.lastrowid


def inserter(state: AppState) -> RowInserter:
    """The app's in-line inserter in this process."""
    return state.derived("row-inserter", lambda: RowInserter(log_engine(state), state.tables["requests"]))


class CallLog:
    """The rows of one call: later attempts point at the first through `retry_of`; `label` is the
    endpoint as rows, signals and errors show it (see `redaction.safe_url_text`)."""

    def __init__(self, label: str, retry_of: int | None = None):
        self.label = label
        self.first_id = retry_of

    def retry_of(self) -> int | None:
        return self.first_id

    def remember(self, row_id: int | None) -> None:
        if self.first_id is None:
            self.first_id = row_id


def record(
    state: AppState,
    provider: Any,
    spec: RequestBuilder,
    method: str,
    target: Any,
    ctx: RequestContext,
    outcome: Outcome,
    call_log: CallLog,
) -> None:
    integration = spec.integration
    secrets = integration_secrets(integration)
    log_bodies = logs_bodies(state, provider, spec)
    body_options = {
        "redact_keys": state.setting("REDACT_KEYS"),
        "secrets": secrets,
        "max_bytes": state.setting("LOG_BODY_MAX_BYTES"),
    }
    related_type, related_id = (
        polymorphic_ref(spec.related, "related") if spec.related is not None else (None, None)
    )
    error = None
    if outcome.exc is not None:
        error = error_text(outcome.exc, integration)
    elif outcome.failure is not None:
        error = f"HTTP {outcome.status}"
    values = {
        "integration_id": integration.id,
        "endpoint": call_log.label[:2048],
        "method": method[:255],
        "status_code": outcome.status,
        "request_data": prepare_body(
            outcome.request_data, paths=getattr(provider, "sensitive_request_fields", ()), **body_options
        )
        if log_bodies
        else None,
        "response_data": None,
        "error": error,
        "duration_ms": outcome.duration_ms,
        "idempotency_key": spec.idempotency_key,
        "provider_request_id": scrub_for(integration, provider_request_id(ctx, outcome.response)),
        "related_type": related_type,
        "related_id": related_id,
        "failure_class": outcome.failure,
        "cache_hits": 0,
        "stale_hits": 0,
    }

    def then(row_id: int | None) -> None:
        note_request_id(row_id)
        ctx.request_id = row_id
        outcome.request_id = row_id
        common = {
            "integration": integration,
            "request_id": row_id,
            "endpoint": call_log.label,
            "method": method,
        }
        signal = signals.request_completed if outcome.failure is None else signals.request_failed
        if not signal.receivers:
            return
        wait_for_thread_rows()  # signals go out after the row they describe is committed
        if outcome.failure is None:
            signal.send(state.app, status_code=outcome.status, duration_ms=outcome.duration_ms, **common)
        else:
            signal.send(state.app, error=error, failure_class=outcome.failure, **common)

    finish = None
    if log_bodies:
        response_paths = getattr(provider, "sensitive_response_fields", ())
        finish = response_body_later(outcome, target, response_paths, body_options)
        if finish is None:
            value = outcome.value
            body = decode(value) if isinstance(value, httpx.Response) else value
            values["response_data"] = prepare_body(body, paths=response_paths, **body_options)
    write_attempt(state, call_log, values, then, finish)


def logs_bodies(state: AppState, provider: Any, spec: RequestBuilder) -> bool:
    """Whether the call's rows keep bodies: only when the setting, the provider and the call all
    allow it (any one of them can turn body logging off; none can turn it on over another)."""
    return bool(state.setting("LOG_BODIES") and getattr(provider, "log_bodies", True) and spec.log_bodies)


def response_body_later(
    outcome: Outcome, target: Any, paths: Any, body_options: dict[str, Any]
) -> Finish | None:
    """The redaction of the response body, to run in the row writer's thread, or None to run it now.

    Only a body read from an `httpx.Response` waits: the response's bytes cannot
    change, where the caller may change the value it was given. A body larger
    than the stored maximum is redacted now, so that queued rows stay small.
    """
    response = outcome.response
    if response is None or (callable(target) and outcome.value is not response):
        return None  # no response, or an SDK's own value, which its caller now holds
    try:
        if len(response.content) > body_options["max_bytes"]:
            return None
    except httpx.ResponseNotRead:
        return None
    return lambda: {"response_data": prepare_body(decode(response), paths=paths, **body_options)}


def provider_request_id(ctx: RequestContext, response: httpx.Response | None) -> str | None:
    if ctx.provider_request_id:
        return str(ctx.provider_request_id)[:255]
    if response is not None:
        found = {name: value for name, value in response.headers.items() if name in REQUEST_ID_HEADERS}
        for name in REQUEST_ID_HEADERS:
            if found.get(name):
                return found[name][:255]
    return None


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
    writer = None if held else writer_for(state)
    if writer is not None or not (held or shares_caller_connection(engine)):
        if writer is not None:
            row_id = writer.submit(row(finished=False), finish)
        else:
            row_id = inserter(state).insert(row())
        call.remember(row_id)
        then(row_id)
        return

    def work(connection: sa.Connection) -> int | None:
        row_id = connection.execute(sa.insert(table).values(row())).inserted_primary_key[0]
        call.remember(row_id)
        return row_id

    run_detached(session, engine, work, then)
