"""flask_integrations.queue: enqueue after commit, the embedded runner, RQ queues."""

from __future__ import annotations

import logging
import socket
import struct
import threading

import pytest
import sqlalchemy as sa
from flask import current_app, g

from flask_integrations import queue
from flask_integrations.state import current_state
from flask_integrations.testing import run_queued_jobs
from tests.helpers.app import db
from tests.helpers.browser import LiveServer
from tests.helpers.servers import HOST

CALLS: list[tuple] = []
RAN = threading.Event()


def record(*args):
    """A job: records its arguments and whether it saw a fresh app context."""
    CALLS.append(("record", args, getattr(g, "marker", None), current_app.name))


def record_and_announce(*args):
    record(*args)
    RAN.set()


def explode(*args):
    raise RuntimeError("job failed")


def chain(n):
    """A job that enqueues another one: it must run after this one, not inside it."""
    CALLS.append(("chain-start", n))
    if n > 0:
        queue.enqueue(current_state(), chain, n - 1)
    CALLS.append(("chain-end", n))


def count_rows():
    CALLS.append(("rows", db.session.scalar(sa.text("SELECT count(*) FROM integrations"))))


@pytest.fixture(autouse=True)
def _clear():
    CALLS.clear()
    run_queued_jobs()  # nothing left over from another test
    CALLS.clear()
    yield
    CALLS.clear()


@pytest.fixture
def embedded(app, ctx):
    return current_state()


def test_enqueue_outside_a_transaction_runs_at_once_in_a_fresh_app_context(embedded):
    g.marker = "caller"
    db.session.commit()
    queue.enqueue(embedded, record, 1, "a")
    assert CALLS == [("record", (1, "a"), None, "tests")]


def test_enqueue_inside_a_transaction_waits_for_the_commit(embedded, ext):
    db.session.execute(sa.text("SELECT 1"))
    queue.enqueue(embedded, record, 2)
    assert CALLS == []
    db.session.commit()
    assert CALLS == [("record", (2,), None, "tests")]


def test_a_job_sees_the_rows_its_transaction_committed(embedded, ext):
    ext.create("loose", "A", {})
    db.session.execute(
        sa.insert(embedded.tables["integrations"]).values(
            provider="loose", name="B", credentials=embedded.keyring.encrypt({})
        )
    )
    queue.enqueue(embedded, count_rows)
    db.session.commit()
    assert CALLS == [("rows", 2)]


def test_a_rollback_drops_the_jobs(embedded):
    db.session.execute(sa.text("SELECT 1"))
    queue.enqueue(embedded, record, 3)
    db.session.rollback()
    db.session.commit()
    assert CALLS == []
    assert run_queued_jobs() == 0


def test_a_released_savepoint_is_not_the_commit(embedded):
    db.session.execute(sa.text("SELECT 1"))
    with db.session.begin_nested():
        queue.enqueue(embedded, record, 12)
    assert CALLS == []
    db.session.rollback()
    assert CALLS == []
    with db.session.begin_nested():
        queue.enqueue(embedded, record, 13)
    db.session.commit()
    assert CALLS == [("record", (13,), None, "tests")]


def test_a_failing_job_is_logged_not_raised(embedded, caplog):
    with caplog.at_level(logging.ERROR, "flask_integrations"):
        queue.enqueue(embedded, explode)
    assert "embedded job" in caplog.text and "RuntimeError" in caplog.text


def test_jobs_enqueued_by_a_job_run_after_it(embedded):
    queue.enqueue(embedded, chain, 2)
    assert CALLS == [
        ("chain-start", 2),
        ("chain-end", 2),
        ("chain-start", 1),
        ("chain-end", 1),
        ("chain-start", 0),
        ("chain-end", 0),
    ]


def test_delayed_jobs_are_not_run_in_embedded_mode(embedded):
    queue.enqueue(embedded, record, 4, delay=30)
    assert CALLS == []
    assert run_queued_jobs() == 0


def test_inside_a_request_jobs_run_after_the_response(app):
    @app.post("/work")
    def work():
        queue.enqueue(current_state(), record, 5)
        db.session.commit()
        CALLS.append(("view-returned",))
        return "ok"

    client = app.test_client()
    response = client.post("/work")
    assert response.status_code == 200
    assert CALLS == [("view-returned",)]  # the response is not closed yet
    response.close()
    assert CALLS == [("view-returned",), ("record", (5,), None, "tests")]


def test_run_queued_jobs_runs_what_a_request_left_unsent(app):
    @app.post("/work")
    def work():
        with db.session.begin():
            queue.enqueue(current_state(), record, 6)
        return "ok"

    app.test_client().post("/work")
    assert CALLS == []
    assert run_queued_jobs() == 1
    assert CALLS == [("record", (6,), None, "tests")]
    assert run_queued_jobs() == 0


