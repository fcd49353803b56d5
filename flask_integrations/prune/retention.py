"""Retention: delete old rows in short, chunked transactions (`prune()`, `flask integrations prune`).

Each table is walked once in primary-key order. A chunk is the next
`chunk_size` rows that match the table's retention rule after the last id
handled; it is deleted by id range with the rule repeated, in a transaction of
its own. So locks are held for one chunk only, memory stays flat (no list of
ids is ever held), no chunk rescans the rows earlier chunks deleted, and a row
newer than the cut-off is never deleted, whatever the order of ids and
timestamps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask

from ..clock import utcnow
from ..db.episodes import EPISODE_PREFIX
from ..db.statuses import DONE_ITEM_STATUSES, DONE_WEBHOOK_STATUSES
from ..state import AppState

#: The tables `prune` handles, in the order it handles them (sync items before the logs they point to).
PRUNED_TABLES = ("requests", "idempotency_keys", "sync_items", "webhooks", "logs")

#: Called after each chunk with the table kind and the rows that chunk deleted (or counted).
Progress = Callable[[str, int], None]


def prune(
    state_or_app: AppState | Flask,
    now: datetime | None = None,
    progress: Progress | None = None,
    *,
    tables: Iterable[str] | None = None,
    dry_run: bool = False,
) -> dict[str, int]:
    """Delete rows past retention (`INTEGRATIONS_PRUNING`); return the rows deleted per table kind.

    `tables` limits the work to some of `PRUNED_TABLES`; `dry_run` counts the
    rows that would go and deletes nothing. A row exactly at the cut-off
    (`now` minus the table's days) is kept.
    """
    state = _resolve_state(state_or_app)
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (use flask_integrations.clock.utcnow())")
    kinds = _chosen(tables)
    settings = state.setting("PRUNING")
    deleted: dict[str, int] = {}
    with state.app.app_context():
        engine = state.engine()
        for kind in kinds:
            cutoff = now - timedelta(days=settings[f"{kind}_days"])
            deleted[kind] = _prune_table(
                engine, state, kind, cutoff, settings["chunk_size"], dry_run=dry_run, progress=progress
            )
    return deleted


def retention_rule(table: sa.Table, kind: str, cutoff: datetime) -> sa.ColumnElement[bool]:
    """The condition a row of `kind` must meet to be pruned."""
    if kind == "sync_items":
        finished_at = sa.func.coalesce(table.c.completed_at, table.c.created_at)
        return sa.and_(table.c.status.in_(DONE_ITEM_STATUSES), finished_at < cutoff)
    if kind == "webhooks":
        return sa.and_(table.c.status.in_(DONE_WEBHOOK_STATUSES), table.c.created_at < cutoff)
    if kind == "idempotency_keys":  # an episode's marker lives as long as its episode
        return sa.and_(table.c.created_at < cutoff, ~table.c.key.startswith(EPISODE_PREFIX, autoescape=True))
    return table.c.created_at < cutoff


def _prune_table(
    engine: sa.Engine,
    state: AppState,
    kind: str,
    cutoff: datetime,
    chunk_size: int,
    *,
    dry_run: bool,
    progress: Progress | None,
) -> int:
    table = state.tables[kind]
    rule = retention_rule(table, kind, cutoff)
    last_id: int | None = None
    total = 0
    while True:
        after = rule if last_id is None else sa.and_(rule, table.c.id > last_id)
        with engine.begin() as connection:
            window = sa.select(table.c.id).where(after).order_by(table.c.id).limit(chunk_size).subquery()
            found, upper = connection.execute(sa.select(sa.func.count(), sa.func.max(window.c.id))).one()
            if not found:
                return total
            chunk = sa.and_(after, table.c.id <= upper)
            rows = found if dry_run else _delete(connection, state, kind, chunk)
        total += rows
        last_id = upper
        if progress is not None:
            progress(kind, rows)
        if found < chunk_size:
            return total


def _delete(connection: sa.Connection, state: AppState, kind: str, chunk: sa.ColumnElement[bool]) -> int:
    table = state.tables[kind]
    if connection.dialect.name == "postgresql":
        # A chunk lost to a server crash is pruned again by the next run: no need to wait for the flush.
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
    if kind == "logs" and connection.dialect.name == "sqlite":
        _detach_from_logs(connection, state, sa.select(table.c.id).where(chunk))
    return connection.execute(sa.delete(table).where(chunk)).rowcount


def _detach_from_logs(connection: sa.Connection, state: AppState, log_ids: sa.Select) -> None:
    """Do the foreign keys' ON DELETE SET NULL by hand: SQLite enforces them only under a PRAGMA.

    `updated_at` is set to itself so that its `onupdate` does not fire, as it
    would not under the database's own SET NULL.
    """
    items, logs = state.tables["sync_items"], state.tables["logs"]
    connection.execute(
        sa.update(items)
        .where(items.c.sync_log_id.in_(log_ids))
        .values(sync_log_id=None, updated_at=items.c.updated_at)
    )
    connection.execute(
        sa.update(logs)
        .where(logs.c.parent_id.in_(log_ids))
        .values(parent_id=None, updated_at=logs.c.updated_at)
    )


def _chosen(tables: Iterable[str] | None) -> tuple[str, ...]:
    if tables is None:
        return PRUNED_TABLES
    wanted = set(tables)
    unknown = sorted(wanted - set(PRUNED_TABLES))
    if unknown:
        raise ValueError(f"cannot prune {', '.join(unknown)}: choose from {', '.join(PRUNED_TABLES)}")
    return tuple(kind for kind in PRUNED_TABLES if kind in wanted)


def _resolve_state(state_or_app: AppState | Flask | Any) -> AppState:
    if isinstance(state_or_app, AppState):
        return state_or_app
    if isinstance(state_or_app, Flask):
        extension = state_or_app.extensions.get("integrations")
        if extension is None:
            raise RuntimeError(
                f"flask-integrations is not initialised on app {state_or_app.name!r}: call Integrations(app)."
            )
        return extension.state_for(state_or_app)
    raise TypeError(f"prune() takes an AppState or a Flask app, not {type(state_or_app).__name__}")
