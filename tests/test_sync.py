"""Scheduled syncs (SPEC section 7): runs, items, retries, finalisation, CLI, RQ workers."""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from flask_integrations import Integration, SyncSession, signals
from flask_integrations.clock import utcnow
from flask_integrations.sync import finalise, jobs, schedule
from flask_integrations.sync import items as sync_items
from flask_integrations.sync.runs import start_run
from flask_integrations.testing import run_queued_jobs
from tests.helpers import sync
from tests.helpers.app import db, make_app, run_docs_example
from tests.helpers.sync import Feed, items, record, refreshed, runs, seen, sync_test_app
from tests.helpers.sync import create_seen_table as _create_seen_table
from tests.helpers.sync import flask_command as _flask
from tests.helpers.sync import wait_ok as _wait
from tests.helpers.sync import worker_env as _env


@pytest.fixture(autouse=True)
def _reset_feed():
    sync.ITEMS["count"] = 20
    sync.FAILING.clear()
    sync.BROKEN["enumeration"] = False
    yield
    sync.FAILING.clear()
    sync.BROKEN["enumeration"] = False


@pytest.fixture
def sync_app(app_factory):
    app = app_factory(
        INTEGRATIONS_PROVIDERS={"feed": Feed},
        INTEGRATIONS_SYNC={"items_per_job": 7, "item_tries": 3, "item_backoff": [10, 30]},
    )
    integrations = app.extensions["integrations"]

    @integrations.sync_handler("feed.entry")
    def ingest(integration, payload):
        record(db, integration, payload)

    with app.app_context():
        _create_seen_table()
    return app


@pytest.fixture
def feed(sync_app):
    with sync_app.app_context():
        integration = sync_app.extensions["integrations"].create("feed", "Feed", {})
        yield integration
        db.session.remove()


# -- embedded mode ------------------------------------------------------------------------------


def test_a_run_processes_every_item_and_moves_the_cursor(feed):
    completed = []
    with signals.sync_completed.connected_to(lambda app, **kw: completed.append(kw["status"])):
        log = feed.sync_now()
    assert log is not None
    assert seen() == list(range(1, 21))
    feed = refreshed(feed)
    assert feed.sync_cursor == 20
    assert feed.last_synced_at is not None
    assert feed.next_sync_at > utcnow() + timedelta(minutes=9)
    (run,) = runs(feed.id)
    assert run.status == "success"
    assert run.metadata["success_count"] == 20
    assert run.metadata["failure_count"] == 0
    assert run.metadata["batch_id"] == items()[0].batch_id
    assert len(run.metadata["batch_id"]) == 32
    assert {i.status for i in items()} == {"success"}
    assert completed == ["success"]


def test_the_next_run_starts_from_the_cursor(feed):
    feed.sync_now()
    sync.ITEMS["count"] = 5
    feed.sync_now()
    assert seen() == list(range(1, 26))
    assert refreshed(feed).sync_cursor == 25


def test_an_item_dispatch_records_event_external_id_checkpoint_and_log(feed):
    feed.sync_now()
    item = items()[0]
    assert (item.event_class, item.external_id, item.checkpoint_value) == ("feed.entry", "e1", 1)
    assert item.sync_log_id == runs(feed.id)[0].id
    assert item.attempts == 1 and item.completed_at is not None


def test_a_failing_item_is_retried_alone_and_holds_the_cursor(feed, sync_app):
    sync.FAILING["e3"] = 1
    feed.sync_now()
    assert seen() == [n for n in range(1, 21) if n != 3]
    (waiting,) = items("pending")
    assert waiting.external_id == "e3" and waiting.attempts == 1 and "malformed" in waiting.error
    assert runs(feed.id)[0].status == "processing"
    assert refreshed(feed).sync_cursor is None
    # the delayed retry is not slept in embedded mode: the sweep runs it once its backoff has passed
    with sync_app.app_context():
        state = sync_app.extensions["integrations"].state_for(sync_app)
        assert schedule.sweep(state)["requeued"] == 0
        schedule.sweep(state, now=utcnow() + timedelta(seconds=11))
    assert seen() == list(range(1, 21))  # the others were not re-run
    assert runs(feed.id)[0].status == "success"
    assert refreshed(feed).sync_cursor == 20


