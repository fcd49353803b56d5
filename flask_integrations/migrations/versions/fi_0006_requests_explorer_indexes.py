"""flask-integrations: the indexes of the dashboard's requests explorer.

Revision ID: fi_0006
Revises: fi_0005
Create Date: 2026-12-06

The explorer lists request rows across integrations, newest first, with any filter. Its
first page stays fast on a large table when each candidate row is judged from an index
entry alone: `ix_{p}_req_explorer` is (created_at, id) followed by every filtered column, and
replaces `ix_{p}_req_created` (pruning's `created_at <` reads it as before). A provider
request id is found through `ix_{p}_req_provider_request`, partial where the database
allows it (most rows of many providers have none). MySQL and MariaDB index a prefix of the
text columns, so that the key fits InnoDB's 3,072 bytes.

Published by `flask integrations publish-migrations`, which sets
`down_revision` to the app's head and `PREFIX` to INTEGRATIONS_TABLE_PREFIX.
"""

import sqlalchemy as sa
from alembic import op

revision = "fi_0006"
down_revision = "fi_0005"
branch_labels = None
depends_on = None

PREFIX = "integration"

EXPLORER_COLUMNS = [
    "created_at",
    "id",
    "integration_id",
    "status_code",
    "failure_class",
    "duration_ms",
    "method",
    "endpoint",
]
MYSQL_LENGTHS = {"failure_class": 32, "method": 64, "endpoint": 191}
HAS_ID = sa.text("provider_request_id IS NOT NULL")


def upgrade():
    table = f"{PREFIX}_requests"
    op.create_index(f"ix_{PREFIX}_req_explorer", table, EXPLORER_COLUMNS, mysql_length=MYSQL_LENGTHS)
    op.drop_index(f"ix_{PREFIX}_req_created", table_name=table)
    op.create_index(
        f"ix_{PREFIX}_req_provider_request",
        table,
        ["provider_request_id"],
        postgresql_where=HAS_ID,
        sqlite_where=HAS_ID,
    )


def downgrade():
    table = f"{PREFIX}_requests"
    op.drop_index(f"ix_{PREFIX}_req_provider_request", table_name=table)
    op.create_index(f"ix_{PREFIX}_req_created", table, ["created_at"])
    op.drop_index(f"ix_{PREFIX}_req_explorer", table_name=table)
