"""Rate-limited sync items are deferred until the limit allows, without using a try (SPEC 15)."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from flask_integrations import IntegrationSyncItem
from flask_integrations.sync import jobs
from flask_integrations.sync.runs import start_run
from flask_integrations.testing import run_queued_jobs
from tests.helpers.app import db
from tests.helpers.sync import Limited, flask_command, runs, worker_env


@pytest.fixture
def limited(app_factory, upstream, monkeypatch):
    monkeypatch.setenv("SYNC_TEST_UPSTREAM", upstream.url + "/json")
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


def test_an_upstream_429_defers_the_item_for_its_retry_after(limited, upstream, monkeypatch):
    monkeypatch.setenv("SYNC_TEST_UPSTREAM", upstream.url + "/limited")
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


def test_other_failures_still_use_their_tries(limited, upstream, monkeypatch):
    monkeypatch.setenv("SYNC_TEST_UPSTREAM", upstream.url + "/status/500")
    limited.sync_now()
    run_queued_jobs(include_delayed=True)
    assert {(i.status, i.attempts) for i in sync_items()} == {("failed", 1)}


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_rq_workers_defer_rate_limited_items_until_the_limit_allows(
    postgres_url, redis_url, upstream, monkeypatch
):
    import os
    import signal

    import redis

    from tests.conftest import reset_tables
    from tests.helpers.sync_app import create_app

    redis.Redis.from_url(redis_url).flushdb()
    env = worker_env(postgres_url, redis_url, SYNC_TEST_TRIES="1", SYNC_TEST_UPSTREAM=upstream.url + "/json")
    for name in ("SYNC_TEST_DATABASE_URL", "SYNC_TEST_REDIS_URL", "SYNC_TEST_TRIES", "SYNC_TEST_UPSTREAM"):
        monkeypatch.setenv(name, env[name])
    app = create_app()
    worker = None
    try:
        with app.app_context():
            reset_tables()
            limited = app.extensions["integrations"].create("limited", "Limited", {})
            log = start_run(app.extensions["integrations"].state_for(app), limited.id)
            assert jobs.sync_integration(limited.id, log.id) == "processing"  # five item jobs in RQ
            worker = flask_command("worker", env=env)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and runs(limited.id)[-1].status == "processing":
                time.sleep(0.3)
                db.session.expire_all()
            assert [(i.status, i.attempts) for i in sync_items()] == [("success", 1)] * 5
            assert runs(limited.id)[-1].status == "success"
            assert upstream.hits("/json") == 5
            db.session.remove()
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.communicate(timeout=30)
        redis.Redis.from_url(redis_url).flushdb()