def test_an_item_failing_every_try_fails_the_run_partially(feed, sync_app):
    sync.FAILING["e3"] = 99
    failures = []
    state = sync_app.extensions["integrations"].state_for(sync_app)
    with signals.sync_item_failed.connected_to(lambda app, **kw: failures.append(kw["error"])):
        feed.sync_now()
        for extra in (11, 42):
            schedule.sweep(state, now=utcnow() + timedelta(seconds=extra))
    (failed,) = items("failed")
    assert failed.attempts == 3 and failed.error == "ValueError: entry 3 is malformed"
    assert failures == ["ValueError: entry 3 is malformed"]
    (run,) = runs(feed.id)
    assert run.status == "partial"
    assert run.metadata["success_count"] == 19 and run.metadata["failure_count"] == 1
    feed = refreshed(feed)
    assert feed.sync_cursor is None
    assert feed.next_sync_at is not None  # paces itself even after a partial run


def test_skipping_the_failed_item_lets_the_cursor_catch_up(feed, sync_app):
    sync.FAILING["e3"] = 99
    sync_app.config["INTEGRATIONS_SYNC"]["item_tries"] = 1
    feed.sync_now()
    (failed,) = items("failed")
    runner = sync_app.test_cli_runner()
    result = runner.invoke(args=["integrations", "skip-sync-item", str(failed.id)])
    assert result.exit_code == 0, result.output
    (run,) = runs(feed.id)
    assert run.status == "success" and run.error is None
    assert run.metadata["failure_count"] == 0 and run.metadata["skipped_count"] == 1
    assert refreshed(feed).sync_cursor == 20


def test_retrying_the_failed_item_lets_the_cursor_catch_up(feed, sync_app):
    sync.FAILING["e3"] = 1
    sync_app.config["INTEGRATIONS_SYNC"]["item_tries"] = 1
    feed.sync_now()
    assert runs(feed.id)[0].status == "partial"
    (failed,) = items("failed")
    result = sync_app.test_cli_runner().invoke(args=["integrations", "retry-sync-item", str(failed.id)])
    assert result.exit_code == 0, result.output
    run_queued_jobs()
    assert runs(feed.id)[0].status == "success"
    assert refreshed(feed).sync_cursor == 20
    assert seen() == list(range(1, 21))


def test_an_enumeration_that_raises_fails_the_run_and_keeps_the_cursor(feed):
    feed.sync_now()
    sync.BROKEN["enumeration"] = True
    feed.sync_now()
    first, second = runs(feed.id)
    assert first.status == "success"
    assert second.status == "failed" and "upstream is down" in second.error
    assert refreshed(feed).sync_cursor == 20
    assert len(items()) == 20


def test_an_event_without_handler_fails_its_item_clearly(feed, sync_app):
    sync_app.extensions["integrations"]._sync_handlers.clear()
    feed.sync_now()
    failed = items("failed")
    assert len(failed) == 20 and failed[0].attempts == 1
    assert "no sync handler is registered for event 'feed.entry'" in failed[0].error
    assert runs(feed.id)[0].status == "failed"


def test_sync_now_returns_none_while_a_run_is_in_flight(feed, sync_app):
    state = sync_app.extensions["integrations"].state_for(sync_app)
    log = start_run(state, feed.id)
    assert log is not None
    assert feed.sync_now() is None
    assert len(runs(feed.id)) == 1


def test_the_run_lock_expires_after_lock_ttl(feed, sync_app):
    state = sync_app.extensions["integrations"].state_for(sync_app)
    log = start_run(state, feed.id)
    logs = state.tables["logs"]
    db.session.execute(
        sa.update(logs).where(logs.c.id == log.id).values(created_at=utcnow() - timedelta(seconds=1801))
    )
    db.session.commit()
    assert feed.sync_now() is not None


def test_max_items_per_run_stops_dispatch_with_a_warning(feed, sync_app, caplog):
    sync_app.config["INTEGRATIONS_SYNC"]["max_items_per_run"] = 5
    feed.sync_now()
    assert seen() == [1, 2, 3, 4, 5]
    assert "max_items_per_run" in caplog.text
    assert refreshed(feed).sync_cursor == 5


def test_sync_session_is_exported_and_dispatch_checks_the_event(feed, sync_app):
    state = sync_app.extensions["integrations"].state_for(sync_app)
    session = SyncSession(state, feed, 1, "b" * 32, None)
    with pytest.raises(ValueError):
        session.dispatch("", {})


def test_the_cursor_never_moves_backward(feed, sync_app):
    feed.sync_now()
    provider = sync_app.extensions["integrations"].state_for(sync_app).provider("feed")
    assert finalise.next_cursor(provider, 20, [3, 4]) == 20
    assert finalise.next_cursor(provider, None, [3, 4]) == 4
    assert finalise.next_cursor(provider, 20, []) == 20


