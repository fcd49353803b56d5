"""Mid-run positions: where an enumeration saved its place, and where the next run resumes.

`session.save_position(value)` commits the items dispatched so far, enqueues them, and writes
``position`` in the run log's metadata. An enumeration that then raises (or whose worker dies)
ends its run with ``enumeration_error`` in the metadata; the saved items are still processed
and the run is finalised `failed` once they are done. The next run of the integration starts
at that run's position, and its log names the runs it continues (``resumed_from``): their items
count toward its cursor and its deletion report, as if one run had dispatched them all.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..db.transactions import dialect_name
from ..logs.writing import merged_metadata
from ..state import AppState
from .items import enqueue_items


def write_run_metadata(state: AppState, log_id: int, patch: dict[str, Any]) -> None:
    """Set top-level keys of a run log's metadata (in the session's transaction)."""
    logs = state.tables["logs"]
    state.db.session.execute(
        sa.update(logs)
        .where(logs.c.id == log_id)
        .values(metadata=merged_metadata(logs.c.metadata, patch, dialect_name(state.engine())))
        .values(updated_at=utcnow())
    )


def commit_position(
    state: AppState, log_id: int, provider_key: str, batch_id: str, item_ids: list[int], value: Any
) -> None:
    """Commit run `log_id` with `value` as its position, and enqueue its items not enqueued yet
    (`item_ids`)."""
    write_run_metadata(state, log_id, {"position": value})
    enqueue_items(state, provider_key, item_ids, group=batch_id)
    state.db.session.commit()


def resume_point(state: AppState, integration_id: int, log_id: int) -> tuple[Any, list[int]]:
    """(position, runs continued) for run `log_id`: the saved position of the integration's
    previous run when its enumeration did not finish, else (None, [])."""
    logs = state.tables["logs"]
    previous = state.db.session.execute(
        sa.select(logs.c.id, logs.c.metadata)
        .where(
            logs.c.integration_id == integration_id,
            logs.c.operation == "sync",
            logs.c.parent_id.is_(None),
            logs.c.id < log_id,
        )
        .order_by(logs.c.id.desc())
        .limit(1)
    ).first()
    metadata = (previous.metadata or {}) if previous is not None else {}
    if not metadata.get("enumeration_error") or metadata.get("position") is None:
        return None, []
    return metadata["position"], [*metadata.get("resumed_from", []), previous.id]


def end_enumeration(state: AppState, log_id: int, error: str, dispatched: int | None = None) -> None:
    """Mark an enumeration that failed: its saved items still run, then the run ends `failed`."""
    patch: dict[str, Any] = {"enumerated": True, "enumeration_error": error}
    if dispatched is not None:
        patch["item_count"] = dispatched
    write_run_metadata(state, log_id, patch)
    state.db.session.commit()
