"""Writing operation logs (SPEC section 4): one `{p}_logs` row per sync run, import or webhook job.

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

`append_request_ids` adds what `timeline.collect_request_ids` collected to a run's log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from .. import signals
from ..clock import utcnow
from ..db.dialects import is_mysql, update_returning
from ..db.models import REQUEST_IDS_CAP, Integration, IntegrationLog
from ..db.statuses import Direction, LogStatus
from ..db.transactions import (
    after_commit,
    caller_holds_sqlite_write_lock,
    dialect_name,
    holds_row_locks,
    plain_session,
    run_detached,
)
from ..redaction import error_text, integration_secrets, redact, scrub, scrub_for
from ..state import AppState, current_state

__all__ = ["STATUS_SIGNALS", "append_request_ids", "finish", "log_operation", "merged_metadata"]

SUMMARY_MAX, EXTERNAL_ID_MAX, STRING_MAX = 255, 500, 255

#: The signal a status sends when a log is written or finished with it; other statuses send none.
STATUS_SIGNALS = {
    LogStatus.PROCESSING: signals.operation_started,
    LogStatus.SUCCESS: signals.operation_completed,
    LogStatus.FAILED: signals.operation_failed,
}


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
    if direction not in tuple(Direction):
        raise ValueError(f"direction must be 'inbound' or 'outbound', got {direction!r}.")
    if integration.id is None:
        raise ValueError("the integration must be saved (flushed) before logging an operation.")
    parent_id = _parent_id(integration, parent)
    now = utcnow()
    values = {
        "integration_id": integration.id,
        "operation": scrub_for(integration, operation),
        "direction": direction,
        "status": scrub_for(integration, status),
        "summary": _cut(scrub_for(integration, summary), SUMMARY_MAX),
        "external_id": None
        if external_id is None
        else scrub_for(integration, str(external_id)[:EXTERNAL_ID_MAX]),
        "metadata": _clean_data(state, metadata, integration),
        "result_data": _clean_data(state, result_data, integration),
        "error": None if error is None else error_text(error, integration),
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
    if status == LogStatus.PROCESSING:
        raise ValueError("finish() needs a final status, not 'processing'.")
    if log.id is None:
        raise ValueError("the log must be saved before it is finished.")
    integration = state.db.session.get(Integration, log.integration_id)
    table = state.tables["logs"]
    now = utcnow()
    if duration_ms is None and log.created_at is not None:
        duration_ms = (now - log.created_at).total_seconds() * 1000
    values: dict[str, Any] = {"status": status, "updated_at": now, "duration_ms": _duration(duration_ms)}
    if summary is not None:
        values["summary"] = _cut(scrub_for(integration, summary), SUMMARY_MAX)
    if error is not None:
        values["error"] = None if error is None else error_text(error, integration)
    if result_data is not None:
        values["result_data"] = _clean_data(state, result_data, integration)
    if metadata:
        patch = _clean_data(state, metadata, integration)
        values["metadata"] = merged_metadata(table.c.metadata, patch, dialect_name(state.engine()))
    where = [table.c.id == log.id, table.c.status == LogStatus.PROCESSING]

    def work(connection: sa.Connection) -> Any:
        rows = update_returning(connection, table, where, values, list(table.c))
        return rows[0]._mapping if rows else None

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
    dialect = dialect_name(state.engine())
    statement = _append_statement(
        state.db.engine.dialect.identifier_preparer.quote(state.tables["logs"].name), dialect
    )
    params: dict[str, Any] = {"id": log_id, "ids": json.dumps(ids)}
    sliced = dialect == "postgresql" or is_mysql(dialect)
    params.update({"path": f"$[0 to {int(cap) - 1}]"} if sliced else {"cap": int(cap)})

    def work(connection: sa.Connection) -> None:
        connection.execute(statement, params)

    if not isinstance(log, int) and _uncommitted(log):
        _write(state, work, in_session=True)
        _expire_metadata(state, log_id)
        return
    run_detached(state.db.session, state.engine(), work, lambda _: _expire_metadata(state, log_id))


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
    if is_mysql(dialect):
        return sa.text(
            f"UPDATE {quoted_table} SET metadata = JSON_SET("
            "CASE WHEN JSON_TYPE(metadata) = 'OBJECT' THEN metadata ELSE '{}' END, '$.request_ids', "
            "JSON_EXTRACT(JSON_MERGE_PRESERVE("
            "CASE WHEN JSON_TYPE(JSON_EXTRACT(metadata, '$.request_ids')) = 'ARRAY' "
            "THEN JSON_EXTRACT(metadata, '$.request_ids') ELSE '[]' END, :ids), :path)) "
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


def merged_metadata(column: sa.ColumnElement, patch: dict[str, Any], dialect: str) -> sa.ColumnElement:
    """The stored metadata with `patch`'s top-level keys set, as one SQL expression."""
    if dialect == "postgresql":
        base = sa.case((sa.func.jsonb_typeof(column) == "object", column), else_=sa.cast("{}", JSONB))
        return base.op("||")(sa.cast(sa.literal(json.dumps(patch)), JSONB))
    # SQLite's json() and MySQL's JSON_EXTRACT(text, '$') both make the text a JSON value.
    as_json = (lambda text: sa.func.json_extract(text, "$")) if is_mysql(dialect) else sa.func.json
    arguments: list[Any] = []
    for key, value in patch.items():
        if '"' in key:
            raise ValueError(f"metadata keys may not contain '\"', got {key!r}.")
        arguments += [sa.literal(f'$."{key}"'), as_json(sa.literal(json.dumps(value)))]
    object_type = "OBJECT" if is_mysql(dialect) else "object"
    base = sa.case((sa.func.json_type(column) == object_type, column), else_=sa.literal("{}"))
    return sa.func.json_set(base, *arguments)