def test_a_sweep_resets_items_a_dead_worker_left_processing(feed, sync_app):
    sync.FAILING["e1"] = 1
    sync_app.config["INTEGRATIONS_SYNC"]["item_tries"] = 5
    feed.sync_now()
    items_table = sync_app.extensions["integrations"].state_for(sync_app).tables["sync_items"]
    db.session.execute(
        sa.update(items_table).where(items_table.c.external_id == "e1").values(status="processing")
    )
    db.session.commit()
    state = sync_app.extensions["integrations"].state_for(sync_app)
    assert schedule.sweep(state, processing_timeout=60)["reset"] == 0
    result = schedule.sweep(state, processing_timeout=60, now=utcnow() + timedelta(seconds=400))
    assert result["reset"] == 1
    assert runs(feed.id)[0].status == "success"
    assert refreshed(feed).sync_cursor == 20


def test_pending_timeout_sets_when_the_sweep_requeues_an_item_whose_job_was_lost(feed, sync_app):
    feed.sync_now()
    state = sync_app.extensions["integrations"].state_for(sync_app)
    items_table = state.tables["sync_items"]
    db.session.execute(  # a never-tried item whose job Redis lost
        sa.update(items_table).where(items_table.c.external_id == "e1").values(status="pending", attempts=0)
    )
    db.session.commit()
    two_minutes_on = utcnow() + timedelta(seconds=120)
    assert schedule.sweep(state, now=two_minutes_on)["requeued"] == 0  # the default waits 300 s
    sync_app.config["INTEGRATIONS_SYNC"]["pending_timeout"] = 60
    assert schedule.sweep(state, now=two_minutes_on)["requeued"] == 1


# -- CLI ----------------------------------------------------------------------------------------


def test_flask_integrations_sync_runs_due_integrations_only(feed, sync_app):
    other = sync_app.extensions["integrations"].create("feed", "Not due", {})
    other.next_sync_at = utcnow() + timedelta(hours=1)
    db.session.commit()
    result = sync_app.test_cli_runner().invoke(args=["integrations", "sync"])
    assert result.exit_code == 0, result.output
    assert "Started 1 sync run(s) of 1 due integration(s)." in result.output
    assert [r.status for r in runs(feed.id)] == ["success"]
    assert runs(other.id) == []
    again = sync_app.test_cli_runner().invoke(args=["integrations", "sync"])
    assert "Started 0 sync run(s) of 0 due" in again.output


def test_flask_integrations_sync_skips_inactive_and_unscheduled(feed, sync_app):
    feed.sync_interval_minutes = None
    feed.is_active = False
    db.session.commit()
    result = sync_app.test_cli_runner().invoke(args=["integrations", "sync"])
    assert "of 0 due integration(s)" in result.output


def test_sync_of_one_integration_and_of_an_unknown_id(feed, sync_app):
    runner = sync_app.test_cli_runner()
    result = runner.invoke(args=["integrations", "sync", "--integration", str(feed.id)])
    assert result.exit_code == 0 and f"run {runs(feed.id)[0].id} started" in result.output
    bad = runner.invoke(args=["integrations", "sync", "--integration", "999"])
    assert bad.exit_code == 1 and bad.output.strip() == "Error: Integration 999 does not exist."


def test_list_failed_items_is_an_aligned_table(feed, sync_app):
    sync.FAILING.update({"e3": 99, "e12": 99})
    sync_app.config["INTEGRATIONS_SYNC"]["item_tries"] = 1
    feed.sync_now()
    runner = sync_app.test_cli_runner()
    result = runner.invoke(args=["integrations", "list-failed-items", "--integration", str(feed.id)])
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "ID",
        "INTEGRATION",
        "EVENT",
        "EXTERNAL",
        "ID",
        "ATTEMPTS",
        "FAILED",
        "AT",
        "ERROR",
    ]
    assert len(lines) == 3 and "e3" in lines[1] and "e12" in lines[2]
    assert lines[1].index("feed.entry") == lines[2].index("feed.entry") == lines[0].index("EVENT")
    later = runner.invoke(args=["integrations", "list-failed-items", "--since", "2999-01-01"])
    assert "No failed sync items." in later.output


