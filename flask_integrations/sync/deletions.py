"""Deletion detection: what a complete full sync no longer lists was deleted upstream.

After a run of a ``detects_deletions`` provider finalises `success` with every item done (not
stopped at `max_items_per_run`), the `report_deletions` job compares, per `@on_deleted` model,
the external ids mapped for the integration with the external ids the run dispatched (the runs
it resumed included). The comparison is one anti-join in the database, read in keyset chunks of
`CHUNK` ids: a chunk is one query, whatever the number of mapped records. Mappings made after
the run started (a webhook meanwhile) are left out: the run could not have listed them. Each
chunk goes to the provider's method, then its mappings are removed, in one transaction; a method
that raises stops the report (the next complete run reports what is left).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from ..db.models import Integration, type_name_of
from ..db.statuses import ItemStatus, LogStatus
from ..logs import operation_context
from ..state import AppState, current_state
from .finalise import run_chain
from .items import safe_error
from .positions import write_run_metadata

logger = logging.getLogger("flask_integrations")

#: External ids handed to an `@on_deleted` method at once.
CHUNK = 500


def report_deletions(log_id: int) -> dict[str, int]:
    """Hand the records run `log_id` no longer listed to the provider's `@on_deleted` methods;
    returns how many were reported, by model type."""
    state = current_state()
    session = state.db.session
    logs = state.tables["logs"]
    run = session.execute(
        sa.select(logs.c.integration_id, logs.c.status, logs.c.metadata).where(logs.c.id == log_id)
    ).one_or_none()
    if run is None or run.status != LogStatus.SUCCESS or (run.metadata or {}).get("stopped_at_max_items"):
        return {}
    integration = session.get(Integration, run.integration_id)
    chain = run_chain(run.metadata, log_id)
    if integration is None or not _complete(state, chain):
        return {}
    started = session.execute(sa.select(sa.func.min(logs.c.created_at)).where(logs.c.id.in_(chain))).scalar()
    reported: dict[str, int] = {}
    with operation_context(integration, "sync"):
        for model, handler in state.provider(integration.provider).deletion_handlers().items():
            type_name = type_name_of(model)
            try:
                reported[type_name] = _report(state, integration.id, type_name, chain, started, handler)
            except Exception as exc:
                session.rollback()
                error = safe_error(integration, exc)
                logger.warning(
                    "flask-integrations: deletions of run %s (%s) failed: %s", log_id, type_name, error
                )
                write_run_metadata(state, log_id, {"deletions_error": error})
                break
    write_run_metadata(state, log_id, {"deleted": reported})
    session.commit()
    return reported


def _complete(state: AppState, chain: list[int]) -> bool:
    """Every item of the runs in `chain` succeeded or was skipped."""
    items = state.tables["sync_items"]
    unfinished = state.db.session.execute(
        sa.select(sa.func.count()).where(
            items.c.sync_log_id.in_(chain), items.c.status.not_in((ItemStatus.SUCCESS, ItemStatus.SKIPPED))
        )
    ).scalar_one()
    return not unfinished


def _report(
    state: AppState, integration_id: int, type_name: str, chain: list[int], started: Any, handler: Any
) -> int:
    session = state.db.session
    mappings, items = state.tables["mappings"], state.tables["sync_items"]
    listed = sa.exists().where(items.c.sync_log_id.in_(chain), items.c.external_id == mappings.c.external_id)
    count, after = 0, ""
    while True:
        ids = (
            session.execute(
                sa.select(mappings.c.external_id)
                .where(
                    mappings.c.integration_id == integration_id,
                    mappings.c.internal_type == type_name,
                    mappings.c.created_at < started,
                    mappings.c.external_id > after,
                    ~listed,
                )
                .order_by(mappings.c.external_id)
                .limit(CHUNK)
            )
            .scalars()
            .all()
        )
        if not ids:
            return count
        handler(session.get(Integration, integration_id), list(ids))
        session.execute(
            sa.delete(mappings).where(
                mappings.c.integration_id == integration_id,
                mappings.c.internal_type == type_name,
                mappings.c.external_id.in_(ids),
            )
        )
        session.commit()
        count, after = count + len(ids), ids[-1]
