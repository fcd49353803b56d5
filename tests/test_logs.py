"""Operation logs: writing, finishing, signals, query helpers, logging context, request timeline."""

from __future__ import annotations

import logging
import multiprocessing
from datetime import timedelta

import pytest
import sqlalchemy as sa

from flask_integrations import Integration, IntegrationLog, signals
from flask_integrations.clock import utcnow
from flask_integrations.logs import (
    IntegrationContextFilter,
    append_request_ids,
    collect_request_ids,
    current_operation,
    install_context_filter,
    operation_context,
)
from tests.conftest import reset_tables
from tests.helpers.app import db, make_app
from tests.helpers.processes import run_to_completion

SECRET = "sk-live-123"


@pytest.fixture
def events(app):
    seen = []
    receivers = {}
    for name in ("operation_started", "operation_completed", "operation_failed"):

        def receive(sender, _name=name, **kw):
            assert sender is app
            seen.append((_name, kw["log"].id, kw["integration"].id))

        receivers[name] = receive
        getattr(signals, name).connect(receive)
    yield seen
    for name, receive in receivers.items():
        getattr(signals, name).disconnect(receive)


def stored(log_id: int):
    """The log row as another connection sees it (i.e. committed)."""
    table = db.metadata.tables["integration_logs"]
    with db.engine.connect() as connection:
        return connection.execute(sa.select(table).where(table.c.id == log_id)).first()


def hold_sqlite_write_lock() -> None:
    db.session.add(Integration(provider="loose", name="unsaved work", credentials={}))
    db.session.flush()


# -- writing ---------------------------------------------------------------------------------------


def test_log_operation_commits_and_returns_a_persistent_log(integration):
    log = integration.log_operation("sync", "inbound", "processing", summary="Started", external_id=42)
    assert sa.inspect(log).persistent and log in db.session
    row = stored(log.id)
    assert (row.operation, row.direction, row.status, row.summary, row.external_id) == (
        "sync",
        "inbound",
        "processing",
        "Started",
        "42",
    )
    assert log.integration is integration
    assert log.created_at.tzinfo is not None


def test_log_survives_the_callers_rollback(integration):
    log = integration.log_operation("import", "outbound", "failed", error="boom")
    db.session.rollback()
    assert stored(log.id) is not None
    assert log.status == "failed"


def test_direction_must_be_inbound_or_outbound(integration):
    with pytest.raises(ValueError, match="direction must be 'inbound' or 'outbound'"):
        integration.log_operation("sync", "sideways", "success")


def test_operation_and_status_must_be_non_empty(integration):
    with pytest.raises(ValueError, match="operation"):
        integration.log_operation("", "inbound", "success")
    with pytest.raises(ValueError, match="status"):
        integration.log_operation("sync", "inbound", " ")


def test_summary_and_external_id_are_cut_to_their_columns(integration):
    log = integration.log_operation("sync", "inbound", "success", summary="s" * 300, external_id="e" * 600)
    row = stored(log.id)
    assert (len(row.summary), len(row.external_id)) == (255, 500)


def test_credential_values_are_scrubbed_from_everything_stored(integration):
    log = integration.log_operation(
        "sync",
        "outbound",
        "failed",
        summary=f"called with {SECRET}",
        error=RuntimeError(f"401 for key {SECRET}"),
        metadata={"note": f"key={SECRET}", "password": "hunter22"},
        result_data=[f"echo {SECRET}"],
    )
    row = stored(log.id)
    assert SECRET not in repr(tuple(row))
    assert row.summary == "called with [REDACTED]"
    assert row.error == "RuntimeError: 401 for key [REDACTED]"
    assert row.metadata == {"note": "key=[REDACTED]", "password": "[REDACTED]"}
    assert row.result_data == ["echo [REDACTED]"]


def test_duration_is_stored_in_whole_milliseconds(integration):
    assert (
        stored(integration.log_operation("sync", "inbound", "success", duration_ms=12.6).id).duration_ms == 13
    )
    with pytest.raises(ValueError, match="duration_ms"):
        integration.log_operation("sync", "inbound", "success", duration_ms=-1)