@pytest.mark.parametrize("command", ["skip-sync-item", "retry-sync-item"])
def test_item_commands_refuse_unknown_and_unfailed_items(feed, sync_app, command):
    feed.sync_now()
    runner = sync_app.test_cli_runner()
    unknown = runner.invoke(args=["integrations", command, "999"])
    assert unknown.exit_code == 1 and unknown.output.strip() == "Error: sync item 999 does not exist."
    done = runner.invoke(args=["integrations", command, str(items()[0].id)])
    assert done.exit_code == 1 and "is success" in done.output


def test_advance_cursor_finalises_a_stuck_run_and_is_safe_to_repeat(feed, sync_app):
    feed.sync_now()
    logs = sync_app.extensions["integrations"].state_for(sync_app).tables["logs"]
    # as if the last job died between its statuses' commit and the finalisation
    db.session.execute(sa.update(logs).values(status="processing"))
    db.session.execute(sa.update(type(feed).__table__).values(sync_cursor=None))
    db.session.commit()
    runner = sync_app.test_cli_runner()
    result = runner.invoke(args=["integrations", "advance-cursor", str(feed.id)])
    assert result.exit_code == 0 and "1 run(s) finalised; cursor: 20." in result.output
    assert runner.invoke(args=["integrations", "advance-cursor", str(feed.id)]).output.startswith("0 run(s)")
    assert runner.invoke(args=["integrations", "advance-cursor", "999"]).exit_code == 1


# -- several processes: PostgreSQL, Redis and real RQ workers ------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server_app(server_database_url):
    from tests.conftest import reset_tables

    app = sync_test_app(server_database_url)
    with app.app_context():
        reset_tables()
        _create_seen_table()
        yield app
        db.session.remove()


def end_state(integration_id: int) -> dict:
    db.session.expire_all()
    (run,) = runs(integration_id)
    statuses = sorted({i.status for i in items()})
    return {
        "cursor": db.session.get(Integration, integration_id).sync_cursor,
        "run": run.status,
        "counts": (run.metadata["success_count"], run.metadata["failure_count"]),
        "items": statuses,
        "seen": seen(),
    }


@pytest.mark.slow
def test_two_concurrent_sync_commands_start_one_run(server_app, server_database_url):
    feed = server_app.extensions["integrations"].create("feed", "Feed", {})
    env = _env(server_database_url, SYNC_TEST_SLOW="0.05")
    processes = [_flask("sync", "--integration", str(feed.id), env=env) for _ in range(2)]
    outputs = [_wait(p)[0] for p in processes]
    assert sorted("already in flight" in out for out in outputs) == [False, True], outputs
    assert len(runs(feed.id)) == 1
    assert end_state(feed.id)["seen"] == list(range(1, 21))
    # and the due-integration path: two `flask integrations sync` at once, one run
    db.session.execute(sa.update(Integration.__table__).values(next_sync_at=None))
    db.session.commit()
    processes = [_flask("sync", env=env) for _ in range(2)]
    outputs = [_wait(p)[0] for p in processes]
    assert len(runs(feed.id)) == 2, outputs
    assert seen() == list(range(1, 41))


LARGE_RUN = 1000


@pytest.mark.slow
@pytest.mark.redis
def test_rq_workers_finalise_a_large_run_once(server_database_url, redis_url, tmp_path):
    import redis

    from tests.conftest import reset_tables

    redis.Redis.from_url(redis_url).flushdb()
    env = _env(server_database_url, redis_url, SYNC_TEST_ITEMS=str(LARGE_RUN), SYNC_TEST_PER_JOB="25")
    app = sync_test_app(server_database_url, redis_url, SYNC_TEST_PER_JOB="25")
    sync.ITEMS["count"] = LARGE_RUN
    started = time.monotonic()
    try:
        with app.app_context():
            reset_tables()
            _create_seen_table()
            feed = app.extensions["integrations"].create("feed", "Feed", {})
            state = app.extensions["integrations"].state_for(app)
            log = start_run(state, feed.id)
            # the enumeration runs here; its 40 item jobs go to RQ, for two workers at once
            assert jobs.sync_integration(feed.id, log.id) == "processing"
            assert len(items("pending")) == LARGE_RUN
            from rq.group import Group

            group = Group.fetch(items()[0].batch_id, connection=redis.Redis.from_url(redis_url))
            assert len(group.get_jobs()) == LARGE_RUN // 25  # one RQ group per run, named by its batch id
            workers = [_flask("worker", "--burst", env=env) for _ in range(2)]
            for worker in workers:
                _wait(worker)
            redis_state = end_state(feed.id)
            assert redis_state == {
                "cursor": LARGE_RUN,
                "run": "success",
                "counts": (LARGE_RUN, 0),
                "items": ["success"],
                "seen": list(range(1, LARGE_RUN + 1)),
            }
            assert len(items()) == LARGE_RUN
            db.session.remove()
    finally:
        redis.Redis.from_url(redis_url).flushdb()
    assert time.monotonic() - started < 90
    # the embedded mode reaches the same end state for the same provider
    embedded = make_app(f"sqlite:///{tmp_path / 'embedded.db'}", INTEGRATIONS_PROVIDERS={"feed": Feed})

    @embedded.extensions["integrations"].sync_handler("feed.entry")
    def ingest(integration, payload):
        record(db, integration, payload)

    with embedded.app_context():
        reset_tables()
        _create_seen_table()
        feed = embedded.extensions["integrations"].create("feed", "Feed", {})
        feed.sync_now()
        assert end_state(feed.id) == redis_state
        db.session.remove()


