"""flask-integrations: the request figures read from an index on every database.

Revision ID: fi_0005
Revises: fi_0004
Create Date: 2026-12-06

`ix_{p}_req_int_created` covered the figures' columns only on PostgreSQL (INCLUDE); MySQL,
MariaDB and SQLite read each row from the table (the dashboard's overview took about 1 s with
400,000 rows on MariaDB). `ix_{p}_req_int_figures` has them in its key, so the counts and the
percentiles of a window are read from the index alone everywhere.

Published by `flask integrations publish-migrations`, which sets
`down_revision` to the app's head and `PREFIX` to INTEGRATIONS_TABLE_PREFIX.
"""

from alembic import op

revision = "fi_0005"
down_revision = "fi_0004"
branch_labels = None
depends_on = None

PREFIX = "integration"

FIGURE_COLUMNS = ["duration_ms", "status_code", "failure_class"]


def upgrade():
    # created before the old one goes: MySQL keeps an index on integration_id for its foreign key
    columns = ["integration_id", "created_at", *FIGURE_COLUMNS]
    op.create_index(f"ix_{PREFIX}_req_int_figures", f"{PREFIX}_requests", columns)
    op.drop_index(f"ix_{PREFIX}_req_int_created", table_name=f"{PREFIX}_requests")


def downgrade():
    op.create_index(
        f"ix_{PREFIX}_req_int_created",
        f"{PREFIX}_requests",
        ["integration_id", "created_at"],
        postgresql_include=FIGURE_COLUMNS,
    )
    op.drop_index(f"ix_{PREFIX}_req_int_figures", table_name=f"{PREFIX}_requests")