def test_children_and_parent(integration):
    run = integration.log_operation("sync", "inbound", "processing")
    first = integration.log_operation("page", "inbound", "success", parent=run)
    second = integration.log_operation("page", "inbound", "failed", parent=run.id)
    db.session.expire_all()
    assert run.children == [first, second]
    assert second.parent is run and run.parent is None


def test_parent_of_another_integration_is_refused(integration, ext):
    other = ext.create("loose", "Other", {})
    run = other.log_operation("sync", "inbound", "processing")
    with pytest.raises(ValueError, match="belongs to integration"):
        integration.log_operation("page", "inbound", "success", parent=run)


def test_log_inside_a_sqlite_write_transaction_follows_the_callers_rollback(
    integration, events, database_url
):
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL writes the log on its own connection even then")
    hold_sqlite_write_lock()
    log = integration.log_operation("sync", "inbound", "processing")
    log_id = log.id
    assert events == []
    db.session.rollback()
    assert stored(log_id) is None
    assert events == []


def test_log_inside_a_sqlite_write_transaction_signals_after_the_callers_commit(
    integration, events, database_url
):
    hold_sqlite_write_lock()
    log = integration.log_operation("sync", "inbound", "processing")
    if database_url.startswith("sqlite"):
        assert events == []
    db.session.commit()
    assert events == [("operation_started", log.id, integration.id)]
    assert stored(log.id).status == "processing"


# -- signals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "signal"),
    [
        ("processing", "operation_started"),
        ("success", "operation_completed"),
        ("failed", "operation_failed"),
    ],
)
def test_each_status_sends_its_signal(integration, events, status, signal):
    log = integration.log_operation("sync", "inbound", status)
    assert events == [(signal, log.id, integration.id)]


def test_other_statuses_send_no_signal(integration, events):
    integration.log_operation("sync", "inbound", "partial")
    assert events == []


def test_signal_is_sent_after_the_row_is_committed(app, integration):
    seen = []

    def receive(sender, log, integration):
        seen.append(stored(log.id) is not None)

    signals.operation_completed.connect(receive)
    try:
        integration.log_operation("sync", "inbound", "success")
    finally:
        signals.operation_completed.disconnect(receive)
    assert seen == [True]


# -- finishing -------------------------------------------------------------------------------------


def test_finish_ends_a_processing_log_and_sends_the_signal(integration, events):
    log = integration.log_operation("sync", "inbound", "processing")
    assert log.finish("success", summary="12 issues", result_data={"count": 12}) is True
    row = stored(log.id)
    assert (row.status, row.summary, row.result_data) == ("success", "12 issues", {"count": 12})
    assert log.status == "success"
    assert events[-1] == ("operation_completed", log.id, integration.id)


def test_finish_of_a_log_no_longer_processing_does_nothing(integration, events):
    log = integration.log_operation("sync", "inbound", "processing")
    assert log.finish("failed", error="timeout") is True
    assert log.finish("success") is False
    assert stored(log.id).status == "failed"
    assert [name for name, *_ in events] == ["operation_started", "operation_failed"]


def test_finish_needs_a_final_status(integration):
    log = integration.log_operation("sync", "inbound", "processing")
    with pytest.raises(ValueError, match="final status"):
        log.finish("processing")


def test_finish_merges_metadata_and_keeps_appended_request_ids(integration):
    log = integration.log_operation("sync", "inbound", "processing", metadata={"cursor": "a", "page": 1})
    append_request_ids(log.id, [7, 8])
    log.finish("success", metadata={"page": 3, "totals": {"items": 5}})
    assert stored(log.id).metadata == {
        "cursor": "a",
        "page": 3,
        "totals": {"items": 5},
        "request_ids": [7, 8],
    }


def test_finish_measures_the_duration_since_creation_by_default(integration):
    log = integration.log_operation("sync", "inbound", "processing")
    db.session.execute(
        sa.update(db.metadata.tables["integration_logs"])
        .where(db.metadata.tables["integration_logs"].c.id == log.id)
        .values(created_at=utcnow() - timedelta(seconds=3))
    )
    db.session.commit()
    log.finish("success")
    assert 3000 <= stored(log.id).duration_ms < 13000


