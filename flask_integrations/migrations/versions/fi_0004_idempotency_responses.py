"""flask-integrations: what a keyed call answered.

Revision ID: fi_0004
Revises: fi_0003
Create Date: 2026-12-06

`{p}_idempotency_keys.request_id` points at the request row of the call's last attempt
once the call ended, so that `IdempotencyConflict.response` can give a second caller the
first call's status and body (and None while the first call still runs).

Published by `flask integrations publish-migrations`, which sets
`down_revision` to the app's head and `PREFIX` to INTEGRATIONS_TABLE_PREFIX.
"""

import sqlalchemy as sa
from alembic import op

revision = "fi_0004"
down_revision = "fi_0003"
branch_labels = None
depends_on = None

PREFIX = "integration"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.add_column(f"{PREFIX}_idempotency_keys", sa.Column("request_id", BigId, nullable=True))


def downgrade():
    with op.batch_alter_table(
        f"{PREFIX}_idempotency_keys", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_column("request_id")
