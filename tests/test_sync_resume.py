"""Sync engine, second version (SPEC 16): mid-run positions and deletion detection."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

import flask_integrations as fi
from flask_integrations import Integration
from flask_integrations.clock import utcnow
from flask_integrations.errors import ConfigurationError
from flask_integrations.providers import check_provider_class
from flask_integrations.sync import deletions, schedule
from flask_integrations.testing import run_queued_jobs
from tests.helpers import sync
from tests.helpers.app import db, recorded_statements
from tests.helpers.sync import (
    Backfill,
    create_seen_table,
    flask_command,
    items,
    record,
    refreshed,
    runs,
    seen,
    sync_test_app,
    wait_ok,
    worker_env,
)


@pytest.fixture(autouse=True)
def _reset_backfill():
    sync.BACKFILL.update(pages=5, per_page=10, break_at=None)
    sync.STARTS.clear()
    yield
    sync.BACKFILL.update(pages=5, per_page=10, break_at=None)


class Contact(db.Model):
    __tablename__ = "resume_contacts"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), nullable=False)


#: what Directory lists (external ids) and what its @on_deleted method received
DIRECTORY: dict[str, Any] = {"listed": [], "deleted": [], "fail_on": None}


class Directory(fi.Provider, fi.ScheduledSync):
    """A full sync of contacts that reports the ones it no longer lists."""

    detects_deletions = True

    def sync(self, integration, session):
        for external_id in DIRECTORY["listed"]:
            session.dispatch("contact", {"id": external_id}, external_id=external_id)

    @fi.on_sync_item("contact")
    def store(self, integration, contact):
        if contact["id"] == DIRECTORY["fail_on"]:
            raise ValueError("this contact is malformed")
        integration.upsert_by_external_id(contact["id"], Contact, {"name": contact["id"]})

    @fi.on_deleted(Contact)
    def removed(self, integration, external_ids):
        DIRECTORY["deleted"].append(list(external_ids))


@pytest.fixture
def resume_app(app_factory):
    DIRECTORY.update(listed=[], deleted=[], fail_on=None)
    app = app_factory(INTEGRATIONS_PROVIDERS={"backfill": Backfill, "directory": Directory})

    @app.extensions["integrations"].sync_handler("feed.entry")
    def ingest(integration, payload):
        record(db, integration, payload)

    with app.app_context():
        create_seen_table()
        Contact.__table__.create(db.engine, checkfirst=True)
        yield app
        db.session.remove()


@pytest.fixture
def backfill(resume_app):
    return resume_app.extensions["integrations"].create("backfill", "Backfill", {})


@pytest.fixture
def directory(resume_app):
    return resume_app.extensions["integrations"].create("directory", "Directory", {})


# -- positions -----------------------------------------------------------------------------------


def test_items_saved_before_a_crash_are_processed_and_the_next_run_resumes(backfill):
    sync.BACKFILL["break_at"] = 3
    backfill.sync_now()
    assert seen() == list(range(1, 21))  # pages 1 and 2 were saved: processed despite the crash
    (crashed,) = runs(backfill.id)
    assert crashed.status == "failed" and "page 3 timed out upstream" in crashed.error
    assert crashed.metadata["position"] == 2 and crashed.metadata["item_count"] == 20
    assert refreshed(backfill).sync_cursor is None  # only a finalised run moves the cursor

    sync.BACKFILL["break_at"] = None
    backfill.sync_now()
    assert sync.STARTS == [None, 2]
    assert seen() == list(range(1, 51))  # each entry once: nothing processed twice
    resumed = runs(backfill.id)[-1]
    assert resumed.status == "success" and resumed.metadata["resumed_from"] == [crashed.id]
    assert refreshed(backfill).sync_cursor == 50  # the crashed run's checkpoints count too

    backfill.sync_now()
    assert sync.STARTS == [None, 2, None]  # a finished run leaves no position behind


def test_a_crash_before_any_save_starts_over_and_a_resumed_crash_keeps_its_position(backfill):
    sync.BACKFILL["break_at"] = 1
    backfill.sync_now()
    backfill.sync_now()
    assert sync.STARTS == [None, None]
    sync.BACKFILL["break_at"] = 4
    backfill.sync_now()  # saves pages 1-3, then crashes
    sync.BACKFILL["break_at"] = 4
    backfill.sync_now()  # resumes at 3 and crashes at once: the position stays 3
    sync.BACKFILL["break_at"] = None
    backfill.sync_now()
    assert sync.STARTS == [None, None, None, 3, 3]
    assert seen() == list(range(1, 51))
    last = runs(backfill.id)[-1]
    assert last.status == "success" and len(last.metadata["resumed_from"]) == 2


def test_an_abandoned_enumeration_ends_failed_once_its_saved_items_are_done(resume_app, backfill):
    state = resume_app.extensions["integrations"].state_for(resume_app)
    log = fi.sync.runs.start_run(state, backfill.id)
    fi.sync.positions.write_run_metadata(state, log.id, {"position": 2})
    db.session.commit()
    assert schedule.sweep(state, now=utcnow() + timedelta(hours=1))["abandoned"] == 1
    db.session.expire_all()
    run = runs(backfill.id)[0]
    assert run.status == "failed" and "did not finish within lock_ttl" in run.error
    backfill.sync_now()
    assert sync.STARTS == [2]


# -- deletion detection --------------------------------------------------------------------------


def _mapped(integration_id: int, external_ids: list[str], at: Any = None) -> None:
    """Mappings made before the run, inserted in one statement (as earlier runs would leave them)."""
    at = at or utcnow() - timedelta(days=1)
    db.session.execute(
        sa.insert(fi.IntegrationMapping),
        [
            {
                "integration_id": integration_id,
                "external_id": external_id,
                "internal_type": "resume_contacts",
                "internal_id": str(n),
                "created_at": at,
                "updated_at": at,
            }
            for n, external_id in enumerate(external_ids, 1)
        ],
    )
    db.session.commit()


def test_records_a_complete_run_no_longer_lists_go_to_on_deleted_and_lose_their_mapping(directory):
    _mapped(directory.id, ["c1", "c2", "c3", "c4"])
    DIRECTORY["listed"] = ["c1", "c3", "c5"]
    directory.sync_now()
    assert DIRECTORY["deleted"] == [["c2", "c4"]]
    remaining = db.session.scalars(sa.select(fi.IntegrationMapping.external_id).order_by("external_id"))
    assert list(remaining) == ["c1", "c3", "c5"]
    assert runs(directory.id)[-1].metadata["deleted"] == {"resume_contacts": 2}
    directory.sync_now()
    assert DIRECTORY["deleted"] == [["c2", "c4"]]  # reported once


def test_a_partial_or_truncated_run_reports_nothing(directory, resume_app):
    _mapped(directory.id, ["c1", "c2", "c3"])
    DIRECTORY.update(listed=["c1"], fail_on="c1")
    directory.sync_now()
    run_queued_jobs(include_delayed=True)  # its retries, until it is out of tries
    db.session.expire_all()
    assert runs(directory.id)[-1].status == "failed" and DIRECTORY["deleted"] == []
    DIRECTORY["fail_on"] = None
    resume_app.config["INTEGRATIONS_SYNC"]["max_items_per_run"] = 1
    DIRECTORY["listed"] = ["c1", "c3"]
    directory.sync_now()
    assert runs(directory.id)[-1].metadata["stopped_at_max_items"] is True
    assert DIRECTORY["deleted"] == []


def test_a_mapping_made_during_the_run_is_not_reported(directory, resume_app):
    _mapped(directory.id, ["c1"])
    _mapped(directory.id, ["late"], at=utcnow() + timedelta(minutes=5))  # after the run starts
    DIRECTORY["listed"] = ["c1"]
    directory.sync_now()
    assert DIRECTORY["deleted"] == []


def test_ten_thousand_mapped_ids_are_compared_in_a_bounded_number_of_queries(directory, resume_app):
    listed = [f"c{n:05d}" for n in range(10_000) if n % 100]  # 100 of the 10,000 are gone
    _mapped(directory.id, [f"c{n:05d}" for n in range(10_000)])
    state = resume_app.extensions["integrations"].state_for(resume_app)
    log = fi.sync.runs.start_run(state, directory.id)
    now = utcnow()
    db.session.execute(
        sa.insert(fi.IntegrationSyncItem),
        [
            {
                "integration_id": directory.id,
                "sync_log_id": log.id,
                "event_class": "contact",
                "external_id": external_id,
                "status": "success",
                "attempts": 1,
                "created_at": now,
                "updated_at": now,
            }
            for external_id in listed
        ],
    )
    db.session.execute(
        sa.update(fi.IntegrationLog).where(fi.IntegrationLog.id == log.id).values(status="success")
    )
    db.session.commit()
    with recorded_statements() as statements:
        assert deletions.report_deletions(log.id) == {"resume_contacts": 100}
    assert sorted(sum(DIRECTORY["deleted"], [])) == [f"c{n:05d}" for n in range(0, 10_000, 100)]
    assert len(statements) <= 12


def test_deletion_declarations_are_checked():
    class NoHandler(fi.Provider, fi.ScheduledSync):
        detects_deletions = True

        def sync(self, integration, session): ...

    with pytest.raises(ConfigurationError, match=r"detects_deletions is True but no method is marked"):
        check_provider_class("nohandler", NoHandler)

    class NotDeclared(fi.Provider, fi.ScheduledSync):
        def sync(self, integration, session): ...

        @fi.on_deleted(Contact)
        def gone(self, integration, ids): ...

    with pytest.raises(ConfigurationError, match=r"has @on_deleted methods but is not a ScheduledSync with"):
        check_provider_class("notdeclared", NotDeclared)
    with pytest.raises(ConfigurationError, match=r"needs one or more model classes"):
        fi.on_deleted("contacts")


# -- a worker killed while enumerating -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.redis
def test_sigkill_of_the_enumerating_worker_after_a_saved_position(server_database_url, redis_url):
    import redis

    from tests.conftest import reset_tables

    redis.Redis.from_url(redis_url).flushdb()
    app = sync_test_app(server_database_url, redis_url)
    try:
        with app.app_context():
            reset_tables()
            create_seen_table()
            backfill = app.extensions["integrations"].create("backfill", "Backfill", {})
            crashed = backfill.sync_now()
            env = worker_env(server_database_url, redis_url, SYNC_TEST_HANG_AT="3")
            enumerator = flask_command("worker", "--simple", env=env)
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    db.session.expire_all()
                    if (db.session.get(fi.IntegrationLog, crashed.id).metadata or {}).get("position") == 2:
                        break
                    time.sleep(0.2)
                else:
                    pytest.fail("the enumeration never saved its position")
            finally:
                os.killpg(enumerator.pid, signal.SIGKILL)
                enumerator.wait(10)
            # the saved items (pages 1-2) were enqueued at the save: other workers process them
            wait_ok(flask_command("worker", "--burst", env=worker_env(server_database_url, redis_url)))
            assert seen() == list(range(1, 21))
            state = app.extensions["integrations"].state_for(app)
            assert schedule.sweep(state, now=utcnow() + timedelta(hours=1))["abandoned"] == 1
            db.session.expire_all()
            assert runs(backfill.id)[0].status == "failed"
            assert db.session.get(Integration, backfill.id).sync_cursor is None

            resumed = backfill.sync_now()
            wait_ok(flask_command("worker", "--burst", env=worker_env(server_database_url, redis_url)))
            db.session.expire_all()
            run = db.session.get(fi.IntegrationLog, resumed.id)
            assert run.status == "success" and run.metadata["resumed_from"] == [crashed.id]
            assert seen() == list(range(1, 51))  # nothing lost, nothing processed twice
            assert db.session.get(Integration, backfill.id).sync_cursor == 50
            assert {item.status for item in items()} == {"success"}
            db.session.remove()
    finally:
        redis.Redis.from_url(redis_url).flushdb()
