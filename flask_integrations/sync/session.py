"""`SyncSession`: what a provider's `sync()` / `sync_incremental()` receives."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..clock import utcnow
from ..db.statuses import ItemStatus
from .positions import commit_position

if TYPE_CHECKING:  # pragma: no cover
    from ..db.models import Integration
    from ..state import AppState

logger = logging.getLogger("flask_integrations")

EVENT_MAX, EXTERNAL_ID_MAX = 255, 500


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
        self.item_ids: list[int] = []
        self.enqueued = 0  # item_ids[:enqueued] are committed and enqueued (by save_position)
        self._rows: list[dict[str, Any]] = []
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
        now = utcnow()
        self._rows.append(
            {
                "integration_id": self.integration.id,
                "batch_id": self.batch_id,
                "sync_log_id": self.log_id,
                "event_class": event,
                "external_id": None if external_id is None else str(external_id)[:EXTERNAL_ID_MAX],
                "checkpoint_value": checkpoint,
                "payload": payload,
                "status": ItemStatus.PENDING,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        if len(self._rows) >= 500:
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
        commit_position(self._state, self, value)
        self.position = value

    def flush(self) -> None:
        """Insert the dispatched rows (in the caller's transaction)."""
        if not self._rows:
            return
        table = self._state.tables["sync_items"]
        result = self._state.db.session.execute(
            table.insert().returning(table.c.id, sort_by_parameter_order=True), self._rows
        )
        self.item_ids.extend(result.scalars().all())
        self._rows = []
