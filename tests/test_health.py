"""Health: thresholds, transitions, signals, pacing of syncs, writes that survive rollback."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import pytest
import sqlalchemy as sa

from flask_integrations import Integration, signals
from flask_integrations.clock import utcnow
from tests.conftest import reset_tables
from tests.helpers.app import db, make_app, recorded_statements
from tests.helpers.processes import run_to_completion

THRESHOLDS = {"degraded_after": 2, "failing_after": 4, "disabled_after": 6}


@pytest.fixture
def app(app_factory):
    return app_factory(INTEGRATIONS_HEALTH=THRESHOLDS)


@pytest.fixture
def events(app):
    seen = []

    def on_change(sender, **kw):
        assert sender is app
        seen.append(("health", kw["old_status"], kw["new_status"]))

    def on_disabled(sender, **kw):
        seen.append(("disabled", kw["integration"].id))

    signals.health_changed.connect(on_change)
    signals.integration_disabled.connect(on_disabled)
    yield seen
    signals.health_changed.disconnect(on_change)
    signals.integration_disabled.disconnect(on_disabled)


def stored(integration_id: int):
    table = db.metadata.tables["integrations"]
    return db.session.execute(sa.select(table).where(table.c.id == integration_id)).one()


def test_upstream_failures_walk_the_thresholds(integration, events):
    statuses = []
    for _ in range(7):
        integration.record_failure("upstream")
        statuses.append(integration.health_status)
    assert statuses == ["healthy", "degraded", "degraded", "failing", "failing", "disabled", "disabled"]
    assert events == [
        ("health", "healthy", "degraded"),
        ("health", "degraded", "failing"),
        ("health", "failing", "disabled"),
        ("disabled", integration.id),
    ]
    row = stored(integration.id)
    assert (row.health_status, row.is_active, row.consecutive_failures) == ("disabled", False, 6)
    assert row.last_error_at is not None and row.last_error_at.tzinfo is not None


@pytest.mark.parametrize("failure_class", ["client", "throttle", "unknown"])
def test_other_failures_neither_count_nor_reset(integration, events, failure_class):
    integration.record_failure("upstream")
    integration.record_failure(failure_class)
    integration.record_failure(failure_class)
    assert stored(integration.id).consecutive_failures == 1
    assert events == []


def test_success_resets_and_reports_recovery(integration, events):
    for _ in range(3):
        integration.record_failure("upstream")
    integration.record_success()
    row = stored(integration.id)
    assert (row.health_status, row.consecutive_failures) == ("healthy", 0)
    assert events == [("health", "healthy", "degraded"), ("health", "degraded", "healthy")]


def test_success_on_a_healthy_integration_writes_nothing(integration, app):
    with recorded_statements() as statements:
        integration.record_success()
    assert not [s for s in statements if not s.lstrip().startswith("SELECT")]


def test_success_does_not_revive_a_disabled_integration(integration):
    for _ in range(6):
        integration.record_failure("upstream")
    integration.record_success()
    row = stored(integration.id)
    assert (row.health_status, row.is_active) == ("disabled", False)


def test_enable_and_disable(integration, events):
    for _ in range(6):
        integration.record_failure("upstream")
    integration.enable()
    row = stored(integration.id)
    assert (row.is_active, row.health_status, row.consecutive_failures) == (True, "healthy", 0)
    assert events[-1] == ("health", "disabled", "healthy")
    integration.record_failure("upstream")
    integration.disable()
    row = stored(integration.id)
    assert (row.is_active, row.health_status, row.consecutive_failures) == (False, "healthy", 1)


def test_unknown_failure_class_is_refused(integration):
    with pytest.raises(ValueError, match="failure_class must be one of"):
        integration.record_failure("timeout")


def test_mark_synced_paces_by_interval_and_health(integration):
    before = utcnow()
    integration.mark_synced()
    row = stored(integration.id)
    assert row.last_synced_at >= before
    assert row.next_sync_at - row.last_synced_at == timedelta(minutes=15)  # Tickets.sync_interval
    for _ in range(2):
        integration.record_failure("upstream")
    integration.mark_synced()
    row = stored(integration.id)
    assert row.next_sync_at - row.last_synced_at == timedelta(minutes=30)  # degraded_backoff 2
    integration.update(sync_interval_minutes=1)
    integration.mark_synced()
    row = stored(integration.id)
    assert row.next_sync_at - row.last_synced_at == timedelta(minutes=2)


def test_mark_synced_without_interval_is_not_scheduled(ext, ctx):
    integration = ext.create("loose", "Loose", {})
    integration.mark_synced()
    row = stored(integration.id)
    assert row.last_synced_at is not None and row.next_sync_at is None


def test_failure_count_survives_the_callers_rollback(integration, ext):
    pending = Integration(provider="loose", name="never committed", credentials={})
    db.session.add(pending)
    db.session.flush()  # the caller holds an open write transaction
    integration.record_failure("upstream")
    integration.record_failure("upstream")
    db.session.rollback()
    db.session.expire_all()
    assert stored(integration.id).consecutive_failures == 2
    assert ext.get(integration.id).health_status == "degraded"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(db.metadata.tables["integrations"])) == 1


def _hammer(database_url: str, integration_id: int, count: int) -> None:
    app = make_app(
        database_url,
        INTEGRATIONS_HEALTH={"degraded_after": 1000, "failing_after": 2000, "disabled_after": None},
    )
    with app.app_context():
        integration = db.session.get(Integration, integration_id)
        for _ in range(count):
            integration.record_failure("upstream")
        db.session.remove()


@pytest.mark.slow
def test_concurrent_failures_are_counted_exactly(server_database_url):
    app = make_app(server_database_url)
    with app.app_context():
        reset_tables()
        integration_id = app.extensions["integrations"].create("loose", "Shared", {}).id
        db.session.remove()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_hammer, args=(server_database_url, integration_id, 25)) for _ in range(4)]
    run_to_completion(workers, 60)
    with app.app_context():
        assert stored(integration_id).consecutive_failures == 100


def test_success_after_deferred_failures_in_one_transaction(integration, ext):
    db.session.add(Integration(provider="loose", name="holds the write lock", credentials={}))
    db.session.flush()
    for _ in range(3):
        integration.record_failure("upstream")
    integration.record_success()
    db.session.commit()
    row = stored(integration.id)
    assert (row.health_status, row.consecutive_failures) == ("healthy", 0)
