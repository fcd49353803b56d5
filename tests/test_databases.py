"""What the package sets up per database (docs/databases.md); the behaviour is tested per module."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.helpers.app import db

mariadb_only = pytest.mark.parametrize(
    "database_url", [pytest.param("mariadb", marks=pytest.mark.mysql)], indirect=True
)


@mariadb_only
def test_mysql_connections_read_committed(app, ctx):
    for connection in (db.session.connection(), db.engine.connect()):
        assert connection.scalar(sa.text("SELECT @@SESSION.tx_isolation")) == "READ-COMMITTED"


@mariadb_only
def test_mysql_timestamps_are_naive_utc_to_the_microsecond_and_read_back_aware(integration):
    created = integration.created_at
    stored = db.session.scalar(
        sa.text("SELECT created_at FROM integrations WHERE id = :id"), {"id": integration.id}
    )
    assert stored.tzinfo is None and stored.microsecond == created.microsecond
    assert stored.replace(tzinfo=UTC) == created
    db.session.expire_all()
    assert db.session.get(type(integration), integration.id).created_at == created
    assert created.tzinfo is not None and abs(datetime.now(UTC) - created).total_seconds() < 60


@mariadb_only
def test_mysql_compares_external_ids_byte_for_byte(integration):
    first = integration.map_external_id("AbC", integration)  # any mapped object: the integration itself
    second = integration.map_external_id("abc", integration)
    db.session.commit()
    assert first.id != second.id
    assert {first.external_id, second.external_id} == {"AbC", "abc"}
