"""create / get / update / delete, owners and the model tables."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flask_integrations import (
    Integration,
    IntegrationLog,
    IntegrationMapping,
    IntegrationRequest,
    IntegrationSyncItem,
    IntegrationWebhook,
    ProviderNotRegistered,
    ValidationError,
)
from flask_integrations.clock import utcnow
from tests.helpers.app import db


class Account(db.Model):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    integration_id: Mapped[int | None] = mapped_column(sa.ForeignKey("integrations.id"))


class Tag(db.Model):
    __tablename__ = "tags"
    code: Mapped[str] = mapped_column(sa.String(10), primary_key=True)


def test_create_get_and_defaults(ext, ctx):
    integration = ext.create(
        "tickets", "Acme", {"api_key": "k", "subdomain": "s"}, metadata={"team": "a"}, sync_interval_minutes=5
    )
    fetched = ext.get(integration.id)
    assert fetched is integration
    assert (fetched.is_active, fetched.health_status, fetched.consecutive_failures) == (True, "healthy", 0)
    assert fetched.created_at.tzinfo is not None and fetched.updated_at.tzinfo is not None
    assert fetched.sync_interval_minutes == 5
    assert fetched.metadata == {"team": "a", "tags": []}
    assert ext.create("loose", "No metadata", {}).metadata is None
    assert ext.get(999999) is None


def test_unknown_provider_and_unknown_column(ext, ctx):
    with pytest.raises(ProviderNotRegistered, match="'nope' is not registered"):
        ext.create("nope", "X", {})
    with pytest.raises(ValidationError, match="colour: not a column"):
        ext.create("loose", "X", {}, colour="red")


def test_update_name_metadata_and_columns(integration, ext):
    integration.update(name="Renamed", metadata={"team": "core", "tags": ["a"]}, is_active=False)
    db.session.expire_all()
    fresh = ext.get(integration.id)
    assert (fresh.name, fresh.metadata, fresh.is_active) == (
        "Renamed",
        {"team": "core", "tags": ["a"]},
        False,
    )
    with pytest.raises(ValidationError, match="provider: not an updatable column"):
        fresh.update(provider="loose")
    with pytest.raises(ValidationError, match="metadata for provider 'tickets': team: expected str"):
        fresh.update(metadata={"team": 1})


def test_owner_round_trip(ext, ctx):
    account = Account(name="Acme")
    db.session.add(account)
    db.session.commit()
    integration = ext.create("loose", "Owned", {}, owner=account)
    assert (integration.owner_type, integration.owner_id) == ("accounts", account.id)
    assert integration.owner is account
    assert db.session.scalars(Integration.owned_by(account)).all() == [integration]
    other = Account(name="Other")
    db.session.add(other)
    db.session.commit()
    assert db.session.scalars(Integration.owned_by(other)).all() == []


def test_owner_must_have_an_integer_key(ext, ctx):
    tag = Tag(code="x")
    db.session.add(tag)
    db.session.commit()
    with pytest.raises(ValidationError, match="single integer primary key"):
        ext.create("loose", "Bad owner", {}, owner=tag)


def test_app_foreign_keys_to_integrations_resolve(integration):
    account = Account(name="Linked", integration_id=integration.id)
    db.session.add(account)
    db.session.commit()
    assert db.metadata.tables["accounts"].c.integration_id.references(db.metadata.tables["integrations"].c.id)


def _add_children(integration_id: int, count: int) -> None:
    now = utcnow()
    for n in range(count):
        log = IntegrationLog(
            integration_id=integration_id, operation="sync", direction="inbound", status="success"
        )
        db.session.add(log)
        db.session.flush()
        db.session.add_all(
            [
                IntegrationRequest(
                    integration_id=integration_id, endpoint=f"/e/{n}", method="GET", status_code=200
                ),
                IntegrationMapping(
                    integration_id=integration_id,
                    external_id=str(n),
                    internal_type="accounts",
                    internal_id=str(n),
                ),
                IntegrationSyncItem(
                    integration_id=integration_id,
                    event_class="e",
                    sync_log_id=log.id,
                    status="success",
                    completed_at=now,
                ),
                IntegrationWebhook(
                    integration_id=integration_id, provider="tickets", payload="{}", status="pending"
                ),
            ]
        )
    db.session.commit()


def test_delete_removes_the_integration_and_its_rows_in_chunks(app_factory):
    app = app_factory(INTEGRATIONS_PRUNING={"chunk_size": 3})
    with app.app_context():
        ext = app.extensions["integrations"]
        keep = ext.create("loose", "Keep", {})
        doomed = ext.create("loose", "Doomed", {})
        _add_children(keep.id, 2)
        _add_children(doomed.id, 7)
        doomed_id = doomed.id
        statements = []

        def capture(*args):
            statements.append(args[2])

        sa.event.listen(db.engine, "before_cursor_execute", capture)
        try:
            ext.delete(doomed)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", capture)
        assert ext.get(doomed_id) is None
        for model in (
            IntegrationRequest,
            IntegrationLog,
            IntegrationMapping,
            IntegrationSyncItem,
            IntegrationWebhook,
        ):
            rows = db.session.scalars(sa.select(model.integration_id)).all()
            assert set(rows) == {keep.id}, model.__name__
            assert len(rows) == 2
        request_deletes = [s for s in statements if s.startswith("DELETE FROM integration_requests")]
        assert len(request_deletes) == 3  # 7 rows in chunks of 3
        db.session.remove()


def test_webhook_json_and_log_tree(integration):
    parent = IntegrationLog(
        integration_id=integration.id, operation="sync", direction="inbound", status="success"
    )
    child = IntegrationLog(
        integration_id=integration.id,
        operation="item",
        direction="inbound",
        status="success",
        parent=parent,
        metadata={"request_ids": [1, 2]},
    )
    webhook = IntegrationWebhook(
        integration_id=integration.id, provider="tickets", payload='{"a": [1]}', status="pending"
    )
    db.session.add_all([parent, child, webhook])
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(IntegrationLog, parent.id).children[0].metadata == {"request_ids": [1, 2]}
    assert db.session.get(IntegrationLog, child.id).parent.id == parent.id
    assert db.session.get(IntegrationWebhook, webhook.id).json() == {"a": [1]}
    assert (webhook.attempts, webhook.dedup_key) == (0, None)


def test_required_metadata_is_validated_when_omitted(ext, ctx):
    with pytest.raises(ValidationError, match="metadata for provider 'tickets': team: required"):
        ext.create("tickets", "No metadata", {"api_key": "k", "subdomain": "s"})