def test_jobs_committed_during_teardown_still_run(app):
    @app.post("/late")
    def late():
        return "ok"

    @app.teardown_request
    def commit_late(exc):
        queue.enqueue(current_state(), record, 7)

    with app.test_client() as client:
        client.post("/late", buffered=True)
    run_queued_jobs()
    assert ("record", (7,), None, "tests") in CALLS


def test_jobs_still_run_when_the_development_server_drops_the_response_unclosed(app):
    """werkzeug's server skips the response's close() when the client resets the connection while
    the server drains it (as a browser may after a redirect's headers, on a loaded machine)."""

    @app.post("/work")
    def work():
        queue.enqueue(current_state(), record_and_announce, 8)
        db.session.commit()
        return "ok"

    dropped = threading.Event()
    server = LiveServer(app)
    server.RequestHandlerClass = type(
        "Handler", (server.RequestHandlerClass,), {"connection_dropped": lambda *_: dropped.set()}
    )
    server.start()
    RAN.clear()
    try:
        with socket.create_connection((HOST, server.server_address[1])) as client:
            # bytes past the request keep the server reading (draining) after the response
            client.sendall(b"POST /work HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" + b"x" * 100_000)
            received = b""
            while not received.endswith(b"ok"):
                received += client.recv(65536)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        assert dropped.wait(10), "the server did not see the reset"
        assert RAN.wait(10), "the job never ran"
    finally:
        server.stop()
    assert CALLS == [("record", (8,), None, "tests")]
    assert run_queued_jobs() == 0


def test_function_path_refuses_local_functions():
    def local():
        pass

    with pytest.raises(ValueError, match="not importable"):
        queue.function_path(local)
    assert queue.function_path(record) == "tests.test_queue.record"


def test_every_job_name_imports_the_job_it_names():
    """Job names are enqueued as strings and must keep importing across releases (queue/names.py)."""
    from flask_integrations.cron import sync_due
    from flask_integrations.queue import names
    from flask_integrations.sync.deletions import report_deletions
    from flask_integrations.sync.items import items_abandoned, process_sync_items
    from flask_integrations.sync.runs import enumeration_abandoned, sync_integration
    from flask_integrations.webhooks.jobs import process_webhook

    expected = {
        "RUN_JOB": queue.run_job,
        "RUN_FAILURE_CALLBACK": queue.run_failure_callback,
        "SYNC_INTEGRATION": sync_integration,
        "PROCESS_SYNC_ITEMS": process_sync_items,
        "SYNC_ITEMS_ABANDONED": items_abandoned,
        "SYNC_ENUMERATION_ABANDONED": enumeration_abandoned,
        "SYNC_REPORT_DELETIONS": report_deletions,
        "PROCESS_WEBHOOK": process_webhook,
        "CRON_SYNC_DUE": sync_due,
    }
    named = {name: value for name, value in vars(names).items() if name.isupper()}
    assert named.keys() == expected.keys()
    assert {name: queue.import_function(path) for name, path in named.items()} == expected


# -- Redis mode ---------------------------------------------------------------------------------


@pytest.fixture
def redis_app(app_factory, redis_url):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    app = app_factory(INTEGRATIONS_REDIS_URL=redis_url)
    with app.app_context():
        yield app
        db.session.remove()
    redis.Redis.from_url(redis_url).flushdb()


def _rq(redis_url, name="integrations"):
    return queue.rq_queue(current_state(), name)


@pytest.mark.redis
def test_redis_mode_enqueues_to_rq_after_the_commit(redis_app, redis_url):
    state = current_state()
    db.session.execute(sa.text("SELECT 1"))
    queue.enqueue(state, record, 8, queue="integrations")
    assert _rq(redis_url).count == 0
    db.session.commit()
    rq_queue = _rq(redis_url)
    assert rq_queue.count == 1
    job = rq_queue.jobs[0]
    assert job.func_name == "flask_integrations.queue.run_job"
    assert job.args == ("tests.test_queue.record", 8)
    assert CALLS == []


@pytest.mark.redis
def test_redis_mode_schedules_delayed_jobs(redis_app, redis_url):
    queue.enqueue(current_state(), record, 9, delay=60)
    rq_queue = _rq(redis_url)
    assert rq_queue.count == 0
    assert rq_queue.scheduled_job_registry.count == 1


@pytest.mark.redis
def test_run_job_executes_inside_an_app_context(redis_app, redis_url):
    queue.set_worker_app(redis_app)
    try:
        queue.run_job("tests.test_queue.record", 10)
    finally:
        queue.set_worker_app(None)
    assert CALLS == [("record", (10,), None, "tests")]


@pytest.mark.redis
def test_an_unreachable_redis_is_logged_not_raised(app_factory, caplog):
    app = app_factory(INTEGRATIONS_REDIS_URL="redis://127.0.0.1:1/0")
    with app.app_context(), caplog.at_level(logging.WARNING, "flask_integrations"):
        queue.enqueue(current_state(), record, 11)
    assert "could not enqueue tests.test_queue.record" in caplog.text
    assert CALLS == []