def test_finish_scrubs_credentials(integration):
    log = integration.log_operation("sync", "inbound", "processing")
    log.finish("failed", error=f"rejected {SECRET}")
    assert stored(log.id).error == "rejected [REDACTED]"


# -- query helpers ---------------------------------------------------------------------------------


@pytest.fixture
def history(integration):
    """Two sync runs (one failed, with a failed page), an import, and a sync from two days ago."""
    ok = integration.log_operation("sync", "inbound", "success")
    bad = integration.log_operation("sync", "inbound", "failed")
    page = integration.log_operation("page", "inbound", "failed", parent=bad)
    imported = integration.log_operation("import", "outbound", "success")
    old = integration.log_operation("sync", "inbound", "failed")
    table = db.metadata.tables["integration_logs"]
    db.session.execute(
        sa.update(table).where(table.c.id == old.id).values(created_at=utcnow() - timedelta(days=2))
    )
    db.session.commit()
    return {"ok": ok.id, "bad": bad.id, "page": page.id, "import": imported.id, "old": old.id}


def ids(select) -> set[int]:
    return {log.id for log in db.session.scalars(select)}


def test_successful_and_failed(history):
    assert ids(IntegrationLog.successful()) == {history["ok"], history["import"]}
    assert ids(IntegrationLog.failed()) == {history["bad"], history["page"], history["old"]}


def test_for_operation_top_level_and_recent(history):
    assert ids(IntegrationLog.for_operation("import")) == {history["import"]}
    assert history["page"] not in ids(IntegrationLog.top_level())
    assert history["old"] not in ids(IntegrationLog.recent(24))
    assert history["old"] in ids(IntegrationLog.recent(72))


def test_helpers_chain_in_any_order(history):
    expected = {history["bad"]}
    assert ids(IntegrationLog.failed().for_operation("sync").top_level().recent(1)) == expected
    assert ids(IntegrationLog.recent(1).top_level().for_operation("sync").failed()) == expected
    assert (
        ids(IntegrationLog.top_level().failed().where(IntegrationLog.operation == "sync").recent(1))
        == expected
    )


def test_helpers_are_selects_for_db_paginate(history, app):
    with app.test_request_context("/?page=2"):
        page = db.paginate(IntegrationLog.failed().order_by(IntegrationLog.id), per_page=2)
    assert isinstance(IntegrationLog.failed(), sa.Select)
    assert page.total == 3 and [log.id for log in page.items] == [history["old"]]


def test_for_integration(history, integration, ext):
    other = ext.create("loose", "Other", {})
    theirs = other.log_operation("sync", "inbound", "failed")
    assert ids(IntegrationLog.failed().for_integration(other)) == {theirs.id}
    assert theirs.id not in ids(IntegrationLog.for_integration(integration.id))


# -- logging context -------------------------------------------------------------------------------


@pytest.fixture
def records():
    captured: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Collect()
    package_logger = logging.getLogger("flask_integrations")
    package_logger.addHandler(handler)
    previous = package_logger.level
    package_logger.setLevel(logging.INFO)
    yield captured
    package_logger.removeHandler(handler)
    package_logger.setLevel(previous)


def test_package_records_carry_the_operation_context(integration, records):
    with operation_context(integration, "sync"):
        logging.getLogger("flask_integrations").info("fetching")
    record = records[-1]
    assert (record.integration_id, record.integration_provider, record.integration_operation) == (
        integration.id,
        "tickets",
        "sync",
    )


def test_records_outside_a_context_carry_none(records):
    logging.getLogger("flask_integrations").info("idle")
    record = records[-1]
    assert (record.integration_id, record.integration_provider, record.integration_operation) == (None,) * 3


def test_contexts_nest_and_restore(integration, ext):
    other = ext.create("loose", "Other", {})
    with operation_context(integration, "sync"):
        with operation_context(other, "webhook"):
            assert current_operation()["integration_id"] == other.id
        assert current_operation() == {
            "integration_id": integration.id,
            "integration_provider": "tickets",
            "integration_operation": "sync",
        }
    assert current_operation()["integration_id"] is None


