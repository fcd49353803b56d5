"""Episodes: a condition of one integration that begins once and ends once, across processes.

An incident or a stale sync must be announced once per episode, whichever process
notices it first. The marker is a row of the idempotency-keys table under a reserved
key: its unique index lets one process insert it (begin) and one process delete it
(end), in the same transaction as what that process writes about the episode. Rows
under `EPISODE_PREFIX` are never pruned (an episode may outlast any retention).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..clock import utcnow

#: Keys of episode markers in the idempotency-keys table.
EPISODE_PREFIX = "flask-integrations:episode:"

Write = Callable[[sa.Connection], Any]


def episode_key(name: str) -> str:
    return EPISODE_PREFIX + name


def begin(connection: sa.Connection, table: sa.Table, integration_id: int, name: str) -> bool:
    """Insert the marker unless it is there; True when this call began the episode.

    A process racing this one past the check makes the unique index raise
    `IntegrityError` (its transaction is rolled back): the caller treats that as
    "someone else began it".
    """
    key = episode_key(name)
    if connection.execute(_marker(table, integration_id, key)).first() is not None:
        return False
    now = utcnow()
    connection.execute(
        sa.insert(table).values(integration_id=integration_id, key=key, created_at=now, updated_at=now)
    )
    return True


def end(connection: sa.Connection, table: sa.Table, integration_id: int, name: str) -> bool:
    """Delete the marker; True when this call ended the episode (it was there)."""
    deleted = connection.execute(
        sa.delete(table).where(table.c.integration_id == integration_id, table.c.key == episode_key(name))
    )
    return deleted.rowcount == 1


def in_episode(connection: Any, table: sa.Table, integration_id: int, name: str) -> bool:
    return connection.execute(_marker(table, integration_id, episode_key(name))).first() is not None


def _marker(table: sa.Table, integration_id: int, key: str) -> sa.Select:
    return sa.select(table.c.id).where(table.c.integration_id == integration_id, table.c.key == key)