@pytest.mark.slow
@pytest.mark.redis
def test_a_sigkilled_worker_loses_no_item(server_database_url, redis_url):
    import redis

    from tests.conftest import reset_tables

    redis.Redis.from_url(redis_url).flushdb()
    app = sync_test_app(server_database_url, redis_url)
    try:
        with app.app_context():
            reset_tables()
            _create_seen_table()
            feed = app.extensions["integrations"].create("feed", "Feed", {})
            feed.sync_now()
            # --simple: the item runs in the worker process itself (a forked work horse starts a
            # session of its own and would outlive a kill of the worker's process group)
            worker = _flask(
                "worker", "--simple", env=_env(server_database_url, redis_url, SYNC_TEST_SLOW="30")
            )
            try:
                deadline = time.monotonic() + 30
                while not items("processing") and time.monotonic() < deadline:
                    time.sleep(0.2)
                    db.session.expire_all()
                assert items("processing")
            finally:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
            db.session.expire_all()
            assert runs(feed.id)[0].status == "processing"
            assert db.session.get(Integration, feed.id).sync_cursor is None  # not past the lost item
            state = app.extensions["integrations"].state_for(app)
            assert schedule.sweep(state, processing_timeout=0)["reset"] >= 1
            _wait(_flask("worker", "--burst", env=_env(server_database_url, redis_url)))
            state_after = end_state(feed.id)
            assert (state_after["run"], state_after["cursor"], state_after["items"]) == (
                "success",
                20,
                ["success"],
            )
            assert set(state_after["seen"]) == set(range(1, 21))
            db.session.remove()
    finally:
        redis.Redis.from_url(redis_url).flushdb()


def test_the_cron_job_starts_due_runs(feed, sync_app):
    from flask_integrations import cron

    assert cron.sync_due() == 1
    assert runs(feed.id)[0].status == "success"
    assert cron.sync_due() == 0

    registered = []

    class FakeCron:
        def register(self, func, queue_name, **options):
            registered.append((func, queue_name, options))

    cron.register(FakeCron(), cron_expression="*/5 * * * *")
    ((func, queue_name, options),) = registered
    assert func.__name__ == "run_job" and queue_name == "integrations"
    assert options["args"] == ("flask_integrations.cron.sync_due",) and options["cron"] == "*/5 * * * *"


def test_requests_made_while_enumerating_join_the_run_log(app_factory):
    from flask_integrations import IntegrationRequest
    from tests.helpers.sync import CallingFeed

    app = app_factory(INTEGRATIONS_PROVIDERS={"feed": CallingFeed})
    app.extensions["integrations"].sync_handler("feed.entry")(lambda integration, payload: None)
    with app.app_context():
        feed = app.extensions["integrations"].create("feed", "Feed", {})
        with caplog_records() as records:
            feed.sync_now()
        (run,) = runs(feed.id)
        request_ids = db.session.scalars(sa.select(IntegrationRequest.id)).all()
        assert len(request_ids) == 1
        assert run.metadata["request_ids"] == request_ids
        assert run.status == "success" and refreshed(feed).sync_cursor == 3
        assert any(getattr(r, "integration_operation", None) == "sync" for r in records)
        db.session.remove()


@contextmanager
def caplog_records():
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("flask_integrations")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_the_example_in_the_docs_runs(tmp_path):
    lines = run_docs_example("syncs.md", r"```python\n(from cryptography.*?)```", tmp_path)
    assert lines == ["success 10 2026-01-10 10", "2026-01-11 11"]