def test_filter_on_a_users_handler_annotates_the_users_own_records(integration):
    captured = []

    class Collect(logging.Handler):
        def emit(self, record):
            captured.append(self.format(record))

    handler = Collect()
    handler.setFormatter(logging.Formatter("%(integration_provider)s/%(integration_operation)s %(message)s"))
    install_context_filter(handler)
    install_context_filter(handler)  # idempotent
    user_logger = logging.getLogger("myapp.handlers")
    user_logger.addHandler(handler)
    user_logger.setLevel(logging.INFO)
    try:
        with operation_context(integration, "webhook"):
            user_logger.info("ticket updated")
        user_logger.info("outside")
    finally:
        user_logger.removeHandler(handler)
    assert captured == ["tickets/webhook ticket updated", "None/None outside"]
    assert sum(isinstance(f, IntegrationContextFilter) for f in handler.filters) == 1


def test_values_passed_as_extra_are_kept(integration, records):
    with operation_context(integration, "sync"):
        logging.getLogger("flask_integrations").info("x", extra={"integration_operation": "page"})
    assert records[-1].integration_operation == "page"


# -- request timeline ------------------------------------------------------------------------------


def test_collect_request_ids_gathers_the_rows_written_inside(integration):
    integration.at("before").post(lambda: {"ok": True})
    with collect_request_ids() as outer:
        integration.at("one").post(lambda: {"ok": 1})
        with collect_request_ids() as inner:
            integration.at("two").post(lambda: {"ok": 2})
    integration.at("after").post(lambda: {"ok": True})
    table = db.metadata.tables["integration_requests"]
    rows = dict(db.session.execute(sa.select(table.c.endpoint, table.c.id)).all())
    assert outer == [rows["one"], rows["two"]]
    assert inner == [rows["two"]]


def test_append_request_ids_keeps_order_and_the_first_ids_up_to_the_cap(integration):
    log = integration.log_operation("sync", "inbound", "processing", metadata={"cursor": "x"})
    append_request_ids(log, [1, 2, 3], cap=5)
    append_request_ids(log.id, [4, 5, 6, 7], cap=5)
    append_request_ids(log.id, [8], cap=5)
    assert stored(log.id).metadata == {"cursor": "x", "request_ids": [1, 2, 3, 4, 5]}
    assert log.metadata["request_ids"] == [1, 2, 3, 4, 5]


def test_append_request_ids_to_a_log_without_metadata(integration):
    log = integration.log_operation("sync", "inbound", "processing")
    log.append_request_ids([10, 11])
    assert stored(log.id).metadata == {"request_ids": [10, 11]}


def test_appended_ids_survive_the_callers_rollback(integration):
    log = integration.log_operation("sync", "inbound", "processing")
    hold_sqlite_write_lock()
    append_request_ids(log.id, [1, 2])
    db.session.rollback()
    assert stored(log.id).metadata == {"request_ids": [1, 2]}


def _append_worker(database_url: str, log_id: int, worker: int, batch: int) -> None:
    app = make_app(database_url)
    with app.app_context():
        for n in range(50):
            start = (worker * 50 + n) * batch
            append_request_ids(log_id, list(range(start, start + batch)))
        db.session.remove()


def _race_appends(postgres_url: str, batch: int) -> list[int]:
    app = make_app(postgres_url)
    with app.app_context():
        reset_tables()
        integration = app.extensions["integrations"].create("loose", "Shared", {})
        log_id = integration.log_operation("sync", "inbound", "processing").id
        db.session.remove()
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_append_worker, args=(postgres_url, log_id, w, batch)) for w in range(4)]
    run_to_completion(workers, 120)
    with app.app_context():
        return stored(log_id).metadata["request_ids"]


@pytest.mark.slow
def test_concurrent_appends_under_the_cap_lose_no_id(server_database_url):
    request_ids = _race_appends(server_database_url, batch=1)
    assert sorted(request_ids) == list(range(200))


@pytest.mark.slow
def test_concurrent_appends_stop_exactly_at_the_cap(server_database_url):
    request_ids = _race_appends(server_database_url, batch=10)
    assert len(request_ids) == 1000 and len(set(request_ids)) == 1000
    batches = [request_ids[i : i + 10] for i in range(0, 1000, 10)]
    assert all(
        b == list(range(b[0], b[0] + 10)) and b[0] % 10 == 0 for b in batches
    )  # whole appends, in order
