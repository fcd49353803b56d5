"""Request rows written behind the call, on PostgreSQL and SQLite (flask_integrations/pipeline/writer.py)."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import sqlalchemy as sa

from flask_integrations import IntegrationRequest, Provider, signals
from flask_integrations.clock import utcnow
from flask_integrations.pipeline import writer as writer_module
from flask_integrations.state import current_state
from tests.helpers.app import db
from tests.helpers.processes import run_to_completion


class Api(Provider):
    pass


@pytest.fixture
def api(app, ctx):
    ext = app.extensions["integrations"]
    ext.register("api", Api)
    return ext.create("api", "API", {})


#: MySQL and MariaDB have no writer thread: their request rows are written in line (see
#: `pipeline.rows.id_reserver`), which `test_mysql_writes_each_row_before_the_call_returns` proves.
writer_databases = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def slow_writer(monkeypatch):
    """Each batch waits 0.3 s before it is written, so a missing wait would read nothing."""
    write = writer_module.RowWriter._write

    def slow(self, batch):
        time.sleep(0.3)
        write(self, batch)

    monkeypatch.setattr(writer_module.RowWriter, "_write", slow)


def committed_rows(integration_id: int) -> int:
    """Count through a connection of its own: what every other process sees."""
    engine = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            table = IntegrationRequest.__table__
            return connection.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.integration_id == integration_id)
            ).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def held_writer(monkeypatch):
    """Each batch waits until the test releases it (at most 10 s), so no timing is involved."""
    write = writer_module.RowWriter._write
    release = threading.Event()
    held_to_the_end = []

    def held(self, batch):
        held_to_the_end.append(not release.wait(10))
        write(self, batch)

    monkeypatch.setattr(writer_module.RowWriter, "_write", held)
    yield release, held_to_the_end
    release.set()


@writer_databases
def test_the_call_returns_before_its_row_is_written(api, upstream_server, held_writer):
    release, held_to_the_end = held_writer
    api.at("ping").get(upstream_server.url + "/json")
    assert committed_rows(api.id) == 0
    release.set()
    writer_module.wait_for_all_rows()
    assert committed_rows(api.id) == 1
    assert held_to_the_end == [False], "the call waited for its row's write"


def test_a_query_of_the_same_thread_reads_the_row(api, upstream_server, slow_writer):
    api.at("ping").get(upstream_server.url + "/json")
    count = db.session.scalar(sa.select(sa.func.count()).select_from(IntegrationRequest))
    assert count == 1


def test_the_id_given_to_the_caller_is_the_stored_id(api, upstream_server):
    ids = []
    with signals.request_completed.connected_to(lambda sender, request_id, **_: ids.append(request_id)):
        api.at("ping").get(upstream_server.url + "/json")
        api.at("ping").get(upstream_server.url + "/json")
    writer_module.wait_for_all_rows()
    assert db.session.scalars(sa.select(IntegrationRequest.id).order_by(IntegrationRequest.id)).all() == ids


def test_the_end_of_the_app_context_waits_for_its_rows(app, upstream_server, slow_writer):
    with app.app_context():
        ext = app.extensions["integrations"]
        ext.register("api", Api)
        integration = ext.create("api", "API", {})
        integration_id = integration.id
        integration.at("ping").get(upstream_server.url + "/json")
        db.session.remove()
    assert committed_rows(integration_id) == 1


def test_signal_receivers_see_the_committed_row(api, upstream_server, slow_writer):
    seen = []

    def receiver(sender, request_id, **_):
        seen.append((request_id, committed_rows(api.id)))

    with signals.request_completed.connected_to(receiver):
        api.at("ping").get(upstream_server.url + "/json")
    assert seen and seen[0][1] == 1


@pytest.fixture
def body_threads(monkeypatch) -> list[str]:
    """The threads that redacted a body, in order."""
    from flask_integrations.pipeline import record

    threads: list[str] = []
    prepare = record.prepare_body

    def noting(data, **options):
        if data is not None:
            threads.append(threading.current_thread().name)
        return prepare(data, **options)

    monkeypatch.setattr(record, "prepare_body", noting)
    return threads


@writer_databases
def test_the_response_body_is_redacted_in_the_writer_thread(api, upstream_server, body_threads):
    api.at("ping").get(upstream_server.url + "/json")
    writer_module.wait_for_all_rows()
    assert body_threads == ["flask-integrations-rows"]  # the call did not wait for it


def test_a_response_body_over_the_stored_maximum_is_cut_before_it_is_queued(
    app_factory, upstream_server, body_threads
):
    app = app_factory(INTEGRATIONS_LOG_BODY_MAX_BYTES=10)
    with app.app_context():
        ext = app.extensions["integrations"]
        ext.register("api", Api)
        ext.create("api", "API", {}).at("ping").get(upstream_server.url + "/json")
        assert body_threads == [threading.current_thread().name]  # queued rows stay small
        db.session.remove()


def test_the_stored_response_is_the_one_received_though_the_caller_changes_it(
    api, upstream_server, slow_writer
):
    value = api.at("ping").get(upstream_server.url + "/json")
    value["path"] = "changed by the caller"
    stored = db.session.scalars(sa.select(IntegrationRequest.response_data)).one()
    assert json.loads(stored)["path"] == "/json"


@writer_databases
def test_a_refused_row_is_logged_and_its_batch_neighbours_are_written(api, caplog):
    state = current_state()
    table = state.tables["requests"]
    writer = writer_module.writer_for(state)
    gate = threading.Event()
    original = writer_module.RowWriter._write

    def gated(self, batch):
        gate.wait(5)
        original(self, batch)

    base = {
        **{c.name: None for c in table.columns if c.name != "id"},
        "endpoint": "e",
        "method": "GET",
        "cache_hits": 0,
        "stale_hits": 0,
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }
    with caplog.at_level(logging.ERROR, logger="flask_integrations"):
        writer_module.RowWriter._write = gated
        try:
            good_1 = writer.submit({**base, "integration_id": api.id})
            bad = writer.submit({**base, "integration_id": api.id, "endpoint": None})  # NOT NULL
            good_2 = writer.submit({**base, "integration_id": api.id})
            gate.set()
            assert writer.wait_for()
        finally:
            writer_module.RowWriter._write = original
    stored = set(db.session.scalars(sa.select(IntegrationRequest.id)).all())
    assert {good_1, good_2} <= stored and bad not in stored
    assert f"request row {bad}" in caplog.text


@pytest.mark.parametrize("database_url", [pytest.param("mariadb", marks=pytest.mark.mysql)], indirect=True)
def test_mysql_writes_each_row_before_the_call_returns(api, upstream_server):
    assert writer_module.writer_for(current_state()) is None
    ids = []
    with signals.request_completed.connected_to(lambda sender, request_id, **_: ids.append(request_id)):
        for n in range(1, 4):
            api.at(f"ping-{n}").get(upstream_server.url + "/json")
            assert committed_rows(api.id) == n  # seen by another connection at once
    table = IntegrationRequest.__table__
    stored = dict(db.session.execute(sa.select(table.c.endpoint, table.c.id)).all())
    assert stored == {"ping-1": ids[0], "ping-2": ids[1], "ping-3": ids[2]}


# -- SQLite: one writer at a time ------------------------------------------------------------

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _begin_on_first_statement(engine: sa.Engine) -> None:
    """SQLAlchemy's recipe for real SQLite transactions: a read opens the transaction too."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN")

    engine.dispose()