def test_items_rq_abandoned_go_back_to_a_worker_or_fail_once_out_of_tries(feed, sync_app):
    sync_app.config["INTEGRATIONS_SYNC"]["item_tries"] = 2
    state = sync_app.extensions["integrations"].state_for(sync_app)
    log = start_run(state, feed.id)
    t = state.tables["sync_items"]
    # as if a worker claimed the whole chunk, then died: e1 on its first try, e2 on its last
    session = SyncSession(state, feed, log.id, "c" * 32, None)
    session.dispatch("feed.entry", {"n": 1}, checkpoint=1, external_id="e1")
    session.dispatch("feed.entry", {"n": 2}, checkpoint=2, external_id="e2")
    session.flush()
    db.session.execute(sa.update(t).values(status="processing", attempts=1))
    db.session.execute(sa.update(t).where(t.c.external_id == "e2").values(attempts=2))
    logs = state.tables["logs"]
    db.session.execute(
        sa.update(logs).where(logs.c.id == log.id).values(metadata={"batch_id": "c" * 32, "enumerated": True})
    )
    db.session.commit()
    assert jobs.items_abandoned([i.id for i in items()]) == 1
    first, second = items()
    assert (first.status, second.status) == ("success", "failed")
    assert "worker running this item was lost" in second.error
    assert seen() == [1]
    assert runs(feed.id)[0].status == "partial"


@pytest.mark.redis
def test_item_jobs_carry_the_rq_failure_callback(app_factory, redis_url):
    import redis
    from rq import Queue

    app = app_factory(INTEGRATIONS_PROVIDERS={"feed": Feed}, INTEGRATIONS_REDIS_URL=redis_url)
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    try:
        with app.app_context():
            state = app.extensions["integrations"].state_for(app)
            sync_items.enqueue_items(state, "feed", [1, 2, 3])
            (job,) = Queue("integrations", connection=connection).get_jobs()
            assert job.args == ("flask_integrations.sync.jobs.process_sync_items", [1, 2, 3])
            assert job.meta["fi_on_failure"] == "flask_integrations.sync.jobs.items_abandoned"
            assert job.failure_callback.__name__ == "run_failure_callback"
            db.session.remove()
    finally:
        connection.flushdb()


@pytest.mark.slow
@pytest.mark.redis
def test_rq_retries_a_failing_item_alone_through_the_scheduler(
    server_app, server_database_url, redis_url, tmp_path
):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    env = _env(
        server_database_url,
        redis_url,
        SYNC_TEST_FAIL_ONCE="e3",
        SYNC_TEST_FAIL_ONCE_DIR=str(tmp_path),
        SYNC_TEST_BACKOFF="1",
        SYNC_TEST_PER_JOB="5",
    )
    # Redis mode for this process too, so that sync_now enqueues to RQ
    server_app.extensions["integrations"].state_for(server_app).config["INTEGRATIONS_REDIS_URL"] = redis_url
    try:
        feed = server_app.extensions["integrations"].create("feed", "Feed", {})
        feed.sync_now()
        worker = _flask("worker", env=env)  # not --burst: the scheduler must live to run the retry
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                db.session.expire_all()
                if runs(feed.id)[0].status != "processing":
                    break
                time.sleep(0.3)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(20)
        state = end_state(feed.id)
        assert (state["run"], state["cursor"], state["items"]) == ("success", 20, ["success"])
        assert state["seen"] == list(range(1, 21))  # the others in e3's job were not re-run
        (retried,) = [i for i in items() if i.attempts == 2]
        assert retried.external_id == "e3"
    finally:
        redis.Redis.from_url(redis_url).flushdb()


@pytest.mark.slow
def test_the_run_claim_admits_one_of_many_simultaneous_starts(server_app):
    import threading

    feed = server_app.extensions["integrations"].create("feed", "Feed", {})
    feed_id = feed.id  # read here: an expired `feed.id` in a thread would load it on this thread's connection
    state = server_app.extensions["integrations"].state_for(server_app)
    barrier = threading.Barrier(6)
    started: list[object] = []

    def start(due_only: bool) -> None:
        with server_app.app_context():
            barrier.wait()
            started.append(start_run(state, feed_id, due_only=due_only))
            db.session.remove()

    threads = [threading.Thread(target=start, args=(n % 2 == 0,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(started) == 6
    assert len([log for log in started if log is not None]) == 1
    assert len(runs(feed.id)) == 1
