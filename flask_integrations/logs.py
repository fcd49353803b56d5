"""Operation logs (SPEC section 4): one `{p}_logs` row per sync run, import or webhook job.

Writing. `log_operation` inserts and commits the row on a connection of its
own, like request rows, so a log survives the caller's rollback; the returned
`IntegrationLog` is attached to the caller's session as a persistent object
(no extra SELECT). Where a second connection cannot write (SQLite while the
caller's connection holds the write lock, single-connection pools) or cannot
see what the row refers to (an integration or parent log the caller has not
committed yet), the row is flushed in the caller's transaction instead and
commits, or rolls back, with it. Signals go out after the row is committed:
at once, or after the caller's commit (never after a rollback).

`finish(log, status, ...)` ends a `processing` log with one conditional
UPDATE, so of several processes finishing the same log exactly one wins (and
sends the signal); the others get False.

Context. `operation_context(integration, operation)` marks the code inside it
as work for that integration; `IntegrationContextFilter` copies the marks onto
every `logging` record (installed on the ``flask_integrations`` logger at
import; add it to your own handlers for your records). `collect_request_ids`
and `append_request_ids` build a run's request timeline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, make_transient_to_detached, scoped_session
from sqlalchemy.orm.attributes import set_committed_value

from . import models, signals
from .clock import utcnow
from .detached import caller_holds_sqlite_write_lock, run_detached
from .pipeline import redact
from .pipeline.timeline import collect_request_ids
from .state import AppState, current_state

if TYPE_CHECKING:  # pragma: no cover
    from .models import Integration, IntegrationLog

__all__ = [
    "DIRECTIONS",
    "IntegrationContextFilter",
    "LogSelect",
    "append_request_ids",
    "collect_request_ids",
    "current_operation",
    "finish",
    "install_context_filter",
    "log_operation",
    "operation_context",
]

INBOUND, OUTBOUND = "inbound", "outbound"
DIRECTIONS = (INBOUND, OUTBOUND)
PROCESSING, SUCCESS, PARTIAL, FAILED = "processing", "success", "partial", "failed"
SUMMARY_MAX, EXTERNAL_ID_MAX, STRING_MAX = 255, 500, 255
REQUEST_IDS_CAP = 1000

#: The signal a status sends when a log is written or finished with it; other statuses send none.
STATUS_SIGNALS = {
    PROCESSING: signals.operation_started,
    SUCCESS: signals.operation_completed,
    FAILED: signals.operation_failed,
}

logger = logging.getLogger("flask_integrations")


# -- writing -------------------------------------------------------------------------------------


def log_operation(
    integration: Integration,
    operation: str,
    direction: str,
    status: str,
    summary: str | None = None,
    external_id: Any = None,
    metadata: Mapping[str, Any] | None = None,
    result_data: Any = None,
    error: str | BaseException | None = None,
    duration_ms: float | None = None,
    parent: IntegrationLog | int | None = None,
) -> IntegrationLog:
    """Insert and commit one operation log; see the module docstring for where it is written."""
    state = current_state()
    _require_text("operation", operation)
    _require_text("status", status)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'inbound' or 'outbound', got {direction!r}.")
    if integration.id is None:
        raise ValueError("the integration must be saved (flushed) before logging an operation.")
    parent_id = _parent_id(integration, parent)
    secrets = redact.integration_secrets(integration)
    now = utcnow()
    values = {
        "integration_id": integration.id,
        "operation": operation,
        "direction": direction,
        "status": status,
        "summary": _cut(redact.scrub(summary, secrets), SUMMARY_MAX),
        "external_id": None if external_id is None else str(external_id)[:EXTERNAL_ID_MAX],
        "metadata": _clean_data(state, metadata, secrets),
        "result_data": _clean_data(state, result_data, secrets),
        "error": _error_text(error, secrets),
        "duration_ms": _duration(duration_ms),
        "parent_id": parent_id,
        "created_at": now,
        "updated_at": now,
    }
    log, committed = _insert(state, values)
    _send_after_commit(state, log, integration, STATUS_SIGNALS.get(status), committed)
    return log


def finish(
    log: IntegrationLog,
    status: str,
    summary: str | None = None,
    error: str | BaseException | None = None,
    result_data: Any = None,
    metadata: Mapping[str, Any] | None = None,
    duration_ms: float | None = None,
) -> bool:
    """End a `processing` log with `status`; True if this call ended it, False if it was not processing.

    Arguments left None keep their stored value; `metadata` is merged into the
    stored metadata key by key (in the same statement, so concurrent
    `append_request_ids` calls are not lost); `duration_ms` defaults to the
    time since the log was created.
    """
    state = current_state()
    _require_text("status", status)
    if status == PROCESSING:
        raise ValueError("finish() needs a final status, not 'processing'.")
    if log.id is None:
        raise ValueError("the log must be saved before it is finished.")
    integration = state.db.session.get(models.Integration, log.integration_id)
    secrets = redact.integration_secrets(integration)
    table = state.tables["logs"]
    now = utcnow()
    if duration_ms is None and log.created_at is not None:
        duration_ms = (now - log.created_at).total_seconds() * 1000
    values: dict[str, Any] = {"status": status, "updated_at": now, "duration_ms": _duration(duration_ms)}
    if summary is not None:
        values["summary"] = _cut(redact.scrub(summary, secrets), SUMMARY_MAX)
    if error is not None:
        values["error"] = _error_text(error, secrets)
    if result_data is not None:
        values["result_data"] = _clean_data(state, result_data, secrets)
    statement = sa.update(table).where(table.c.id == log.id, table.c.status == PROCESSING).values(values)
    if metadata:
        patch = _clean_data(state, metadata, secrets)
        statement = statement.values(metadata=_merged_metadata(table.c.metadata, patch, _dialect(state)))
    statement = statement.returning(*table.c)

    def work(connection: sa.Connection) -> Any:
        return connection.execute(statement).mappings().first()

    row, committed = _write(state, work, in_session=_uncommitted(log))
    if row is None:
        return False
    for name, value in row.items():
        if name != "id":
            set_committed_value(log, name, value)
    _send_after_commit(state, log, integration, STATUS_SIGNALS.get(status), committed)
    return True


def append_request_ids(log: IntegrationLog | int, ids: list[int], cap: int = REQUEST_IDS_CAP) -> None:
    """Append `ids` to the log's ``metadata["request_ids"]`` in one atomic UPDATE, keeping at most `cap`.

    Safe under concurrent appends from several processes: each statement reads
    and writes the row under the database's row lock. Ids past the cap are
    dropped (the first `cap` ids are kept). Written on its own connection (so a
    rollback of the caller's work keeps the timeline), or right after the
    caller's transaction where SQLite requires it.
    """
    ids = [int(i) for i in ids if i is not None]
    if not ids or cap <= 0:
        return
    state = current_state()
    log_id = log if isinstance(log, int) else log.id
    dialect = _dialect(state)
    statement = _append_statement(
        state.db.engine.dialect.identifier_preparer.quote(state.tables["logs"].name), dialect
    )
    params: dict[str, Any] = {"id": log_id, "ids": json.dumps(ids)}
    params.update({"path": f"$[0 to {int(cap) - 1}]"} if dialect == "postgresql" else {"cap": int(cap)})

    def work(connection: sa.Connection) -> None:
        connection.execute(statement, params)

    if not isinstance(log, int) and _uncommitted(log):
        _write(state, work, in_session=True)
        _expire_metadata(state, log_id)
        return
    run_detached(state.db.session, state.db.engine, work, lambda _: _expire_metadata(state, log_id))


def _append_statement(quoted_table: str, dialect: str) -> sa.TextClause:
    """One UPDATE appending a JSON array of ids to ``metadata.request_ids``, cut to the cap."""
    if dialect == "postgresql":
        return sa.text(
            f"UPDATE {quoted_table} SET metadata = "
            "(CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata ELSE '{}'::jsonb END) "
            "|| jsonb_build_object('request_ids', jsonb_path_query_array("
            "(CASE WHEN jsonb_typeof(metadata -> 'request_ids') = 'array' "
            "THEN metadata -> 'request_ids' ELSE '[]'::jsonb END) || CAST(:ids AS jsonb), "
            "CAST(:path AS jsonpath))) "
            "WHERE id = :id"
        )
    return sa.text(
        f"UPDATE {quoted_table} SET metadata = json_set("
        "CASE WHEN json_type(metadata) = 'object' THEN metadata ELSE '{}' END, '$.request_ids', "
        "json((SELECT json_group_array(value) FROM ("
        "SELECT value FROM (SELECT 0 AS src, CAST(key AS INTEGER) AS pos, value FROM json_each("
        "CASE WHEN json_type(metadata, '$.request_ids') = 'array' "
        "THEN json_extract(metadata, '$.request_ids') ELSE '[]' END) "
        "UNION ALL SELECT 1, CAST(key AS INTEGER), value FROM json_each(:ids)) "
        "ORDER BY src, pos LIMIT :cap)))) "
        "WHERE id = :id"
    )


def _merged_metadata(column: sa.ColumnElement, patch: dict[str, Any], dialect: str) -> sa.ColumnElement:
    """The stored metadata with `patch`'s top-level keys set, as one SQL expression."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        base = sa.case((sa.func.jsonb_typeof(column) == "object", column), else_=sa.cast("{}", JSONB))
        return base.op("||")(sa.cast(sa.literal(json.dumps(patch)), JSONB))
    arguments: list[Any] = []
    for key, value in patch.items():
        if '"' in key:
            raise ValueError(f"metadata keys may not contain '\"', got {key!r}.")
        arguments += [sa.literal(f'$."{key}"'), sa.func.json(sa.literal(json.dumps(value)))]
    base = sa.case((sa.func.json_type(column) == "object", column), else_=sa.literal("{}"))
    return sa.func.json_set(base, *arguments)


# -- where the write goes ------------------------------------------------------------------------

_UNCOMMITTED = "_fi_uncommitted"
_PENDING_SIGNALS = "flask_integrations.log_signals"
_COMMITTED = "flask_integrations.log_signals_committed"


def _insert(state: AppState, values: dict[str, Any]) -> tuple[IntegrationLog, bool]:
    table = state.tables["logs"]
    session = _session(state)
    if not caller_holds_sqlite_write_lock(session, state.db.engine):
        try:
            with state.db.engine.begin() as connection:
                row_id = connection.execute(
                    sa.insert(table).values(values).returning(table.c.id)
                ).scalar_one()
        except sa.exc.IntegrityError:
            pass  # the integration or the parent exists only in the caller's open transaction
        else:
            return _attach(session, {**values, "id": row_id}), True
    log = models.IntegrationLog()
    for name, value in values.items():
        setattr(log, name, value)
    session.add(log)
    session.flush()
    setattr(log, _UNCOMMITTED, True)
    return log, False


def _attach(session: Session, row: dict[str, Any]) -> IntegrationLog:
    """A persistent instance for a row committed elsewhere, without reading it back."""
    log = models.IntegrationLog()
    for name, value in row.items():
        setattr(log, name, value)
    make_transient_to_detached(log)
    session.add(log)
    return log


def _write(state: AppState, work: Any, in_session: bool) -> tuple[Any, bool]:
    """Run `work(connection)` committed on its own connection, else in the caller's transaction.

    Returns (result, committed).
    """
    session = _session(state)
    if not in_session and not caller_holds_sqlite_write_lock(session, state.db.engine):
        with state.db.engine.begin() as connection:
            return work(connection), True
    return work(session.connection()), False


def _uncommitted(log: IntegrationLog) -> bool:
    return bool(getattr(log, _UNCOMMITTED, False))


def _send_after_commit(
    state: AppState, log: IntegrationLog, integration: Integration | None, signal: Any, committed: bool
) -> None:
    if committed:
        if signal is not None:
            signal.send(state.app, log=log, integration=integration)
        return
    _session(state).info.setdefault(_PENDING_SIGNALS, []).append((state.app, log, integration, signal))


@event.listens_for(Session, "after_commit")
def _mark_committed(session: Session) -> None:
    if session.info.get(_PENDING_SIGNALS):
        session.info[_COMMITTED] = True


@event.listens_for(Session, "after_transaction_end")
def _send_pending(session: Session, transaction: Any) -> None:
    if transaction.parent is not None or _PENDING_SIGNALS not in session.info:
        return
    pending = session.info.pop(_PENDING_SIGNALS)
    if not session.info.pop(_COMMITTED, False):
        return  # rolled back: the rows are gone, and so are their signals
    for app, log, integration, signal in pending:
        state = sa.inspect(log)
        if state.transient or state.deleted or state.was_deleted:
            continue  # undone by a rolled-back savepoint
        setattr(log, _UNCOMMITTED, False)
        if signal is not None:
            signal.send(app, log=log, integration=integration)


def _session(state: AppState) -> Session:
    session = state.db.session
    return session() if isinstance(session, scoped_session) else session


def _dialect(state: AppState) -> str:
    return state.db.engine.dialect.name


def _expire_metadata(state: AppState, log_id: int) -> None:
    """Let an instance of the log in this session read the appended ids on next access."""
    session = _session(state)
    key = session.identity_key(models.IntegrationLog, log_id)
    log = session.identity_map.get(key)
    if log is not None and not sa.inspect(log).attrs.metadata.history.has_changes():
        session.expire(log, ["metadata"])


# -- values --------------------------------------------------------------------------------------


def _require_text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
    if len(value) > STRING_MAX:
        raise ValueError(f"{name} is longer than {STRING_MAX} characters.")


def _parent_id(integration: Integration, parent: Any) -> int | None:
    if parent is None:
        return None
    if isinstance(parent, int) and not isinstance(parent, bool):
        return parent
    if parent.id is None:
        raise ValueError("the parent log must be saved before a child is logged under it.")
    if parent.integration_id != integration.id:
        raise ValueError(
            f"log {parent.id} belongs to integration {parent.integration_id}, not {integration.id}."
        )
    return parent.id


def _cut(text: str | None, limit: int) -> str | None:
    return None if text is None else text[:limit]


def _error_text(error: str | BaseException | None, secrets: list[str]) -> str | None:
    if error is None:
        return None
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return redact.scrub(text, secrets)


def _duration(duration_ms: float | None) -> int | None:
    if duration_ms is None:
        return None
    if isinstance(duration_ms, bool) or duration_ms < 0:
        raise ValueError(f"duration_ms must be a non-negative number, got {duration_ms!r}.")
    return round(duration_ms)


def _clean_data(state: AppState, data: Any, secrets: list[str]) -> Any:
    """JSON-ready data with the redact keys masked and the integration's secrets scrubbed."""
    if data is None:
        return None
    redacted = redact.redact(data, redact_keys=state.setting("REDACT_KEYS"))
    return _scrub_strings(redacted, secrets) if secrets else redacted


def _scrub_strings(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact.scrub(value, secrets)
    if isinstance(value, dict):
        return {redact.scrub(k, secrets): _scrub_strings(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_strings(v, secrets) for v in value]
    return value


# -- querying ------------------------------------------------------------------------------------


class LogSelect(sa.Select):
    """A ``select(IntegrationLog)`` with the log helpers, chainable in any order.

    Usable wherever a Select is: ``db.session.scalars(...)``, ``db.paginate(...)``,
    ``.where()``, ``.order_by()``; every helper is also available on the result.
    """

    inherit_cache = True

    @classmethod
    def of_logs(cls) -> LogSelect:
        return cls(models.IntegrationLog)

    def successful(self) -> LogSelect:
        return self.where(models.IntegrationLog.status == SUCCESS)

    def failed(self) -> LogSelect:
        return self.where(models.IntegrationLog.status == FAILED)

    def processing(self) -> LogSelect:
        return self.where(models.IntegrationLog.status == PROCESSING)

    def for_operation(self, operation: str) -> LogSelect:
        return self.where(models.IntegrationLog.operation == operation)

    def for_integration(self, integration: Integration | int) -> LogSelect:
        integration_id = integration if isinstance(integration, int) else integration.id
        return self.where(models.IntegrationLog.integration_id == integration_id)

    def top_level(self) -> LogSelect:
        return self.where(models.IntegrationLog.parent_id.is_(None))

    def recent(self, hours: float = 24) -> LogSelect:
        from datetime import timedelta

        return self.where(models.IntegrationLog.created_at >= utcnow() - timedelta(hours=hours))

    def newest_first(self) -> LogSelect:
        return self.order_by(models.IntegrationLog.created_at.desc(), models.IntegrationLog.id.desc())


# -- logging context -----------------------------------------------------------------------------

_operation: ContextVar[tuple[int | None, str | None, str | None] | None] = ContextVar(
    "flask_integrations_operation", default=None
)
CONTEXT_FIELDS = ("integration_id", "integration_provider", "integration_operation")


@contextmanager
def operation_context(integration: Integration, operation: str) -> Iterator[None]:
    """Inside the block, log records carry the integration's id, provider key and `operation`.

    The values are read once on entry, so the filter never touches the database.
    """
    token = _operation.set((integration.id, integration.provider, operation))
    try:
        yield
    finally:
        _operation.reset(token)


def current_operation() -> dict[str, Any]:
    """The context fields in effect here (all None outside `operation_context`)."""
    return dict(zip(CONTEXT_FIELDS, _operation.get() or (None, None, None), strict=True))


class IntegrationContextFilter(logging.Filter):
    """Adds `integration_id`, `integration_provider` and `integration_operation` to every record.

    The values come from the innermost `operation_context` (None outside one);
    values a caller passed through ``extra=`` are kept. Never filters anything out.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_operation().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def install_context_filter(
    target: logging.Logger | logging.Handler | None = None,
) -> IntegrationContextFilter:
    """Add the filter to a logger or handler (default: the ``flask_integrations`` logger), once."""
    target = target if target is not None else logger
    for existing in target.filters:
        if isinstance(existing, IntegrationContextFilter):
            return existing
    installed = IntegrationContextFilter()
    target.addFilter(installed)
    return installed


install_context_filter()
