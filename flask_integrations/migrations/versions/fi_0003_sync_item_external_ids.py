"""flask-integrations: sync items by run and external id.

Revision ID: fi_0003
Revises: fi_0002
Create Date: 2026-12-05

Deletion detection compares the external ids mapped for an integration with those a run
dispatched, in one anti-join per chunk: this index answers "did run N dispatch external id
X?" without reading every item of the run.

Published by `flask integrations publish-migrations`, which sets
`down_revision` to the app's head and `PREFIX` to INTEGRATIONS_TABLE_PREFIX.
"""

from alembic import op

revision = "fi_0003"
down_revision = "fi_0002"
branch_labels = None
depends_on = None

PREFIX = "integration"


def upgrade():
    op.create_index(f"ix_{PREFIX}_item_log_external", f"{PREFIX}_sync_items", ["sync_log_id", "external_id"])


def downgrade():
    op.drop_index(f"ix_{PREFIX}_item_log_external", table_name=f"{PREFIX}_sync_items")
