"""flask-integrations: ids are never reused on SQLite.

Revision ID: fi_0002
Revises: fi_0001
Create Date: 2026-12-05

Without AUTOINCREMENT, SQLite hands out the id of a deleted row again when it was the
largest: a new integration could inherit the deleted one's cached responses, breaker
and limiter state, and a stale job could pick up a new webhook or sync item. This
rebuilds every table but the requests table (AUTOINCREMENT since fi_0001) with
AUTOINCREMENT, keeping its rows, constraints and indexes (an id deleted before this
upgrade, above the largest one left, may still be handed out once: SQLite kept no
record of it). PostgreSQL's sequences never reuse an id: nothing changes there.

Published by `flask integrations publish-migrations`, which sets
`down_revision` to the app's head and `PREFIX` to INTEGRATIONS_TABLE_PREFIX.
On SQLite, run it with foreign key enforcement off (SQLite's default), as every
Alembic batch migration that rebuilds a referenced table.
"""

from alembic import op

revision = "fi_0002"
down_revision = "fi_0001"
branch_labels = None
depends_on = None

PREFIX = "integration"

#: The tables rebuilt, parents before children.
SUFFIXES = ("s", "_logs", "_mappings", "_idempotency_keys", "_sync_items", "_webhooks")


def _rebuild(autoincrement):
    if op.get_bind().dialect.name != "sqlite":
        return
    for suffix in SUFFIXES:
        with op.batch_alter_table(
            f"{PREFIX}{suffix}", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade():
    _rebuild(True)


def downgrade():
    _rebuild(False)