# -- where the write goes ------------------------------------------------------------------------

_UNCOMMITTED = "_fi_uncommitted"


def _insert(state: AppState, values: dict[str, Any]) -> tuple[IntegrationLog, bool]:
    table = state.tables["logs"]
    session = plain_session(state.db.session)
    if not caller_holds_sqlite_write_lock(session, state.engine()) and not holds_row_locks(session):
        try:
            with state.engine().begin() as connection:
                row_id = connection.execute(sa.insert(table).values(values)).inserted_primary_key[0]
        except sa.exc.IntegrityError:
            pass  # the integration or the parent exists only in the caller's open transaction
        else:
            return _attach(session, {**values, "id": row_id}), True
    log = IntegrationLog()
    for name, value in values.items():
        setattr(log, name, value)
    session.add(log)
    session.flush()
    setattr(log, _UNCOMMITTED, True)
    return log, False


def _attach(session: Session, row: dict[str, Any]) -> IntegrationLog:
    """A persistent instance for a row committed elsewhere, without reading it back."""
    log = IntegrationLog()
    for name, value in row.items():
        setattr(log, name, value)
    make_transient_to_detached(log)
    session.add(log)
    return log


def _write(state: AppState, work: Any, in_session: bool) -> tuple[Any, bool]:
    """Run `work(connection)` committed on its own connection, else in the caller's transaction.

    Returns (result, committed).
    """
    session = plain_session(state.db.session)
    if not in_session and not caller_holds_sqlite_write_lock(session, state.engine()):
        with state.engine().begin() as connection:
            return work(connection), True
    return work(session.connection()), False


def _uncommitted(log: IntegrationLog) -> bool:
    return bool(getattr(log, _UNCOMMITTED, False))


def _send_after_commit(
    state: AppState, log: IntegrationLog, integration: Integration | None, signal: Any, committed: bool
) -> None:
    """Send the status's signal once the row is committed: now, or after the caller's commit."""
    if signal is None:
        if not committed:
            after_commit(state.db.session, lambda: setattr(log, _UNCOMMITTED, False))
        return
    if committed:
        signal.send(state.app, log=log, integration=integration)
        return

    def send() -> None:
        instance = sa.inspect(log)
        if instance.transient or instance.deleted or instance.was_deleted:
            return  # undone by a rolled-back savepoint
        setattr(log, _UNCOMMITTED, False)
        signal.send(state.app, log=log, integration=integration)

    after_commit(state.db.session, send)


def _expire_metadata(state: AppState, log_id: int) -> None:
    """Let an instance of the log in this session read the appended ids on next access."""
    session = plain_session(state.db.session)
    key = session.identity_key(IntegrationLog, log_id)
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


def _duration(duration_ms: float | None) -> int | None:
    if duration_ms is None:
        return None
    if isinstance(duration_ms, bool) or duration_ms < 0:
        raise ValueError(f"duration_ms must be a non-negative number, got {duration_ms!r}.")
    return round(duration_ms)


def _clean_data(state: AppState, data: Any, integration: Integration | None) -> Any:
    """JSON-ready data with the redact keys masked and the integration's secrets scrubbed."""
    if data is None:
        return None
    redacted = redact(data, redact_keys=state.setting("REDACT_KEYS"))
    secrets = integration_secrets(integration)
    return _scrub_strings(redacted, secrets) if secrets else redacted


def _scrub_strings(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {scrub(k, secrets): _scrub_strings(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_strings(v, secrets) for v in value]
    return value
