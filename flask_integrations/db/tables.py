"""The seven tables, built for a table prefix inside the app's MetaData.

Every constraint and index has an explicit, short name carrying the prefix
(PostgreSQL cuts identifiers at 63 characters; the prefix is at most 30). On SQLite
every table is AUTOINCREMENT, so that no id is ever handed out twice (a new integration
must not inherit a deleted one's state; request ids are reserved ahead of their rows
from `sqlite_sequence`, see pipeline/rows.py); SQLite writes such a key inline, without
a constraint name. On MySQL and MariaDB timestamps are DATETIME(6) holding naive UTC
(DATETIME keeps no zone, and would drop the microseconds without the 6), and every indexed
VARCHAR fits InnoDB's 3,072-byte key in utf8mb4; text compares byte for byte (utf8mb4_bin).
The shipped migration creates exactly this schema; a test compares them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from ..clock import as_utc, utcnow
from .dialects import MYSQL_DIALECTS
from .statuses import HealthStatus, ItemStatus, WebhookStatus

#: A timestamp column: `timestamptz` on PostgreSQL, DATETIME(6) on MySQL and MariaDB.
Timestamp = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *MYSQL_DIALECTS)
_NAIVE_UTC_DIALECTS = ("sqlite", *MYSQL_DIALECTS)
#: utf8mb4 whatever the database's default, compared byte for byte as on PostgreSQL: an external
#: id or an idempotency key differing only in case is another one (MySQL's default is not).
MYSQL_TABLE = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


class UTCDateTime(sa.TypeDecorator):
    """`timestamptz` on PostgreSQL; on SQLite, MySQL and MariaDB naive UTC, read back as aware UTC."""

    impl = Timestamp
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware (use flask_integrations.clock.utcnow())")
        if value is not None and dialect.name in _NAIVE_UTC_DIALECTS:
            return as_utc(value).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: The largest id a `BigId` column stores: a larger one in a URL or a command is simply unknown.
MAX_ID = 2**63 - 1
Json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

TABLE_SUFFIXES = {
    "integrations": "s",
    "requests": "_requests",
    "logs": "_logs",
    "mappings": "_mappings",
    "idempotency_keys": "_idempotency_keys",
    "sync_items": "_sync_items",
    "webhooks": "_webhooks",
}


#: The request columns the figures read, carried by the (integration_id, created_at) index.
REQUEST_FIGURE_COLUMNS = ("duration_ms", "status_code", "failure_class")
#: The columns the requests explorer filters on, after (created_at, id) in `ix_{p}_req_explorer`.
REQUEST_EXPLORER_COLUMNS = (
    "integration_id",
    "status_code",
    "failure_class",
    "duration_ms",
    "method",
    "endpoint",
)
#: Characters of each text column that MySQL and MariaDB put in that index (3,072 bytes at most).
EXPLORER_MYSQL_LENGTHS = {"failure_class": 32, "method": 64, "endpoint": 191}


def table_names(prefix: str) -> dict[str, str]:
    return {kind: prefix + suffix for kind, suffix in TABLE_SUFFIXES.items()}


def _id() -> sa.Column:
    return sa.Column("id", BigId, primary_key=True, autoincrement=True)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
        sa.Column("updated_at", UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
    ]


def _integration_fk(p: str, short: str, table: str, nullable: bool = False) -> sa.Column:
    return sa.Column(
        "integration_id",
        BigId,
        sa.ForeignKey(f"{table}.id", name=f"fk_{p}_{short}_integration", ondelete="CASCADE"),
        nullable=nullable,
    )


def build_tables(metadata: sa.MetaData, prefix: str) -> dict[str, sa.Table]:
    """Create the prefixed Table objects in `metadata` and return them by kind."""
    p = prefix
    n = table_names(p)
    integrations = sa.Table(
        n["integrations"],
        metadata,
        _id(),
        sa.Column("provider", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=False),
        sa.Column("metadata", Json, nullable=True),
        sa.Column("owner_type", sa.String(255), nullable=True),
        sa.Column("owner_id", BigId, nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False, default=True),
        sa.Column("health_status", sa.String(255), nullable=False, default=HealthStatus.HEALTHY),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False, default=0),
        sa.Column("last_error_at", UTCDateTime(), nullable=True),
        sa.Column("last_synced_at", UTCDateTime(), nullable=True),
        sa.Column("next_sync_at", UTCDateTime(), nullable=True),
        sa.Column("sync_interval_minutes", sa.Integer(), nullable=True),
        sa.Column("sync_cursor", Json, nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}s"),
        sa.Index(f"ix_{p}s_provider", "provider"),
        sa.Index(f"ix_{p}s_owner", "owner_type", "owner_id"),
        sa.Index(f"ix_{p}s_due", "is_active", "next_sync_at"),
        sqlite_autoincrement=True,
        **MYSQL_TABLE,
    )
    requests = sa.Table(
        n["requests"],
        metadata,
        _id(),
        _integration_fk(p, "req", n["integrations"]),
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
        sa.Column("cache_hits", sa.Integer(), nullable=False, default=0),
        sa.Column("stale_hits", sa.Integer(), nullable=False, default=0),
        sa.Column("failure_class", sa.String(255), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_requests"),
        # Covers the dashboard's and the CLI's figures (health/figures.py) on every database: the
        # figure columns are part of the key, as MySQL and SQLite have no INCLUDE (fi_0005).
        sa.Index(f"ix_{p}_req_int_figures", "integration_id", "created_at", *REQUEST_FIGURE_COLUMNS),
        # The requests explorer (fi_0006): newest first across integrations, every filter checked on
        # the index entry; it serves pruning's `created_at <` too. MySQL indexes a prefix of the texts.
        sa.Index(
            f"ix_{p}_req_explorer",
            "created_at",
            "id",
            *REQUEST_EXPLORER_COLUMNS,
            mysql_length=EXPLORER_MYSQL_LENGTHS,
        ),
        sa.Index(
            f"ix_{p}_req_provider_request",
            "provider_request_id",
            postgresql_where=sa.text("provider_request_id IS NOT NULL"),
            sqlite_where=sa.text("provider_request_id IS NOT NULL"),
        ),
        sa.Index(f"ix_{p}_req_related", "related_type", "related_id"),
        sa.Index(f"ix_{p}_req_idem", "integration_id", "idempotency_key"),
        sqlite_autoincrement=True,
        **MYSQL_TABLE,
    )
    logs = sa.Table(
        n["logs"],
        metadata,
        _id(),
        _integration_fk(p, "log", n["integrations"]),
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
            sa.ForeignKey(f"{n['logs']}.id", name=f"fk_{p}_log_parent", ondelete="SET NULL"),
            nullable=True,
        ),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_logs"),
        sa.Index(f"ix_{p}_log_int_created", "integration_id", "created_at"),
        sa.Index(f"ix_{p}_log_int_op_status", "integration_id", "operation", "status"),
        sa.Index(f"ix_{p}_log_parent", "parent_id"),
        sa.Index(f"ix_{p}_log_created", "created_at"),
        sqlite_autoincrement=True,
        **MYSQL_TABLE,
    )
    mappings = sa.Table(
        n["mappings"],
        metadata,
        _id(),
        _integration_fk(p, "map", n["integrations"]),
        sa.Column("external_id", sa.String(500), nullable=False),
        sa.Column("internal_type", sa.String(255), nullable=False),
        sa.Column("internal_id", sa.String(255), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_mappings"),
        sa.UniqueConstraint("integration_id", "external_id", "internal_type", name=f"uq_{p}_map_external"),
        sa.Index(f"ix_{p}_map_internal", "integration_id", "internal_type", "internal_id"),
        sqlite_autoincrement=True,
        **MYSQL_TABLE,
    )
    idempotency_keys = sa.Table(
        n["idempotency_keys"],
        metadata,
        _id(),
        _integration_fk(p, "idem", n["integrations"]),
        sa.Column("key", sa.String(191), nullable=False),
        # fi_0004: the request row of the call's last attempt, once the call ended
        sa.Column("request_id", BigId, nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_idempotency_keys"),
        sa.UniqueConstraint("integration_id", "key", name=f"uq_{p}_idem_key"),
        sa.Index(f"ix_{p}_idem_created", "created_at"),
        sqlite_autoincrement=True,
        **MYSQL_TABLE,
    )
    sync_items = sa.Table(
        n["sync_items"],
        metadata,
        _id(),
        _integration_fk(p, "item", n["integrations"]),
        sa.Column("batch_id", sa.String(36), nullable=True),
        sa.Column(
            "sync_log_id",
            BigId,
            sa.ForeignKey(f"{n['logs']}.id", name=f"fk_{p}_item_sync_log", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("event_class", sa.String(255), nullable=False),
        sa.Column("external_id", sa.String(500), nullable=True),
        sa.Column("checkpoint_value", Json, nullable=True),
        sa.Column("payload", Json, nullable=True),
        sa.Column("status", sa.String(16), nullable=False, default=ItemStatus.PENDING),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), nullable=False, default=0),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_sync_items"),
        sa.Index(f"ix_{p}_item_int_status", "integration_id", "status"),
        sa.Index(f"ix_{p}_item_int_created", "integration_id", "created_at"),
        sa.Index(f"ix_{p}_item_log_status", "sync_log_id", "status"),
        sa.Index(f"ix_{p}_item_log_external", "sync_log_id", "external_id"),  # fi_0003: deletions
        sa.Index(f"ix_{p}_item_batch_status", "batch_id", "status"),
        sa.Index(f"ix_{p}_item_status_id", "status", "id"),  # failed items across integrations
        sqlite_autoincrement=True,
        **MYSQL_TABLE,
    )
    webhooks = sa.Table(
        n["webhooks"],
        metadata,
        _id(),
        _integration_fk(p, "wh", n["integrations"], nullable=True),
        sa.Column("provider", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=True),
        sa.Column("delivery_id", sa.String(255), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("headers", Json, nullable=True),
        sa.Column("status", sa.String(255), nullable=False, default=WebhookStatus.PENDING),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, default=0),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("dedup_key", sa.String(64), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}_webhooks"),
        sa.UniqueConstraint("dedup_key", name=f"uq_{p}_wh_dedup"),
        sa.Index(f"ix_{p}_wh_status_updated", "status", "updated_at"),
        sa.Index(f"ix_{p}_wh_int_created", "integration_id", "created_at"),
        sa.Index(f"ix_{p}_wh_created", "created_at"),
        sqlite_autoincrement=True,
        **MYSQL_TABLE,
    )
    return {
        "integrations": integrations,
        "requests": requests,
        "logs": logs,
        "mappings": mappings,
        "idempotency_keys": idempotency_keys,
        "sync_items": sync_items,
        "webhooks": webhooks,
    }