@sqlite_only
def test_a_call_inside_a_read_then_write_transaction_does_not_break_it(api, upstream_server):
    """A row committed between the transaction's read and its write would make the write fail
    (SQLITE_BUSY_SNAPSHOT); the call's row waits for the transaction instead."""
    from flask_integrations import Integration

    _begin_on_first_statement(db.engine)
    writer = writer_module.writer_for(current_state())
    queued = writer.queued
    integration = db.session.get(Integration, api.id)  # the transaction's snapshot starts here
    integration.at("ping").get(upstream_server.url + "/json")
    assert writer.queued == queued  # the row waits for the transaction, not for the writer
    writer_module.wait_for_all_rows()  # a queued row would be committed now, under the snapshot
    integration.name = "renamed"
    db.session.commit()
    assert committed_rows(api.id) == 1
    assert db.session.get(Integration, api.id).name == "renamed"


@sqlite_only
def test_two_processes_reserve_ids_that_never_collide(app, api, upstream_server):
    import multiprocessing

    db.session.commit()
    context = multiprocessing.get_context("spawn")
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    processes = [
        context.Process(target=_make_calls, args=(url, api.id, upstream_server.url + "/json", 150))
        for _ in range(2)
    ]
    run_to_completion(processes, 60)
    api.at("ping").get(upstream_server.url + "/json")  # and this process, after both
    stored = db.session.scalars(sa.select(IntegrationRequest.id)).all()
    assert len(stored) == len(set(stored)) == 301


def _make_calls(database_url: str, integration_id: int, url: str, calls: int) -> None:
    from flask_integrations import Integration
    from tests.helpers.app import make_app

    app = make_app(database_url)
    with app.app_context():
        app.extensions["integrations"].register("api", Api)
        integration = db.session.get(Integration, integration_id)
        for _ in range(calls):
            integration.at("ping").get(url)


@sqlite_only
def test_a_requests_table_without_autoincrement_gets_its_rows_in_line(api, upstream_server, slow_writer):
    """A table made before the requests table was AUTOINCREMENT cannot reserve ids safely."""
    table = IntegrationRequest.__table__
    with db.engine.begin() as connection:
        ddl = connection.scalar(sa.text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": table.name})
        connection.execute(sa.text(f'DROP TABLE "{table.name}"'))
        connection.execute(sa.text(ddl.replace("AUTOINCREMENT", "")))
    state = current_state()
    assert writer_module.writer_for(state) is None
    api.at("ping").get(upstream_server.url + "/json")
    assert committed_rows(api.id) == 1  # written before the call returned, not by the slow writer


@sqlite_only
def test_a_batch_that_finds_the_database_locked_is_written_once_it_is_free(
    app_factory, upstream_server, caplog
):
    import sqlite3

    app = app_factory(SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"timeout": 0.05}})
    with app.app_context():
        ext = app.extensions["integrations"]
        ext.register("api", Api)
        api = ext.create("api", "API", {})
        api.at("ping").get(upstream_server.url + "/json")  # reserves this process's ids
        writer_module.wait_for_all_rows()
        holder = sqlite3.connect(db.engine.url.database, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # another process's long write
        release = threading.Timer(0.6, lambda: holder.execute("COMMIT"))
        release.start()
        with caplog.at_level(logging.ERROR, logger="flask_integrations"):
            api.at("ping").get(upstream_server.url + "/json")
            assert writer_module.wait_for_all_rows() is None
        release.join()
        holder.close()
        assert committed_rows(api.id) == 2
        assert "could not write" not in caplog.text
        db.session.remove()
