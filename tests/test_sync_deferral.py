"""Rate-limited sync items are deferred until the limit allows, without using a try (SPEC 15)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flask_integrations import IntegrationSyncItem, Limit, Provider, ScheduledSync, on_sync_item
from flask_integrations.testing import run_queued_jobs
from tests.helpers.app import db
from tests.helpers.sync import runs

UPSTREAM: dict[str, str] = {}


class Limited(ScheduledSync, Provider):
    sync_interval = 60
    rate_limit = [Limit(2, per="second")]

    def sync(self, integration, session):
        for n in range(5):
            session.dispatch("entry", {"path": UPSTREAM["path"]}, external_id=f"e{n}")

    @on_sync_item("entry")
    def fetch(self, integration, payload):
        integration.at("entry").with_attempts(1).get(UPSTREAM["base"] + payload["path"])


@pytest.fixture
def limited(app_factory, upstream):
    UPSTREAM.update(base=upstream.url, path="/json")
    app = app_factory(
        INTEGRATIONS_PROVIDERS={"limited": Limited},
        INTEGRATIONS_RATE_LIMIT_MAX_WAIT=0,
        INTEGRATIONS_SYNC={"item_tries": 1, "items_per_job": 10},
    )
    with app.app_context():
        yield app.extensions["integrations"].create("limited", "Limited", {})
        db.session.remove()


def sync_items() -> list[IntegrationSyncItem]:
    db.session.expire_all()
    return db.session.scalars(sa.select(IntegrationSyncItem).order_by(IntegrationSyncItem.id)).all()


def test_items_over_our_limit_wait_for_it_and_then_succeed(limited, upstream):
    limited.sync_now()
    first = sync_items()
    assert [i.status for i in first] == ["success", "success", "pending", "pending", "pending"]
    waiting = first[2]
    assert waiting.attempts == 0  # its try given back: item_tries=1 would have failed it
    assert waiting.error.startswith("deferred 1 s, rate limited: RateLimitExceeded")
    assert run_queued_jobs(include_delayed=True) >= 2  # waits for the window, twice
    assert [(i.status, i.attempts) for i in sync_items()] == [("success", 1)] * 5
    assert runs(limited.id)[-1].status == "success"
    assert upstream.hits("/json") == 5


def test_an_upstream_429_defers_the_item_for_its_retry_after(limited, upstream):
    UPSTREAM["path"] = "/limited"
    upstream.script(
        "/limited", [(429, {"error": "slow down"}, {"Retry-After": "1"})] + [(200, {"ok": True})] * 5
    )
    limited.sync_now()
    deferred = [i for i in sync_items() if i.status == "pending"]
    assert deferred and all(i.attempts == 0 for i in deferred)
    assert "IntegrationHTTPError" in deferred[0].error
    run_queued_jobs(include_delayed=True)
    assert {(i.status, i.attempts) for i in sync_items()} == {("success", 1)}
    assert runs(limited.id)[-1].status == "success"


def test_other_failures_still_use_their_tries(limited, upstream):
    UPSTREAM["path"] = "/status/500"
    limited.sync_now()
    run_queued_jobs(include_delayed=True)
    assert {(i.status, i.attempts) for i in sync_items()} == {("failed", 1)}
