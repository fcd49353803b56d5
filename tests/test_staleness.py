"""Stale syncs and the backoff of failing runs (SPEC 15)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from flask_integrations import Integration, signals
from flask_integrations.clock import utcnow
from flask_integrations.sync import schedule
from flask_integrations.sync.staleness import stale_since
from tests.helpers import sync
from tests.helpers.app import db
from tests.helpers.sync import Feed, create_seen_table, record, refreshed, runs


@pytest.fixture(autouse=True)
def _reset_feed():
    sync.ITEMS["count"] = 3
    sync.BROKEN["enumeration"] = False
    yield
    sync.BROKEN["enumeration"] = False


@pytest.fixture
def feed_app(app_factory):
    app = app_factory(
        INTEGRATIONS_PROVIDERS={"feed": Feed},
        INTEGRATIONS_SYNC={"stale_after": 3, "max_backoff": 3600},
        INTEGRATIONS_HEALTH={"degraded_after": 50, "failing_after": 60, "disabled_after": None},
    )
    app.extensions["integrations"].sync_handler("feed.entry")(
        lambda integration, payload: record(db, integration, payload)
    )
    with app.app_context():
        create_seen_table()
    return app


@pytest.fixture
def feed(feed_app):
    with feed_app.app_context():
        yield feed_app.extensions["integrations"].create("feed", "Feed", {})
        db.session.remove()


@pytest.fixture
def stale_signals():
    seen = []
    with signals.sync_stale.connected_to(lambda _, integration, since: seen.append((integration.id, since))):
        yield seen


def age(integration: Integration, minutes: float) -> None:
    """Pretend the last successful run (and the creation) happened `minutes` ago."""
    then = utcnow() - timedelta(minutes=minutes)
    table = Integration.__table__
    db.session.execute(
        sa.update(table).where(table.c.id == integration.id).values(last_synced_at=then, created_at=then)
    )
    db.session.commit()
    db.session.expire_all()


def test_stale_after_three_intervals_without_a_successful_run(feed, feed_app):
    with feed_app.app_context():
        age(feed, 29)
        assert stale_since(refreshed(feed), feed_app.extensions["integrations"].state_for(feed_app)) is None
        age(feed, 31)
        since = stale_since(refreshed(feed), feed_app.extensions["integrations"].state_for(feed_app))
        assert since is not None and utcnow() - since > timedelta(minutes=30)


def test_sync_stale_is_sent_once_per_episode(feed, feed_app, stale_signals):
    state = feed_app.extensions["integrations"].state_for(feed_app)
    age(feed, 45)
    assert schedule.sweep(state)["stale"] == 1
    assert schedule.sweep(state)["stale"] == 0
    assert [integration_id for integration_id, _ in stale_signals] == [feed.id]
    assert stale_signals[0][1] is not None  # since: the last successful run
    refreshed(feed).sync_now()  # a successful run ends the episode
    assert runs(feed.id)[-1].status == "success"
    assert schedule.sweep(state)["stale"] == 0
    age(feed, 45)
    assert schedule.sweep(state)["stale"] == 1
    assert len(stale_signals) == 2


def test_handlers_failing_while_the_api_answers_make_an_integration_stale(feed, feed_app, stale_signals):
    sync.FAILING.update({"e1": 99})
    try:
        age(feed, 45)
        refreshed(feed).sync_now()  # the API answered; one item keeps failing
        assert refreshed(feed).health_status == "healthy"
        schedule.sweep(feed_app.extensions["integrations"].state_for(feed_app))
        assert [integration_id for integration_id, _ in stale_signals] == [feed.id]
    finally:
        sync.FAILING.clear()


def test_the_health_command_lists_stale_integrations(feed, feed_app):
    age(feed, 45)
    result = feed_app.test_cli_runner().invoke(args=["integrations", "health"])
    assert "Stale syncs (no successful run in 3 intervals):" in result.output
    assert f"{feed.id}  feed" in result.output.split("Stale syncs")[1]


def test_the_integration_page_shows_the_stale_badge(feed, feed_app):
    client = feed_app.test_client()
    assert 'id="stale-badge"' not in client.get(f"/integrations/dashboard/integrations/{feed.id}").text
    age(feed, 45)
    assert 'id="stale-badge"' in client.get(f"/integrations/dashboard/integrations/{feed.id}").text


def test_consecutive_failed_runs_back_off_exponentially_up_to_max_backoff(feed):
    sync.BROKEN["enumeration"] = True
    waits = []
    for _ in range(4):
        started = utcnow()
        refreshed(feed).sync_now()
        assert runs(feed.id)[-1].status == "failed"
        waits.append(round((refreshed(feed).next_sync_at - started).total_seconds() / 60))
    assert waits == [20, 40, 60, 60]  # 10 min x 2, x 4, then the 3600 s cap
    sync.BROKEN["enumeration"] = False
    refreshed(feed).sync_now()
    assert round((refreshed(feed).next_sync_at - utcnow()).total_seconds() / 60) == 10  # success resets
