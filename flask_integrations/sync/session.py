"""`SyncSession`: what a provider's `sync()` / `sync_incremental()` receives."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..clock import utcnow
from ..db.statuses import ItemStatus
from ..pipeline.rows import InsertStatement
from .positions import commit_position

if TYPE_CHECKING:  # pragma: no cover
    from ..db.models import Integration
    from ..state import AppState

logger = logging.getLogger("flask_integrations")

EVENT_MAX, EXTERNAL_ID_MAX = 255, 500
#: Dispatched items are inserted in batches of this many.
FLUSH_EVERY = 2000


class SyncSession:
    """One run's enumeration: `cursor` (the previous cursor), `position` (where a crashed run
    saved its place, else None), `dispatch(...)` and `save_position(...)`.

    Dispatched items are inserted into ``{p}_sync_items`` (status `pending`) in the run's
    transaction; they are enqueued once the enumeration commits, or at `save_position`.
    """

    def __init__(
        self,
        state: AppState,
        integration: Integration,
        log_id: int,
        batch_id: str,
        cursor: Any,
        position: Any = None,
    ):
        self._state = state
        self.integration = integration
        self.cursor = cursor
        self.position = position
        self.batch_id = batch_id
        self.log_id = log_id
        self.max_items = int(state.setting("SYNC")["max_items_per_run"])
        self._integration_id = integration.id
        self.item_ids: list[int] = []
        self.enqueued = 0  # item_ids[:enqueued] are committed and enqueued (by save_position)
        self._rows: list[tuple[str, str | None, Any, Any]] = []
        self.stopped = False

    def __repr__(self) -> str:
        return f"<SyncSession integration={self.integration.id} batch={self.batch_id} items={self.count}>"

    @property
    def count(self) -> int:
        return len(self._rows) + len(self.item_ids)

    def dispatch(self, event: str, payload: Any, checkpoint: Any = None, external_id: Any = None) -> bool:
        """Queue one item for the handler of `event`; False once `max_items_per_run` is reached.

        `payload` must be JSON-serialisable; `checkpoint` is folded into the
        cursor by `reduce_checkpoints` once every item of the run succeeded.
        """
        if not event or len(event) > EVENT_MAX:
            raise ValueError(f"event must be a non-empty string of at most {EVENT_MAX} characters.")
        if self.count >= self.max_items:
            if not self.stopped:
                logger.warning(
                    "flask-integrations: sync of integration %s reached max_items_per_run (%s): "
                    "further items are not dispatched in this run.",
                    self.integration.id,
                    self.max_items,
                )
            self.stopped = True
            return False
        self._rows.append(
            (event, None if external_id is None else str(external_id)[:EXTERNAL_ID_MAX], checkpoint, payload)
        )
        if len(self._rows) >= FLUSH_EVERY:
            self.flush()
        return True

    def save_position(self, value: Any) -> None:
        """Commit the items dispatched so far with `value`, the place enumeration has reached.

        The items are enqueued at once and processed whatever happens to the enumeration
        next; if it then raises or its worker dies, the next run's `position` is `value`, so
        enumeration resumes there instead of starting over. The cursor still moves only when
        a run finalises. `value` must be JSON-serialisable. This commits the session, with
        whatever else the enumeration wrote to it.
        """
        self.flush()
        new_ids = self.item_ids[self.enqueued :]
        commit_position(self._state, self.log_id, self.integration.provider, self.batch_id, new_ids, value)
        self.enqueued = len(self.item_ids)
        self.position = value

    def flush(self) -> None:
        """Insert the dispatched rows (in the caller's transaction)."""
        if not self._rows:
            return
        now = utcnow()
        rows = [
            {
                "integration_id": self._integration_id,
                "batch_id": self.batch_id,
                "sync_log_id": self.log_id,
                "event_class": event,
                "external_id": external_id,
                "checkpoint_value": checkpoint,
                "payload": payload,
                "status": ItemStatus.PENDING,
                "error": None,
                "attempts": 0,
                "completed_at": None,
                "created_at": now,
                "updated_at": now,
            }
            for event, external_id, checkpoint, payload in self._rows
        ]
        self.item_ids.extend(insert_items(self._state, rows))
        self._rows = []


def insert_items(state: AppState, rows: list[dict[str, Any]]) -> list[int]:
    """Insert item rows in the session's transaction; their ids, in order.

    With psycopg 3 the rows go in one COPY, their ids taken from the table's sequence first:
    several times faster than a multi-row INSERT ... RETURNING, whose SQL psycopg parses anew
    for every batch. Elsewhere, SQLAlchemy's INSERT ... RETURNING (MariaDB has it, MySQL 8 has
    not: there one INSERT a row, as MySQL does not promise one statement's ids are consecutive).
    """
    table = state.tables["sync_items"]
    connection = state.db.session.connection()
    if not connection.dialect.insert_executemany_returning:
        return [connection.execute(table.insert(), row).inserted_primary_key[0] for row in rows]
    cursor = connection.connection.cursor()
    if not callable(getattr(cursor, "copy", None)):
        cursor.close()
        result = connection.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
        return list(result.scalars().all())
    ids = connection.execute(_RESERVE_IDS, {"table": table.name, "n": len(rows)}).scalars().all()
    statement = state.derived("sync_item_copy", lambda: InsertStatement(state.engine(), table))
    for row, item_id in zip(rows, ids, strict=True):
        row["id"] = item_id
        row["payload"] = _json(row["payload"], row)
        row["checkpoint_value"] = _json(row["checkpoint_value"], row)
    try:
        statement.write_many(cursor, rows)
    finally:
        cursor.close()
    return list(ids)


_RESERVE_IDS = sa.text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")


def _json(value: Any, row: dict[str, Any]) -> str | None:
    """A JSON column's text for COPY (None stays NULL)."""
    if value is None:
        return None
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the payload and checkpoint of a sync item must be JSON-serialisable: "
            f"item {row['event_class']!r} ({row['external_id']}): {exc}"
        ) from None
