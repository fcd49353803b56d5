"""flask-integrations: the seven integration tables.

Revision ID: fi_0001
Revises:
Create Date: 2026-11-27

Published by `flask integrations publish-migrations`, which sets
`down_revision` to the app's head and `PREFIX` to INTEGRATIONS_TABLE_PREFIX.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision = "fi_0001"
down_revision = None
branch_labels = None
depends_on = None

PREFIX = "integration"

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
# MySQL and MariaDB: DATETIME(6) holding naive UTC (plain DATETIME would drop microseconds).
Timestamp = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# MySQL and MariaDB: utf8mb4 whatever the database's default, compared byte for byte.
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _ts(name, nullable=True):
    return sa.Column(name, Timestamp, nullable=nullable)


def _timestamps():
    return [_ts("created_at", nullable=False), _ts("updated_at", nullable=False)]


def _integration_fk(short, nullable=False):
    p = PREFIX
    return sa.Column(
        "integration_id",
        BigId,
        sa.ForeignKey(f"{p}s.id", name=f"fk_{p}_{short}_integration", ondelete="CASCADE"),
        nullable=nullable,
    )


def upgrade():
    p = PREFIX
    op.create_table(
        f"{p}s",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=False),
        sa.Column("metadata", Json, nullable=True),
        sa.Column("owner_type", sa.String(255), nullable=True),
        sa.Column("owner_id", BigId, nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("health_status", sa.String(255), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        _ts("last_error_at"),
        _ts("last_synced_at"),
        _ts("next_sync_at"),
        sa.Column("sync_interval_minutes", sa.Integer(), nullable=True),
        sa.Column("sync_cursor", Json, nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}s"),
        **MYSQL_TABLE,
    )
    op.create_index(f"ix_{p}s_provider", f"{p}s", ["provider"])
    op.create_index(f"ix_{p}s_owner", f"{p}s", ["owner_type", "owner_id"])
    op.create_index(f"ix_{p}s_due", f"{p}s", ["is_active", "next_sync_at"])

    op.create_table(
        f"{p}_requests",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        _integration_fk("req"),
        sa.Column("endpoint", sa.String(2048), nullable=False),
        sa.Column("method", sa.String(255), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("request_data", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("provider_request_id", sa.String(255), nullable=True),
        sa.Column("response_data", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("retry_of", BigId, nullable=True),
        sa.Column("related_type", sa.String(255), nullable=True),
        sa.Column("related_id", BigId, nullable=True),
        sa.Column("cache_hits", sa.Integer(), nullable=False),
        sa.Column("stale_hits", sa.Integer(), nullable=False),
        sa.Column("failure_class", sa.String(255), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_requests"),
        # Ids handed out ahead of their rows come from sqlite_sequence (pipeline/rows.py).
        sqlite_autoincrement=True,
        **MYSQL_TABLE,
    )
    op.create_index(
        f"ix_{p}_req_int_created",
        f"{p}_requests",
        ["integration_id", "created_at"],
        postgresql_include=["duration_ms", "status_code", "failure_class"],
    )
    op.create_index(f"ix_{p}_req_created", f"{p}_requests", ["created_at"])
    op.create_index(f"ix_{p}_req_related", f"{p}_requests", ["related_type", "related_id"])
    op.create_index(f"ix_{p}_req_idem", f"{p}_requests", ["integration_id", "idempotency_key"])

    op.create_table(
        f"{p}_logs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        _integration_fk("log"),
        sa.Column("operation", sa.String(255), nullable=False),
        sa.Column("direction", sa.String(255), nullable=False),
        sa.Column("status", sa.String(255), nullable=False),
        sa.Column("summary", sa.String(255), nullable=True),
        sa.Column("external_id", sa.String(500), nullable=True),
        sa.Column("metadata", Json, nullable=True),
        sa.Column("result_data", Json, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column(
            "parent_id",
            BigId,
            sa.ForeignKey(f"{p}_logs.id", name=f"fk_{p}_log_parent", ondelete="SET NULL"),
            nullable=True,
        ),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_logs"),
        **MYSQL_TABLE,
    )
    op.create_index(f"ix_{p}_log_int_created", f"{p}_logs", ["integration_id", "created_at"])
    op.create_index(f"ix_{p}_log_int_op_status", f"{p}_logs", ["integration_id", "operation", "status"])
    op.create_index(f"ix_{p}_log_parent", f"{p}_logs", ["parent_id"])
    op.create_index(f"ix_{p}_log_created", f"{p}_logs", ["created_at"])

    op.create_table(
        f"{p}_mappings",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        _integration_fk("map"),
        sa.Column("external_id", sa.String(500), nullable=False),
        sa.Column("internal_type", sa.String(255), nullable=False),
        sa.Column("internal_id", sa.String(255), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_mappings"),
        sa.UniqueConstraint("integration_id", "external_id", "internal_type", name=f"uq_{p}_map_external"),
        **MYSQL_TABLE,
    )
    op.create_index(
        f"ix_{p}_map_internal", f"{p}_mappings", ["integration_id", "internal_type", "internal_id"]
    )

    op.create_table(
        f"{p}_idempotency_keys",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        _integration_fk("idem"),
        sa.Column("key", sa.String(191), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_idempotency_keys"),
        sa.UniqueConstraint("integration_id", "key", name=f"uq_{p}_idem_key"),
        **MYSQL_TABLE,
    )
    op.create_index(f"ix_{p}_idem_created", f"{p}_idempotency_keys", ["created_at"])

    op.create_table(
        f"{p}_sync_items",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        _integration_fk("item"),
        sa.Column("batch_id", sa.String(36), nullable=True),
        sa.Column(
            "sync_log_id",
            BigId,
            sa.ForeignKey(f"{p}_logs.id", name=f"fk_{p}_item_sync_log", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("event_class", sa.String(255), nullable=False),
        sa.Column("external_id", sa.String(500), nullable=True),
        sa.Column("checkpoint_value", Json, nullable=True),
        sa.Column("payload", Json, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        _ts("completed_at"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_sync_items"),
        **MYSQL_TABLE,
    )
    op.create_index(f"ix_{p}_item_int_status", f"{p}_sync_items", ["integration_id", "status"])
    op.create_index(f"ix_{p}_item_int_created", f"{p}_sync_items", ["integration_id", "created_at"])
    op.create_index(f"ix_{p}_item_log_status", f"{p}_sync_items", ["sync_log_id", "status"])
    op.create_index(f"ix_{p}_item_batch_status", f"{p}_sync_items", ["batch_id", "status"])
    op.create_index(f"ix_{p}_item_status_id", f"{p}_sync_items", ["status", "id"])

    op.create_table(
        f"{p}_webhooks",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        _integration_fk("wh", nullable=True),
        sa.Column("provider", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=True),
        sa.Column("delivery_id", sa.String(255), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("headers", Json, nullable=True),
        sa.Column("status", sa.String(255), nullable=False),
        _ts("processed_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("dedup_key", sa.String(64), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_webhooks"),
        sa.UniqueConstraint("dedup_key", name=f"uq_{p}_wh_dedup"),
        **MYSQL_TABLE,
    )
    op.create_index(f"ix_{p}_wh_status_updated", f"{p}_webhooks", ["status", "updated_at"])
    op.create_index(f"ix_{p}_wh_int_created", f"{p}_webhooks", ["integration_id", "created_at"])
    op.create_index(f"ix_{p}_wh_created", f"{p}_webhooks", ["created_at"])


def downgrade():
    p = PREFIX
    for suffix in (
        "_webhooks",
        "_sync_items",
        "_idempotency_keys",
        "_mappings",
        "_logs",
        "_requests",
        "s",
    ):
        op.drop_table(f"{p}{suffix}")
