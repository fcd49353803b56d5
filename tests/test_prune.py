"""Retention: `prune` and `flask integrations prune` (SPEC section 10, INTEGRATIONS_PRUNING)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flask_integrations.cli.retention import TerminalProgress
from flask_integrations.clock import utcnow
from flask_integrations.prune import PRUNED_TABLES, prune
from flask_integrations.state import current_state
from tests.conftest import reset_tables
from tests.helpers.app import db, make_app

NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
DAYS = {"requests": 90, "logs": 365, "idempotency_keys": 90, "sync_items": 30, "webhooks": 90}
ROOT = Path(__file__).resolve().parent.parent


def state_of(app: Any) -> Any:
    return app.extensions["integrations"].state_for(app)


def add(kind: str, integration_id: int, created_at: datetime, **columns: Any) -> int:
    """Insert one row of `kind` created at `created_at`; return its id."""
    table = current_state().tables[kind]
    values: dict[str, Any] = {"integration_id": integration_id, "created_at": created_at}
    values.update(_REQUIRED[kind](created_at))
    values.update(columns)
    row_id = db.session.execute(sa.insert(table).values(**values).returning(table.c.id)).scalar_one()
    db.session.commit()
    return row_id


_REQUIRED = {
    "requests": lambda at: {"endpoint": "tickets.json", "method": "GET"},
    "logs": lambda at: {"operation": "sync", "direction": "inbound", "status": "success"},
    "idempotency_keys": lambda at: {"key": f"key-{at.timestamp()}"},
    "sync_items": lambda at: {"event_class": "TicketSynced", "status": "success", "completed_at": at},
    "webhooks": lambda at: {"provider": "tickets", "payload": "{}", "status": "processed"},
}


def ids(kind: str) -> set[int]:
    table = current_state().tables[kind]
    return set(db.session.scalars(sa.select(table.c.id)))


def cutoff(kind: str) -> datetime:
    return NOW - timedelta(days=DAYS[kind])


@pytest.fixture
def app_small_chunks(app_factory):
    return app_factory(INTEGRATIONS_PRUNING={"chunk_size": 2})


# -- retention per table ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", PRUNED_TABLES)
def test_a_row_one_second_past_the_cutoff_goes_and_one_second_newer_stays(app, integration, kind):
    older = add(kind, integration.id, cutoff(kind) - SECOND)
    at_cutoff = add(kind, integration.id, cutoff(kind))
    newer = add(kind, integration.id, cutoff(kind) + SECOND)

    deleted = prune(app, now=NOW)

    assert deleted[kind] == 1
    assert older not in ids(kind)
    assert {at_cutoff, newer} <= ids(kind)


def test_every_table_uses_its_own_retention(app, integration):
    for kind in PRUNED_TABLES:
        add(kind, integration.id, NOW - timedelta(days=60))

    deleted = prune(app, now=NOW)

    assert deleted == {"requests": 0, "idempotency_keys": 0, "sync_items": 1, "webhooks": 0, "logs": 0}


def test_retention_days_come_from_the_pruning_setting(app_factory):
    app = app_factory(INTEGRATIONS_PRUNING={"requests_days": 7})
    with app.app_context():
        integration = app.extensions["integrations"].create("loose", "x", {})
        add("requests", integration.id, NOW - timedelta(days=8))
        add("requests", integration.id, NOW - timedelta(days=6))

        assert prune(app, now=NOW)["requests"] == 1
        db.session.remove()


def test_sync_items_age_from_completion_else_creation(app, integration):
    long_ago = cutoff("sync_items") - timedelta(days=10)
    completed_recently = add(
        "sync_items", integration.id, long_ago, completed_at=cutoff("sync_items") + SECOND
    )
    completed_long_ago = add("sync_items", integration.id, long_ago, completed_at=long_ago)
    no_completion = add("sync_items", integration.id, long_ago, status="skipped", completed_at=None)

    prune(app, now=NOW)

    assert ids("sync_items") == {completed_recently}
    assert completed_long_ago not in ids("sync_items") and no_completion not in ids("sync_items")


@pytest.mark.parametrize("status", ["failed", "pending", "processing"])
def test_sync_items_not_completed_successfully_are_kept(app, integration, status):
    kept = add("sync_items", integration.id, NOW - timedelta(days=1000), status=status, completed_at=None)
    add("sync_items", integration.id, NOW - timedelta(days=1000), status="skipped")

    assert prune(app, now=NOW)["sync_items"] == 1
    assert ids("sync_items") == {kept}


def test_only_processed_and_duplicate_webhooks_are_pruned(app, integration):
    old = NOW - timedelta(days=1000)
    kept = {add("webhooks", integration.id, old, status=s) for s in ("pending", "processing", "failed")}
    for status in ("processed", "duplicate"):
        add("webhooks", integration.id, old, status=status)

    assert prune(app, now=NOW)["webhooks"] == 2
    assert ids("webhooks") == kept


def test_pruned_logs_are_detached_from_kept_items_and_child_logs(app, integration):
    old_log = add("logs", integration.id, cutoff("logs") - SECOND)
    child = add("logs", integration.id, cutoff("logs") + SECOND, parent_id=old_log)
    failed_item = add("sync_items", integration.id, NOW - SECOND, status="failed", sync_log_id=old_log)

    prune(app, now=NOW)

    logs, items = state_of(app).tables["logs"], state_of(app).tables["sync_items"]
    assert db.session.scalar(sa.select(logs.c.parent_id).where(logs.c.id == child)) is None
    assert db.session.scalar(sa.select(items.c.sync_log_id).where(items.c.id == failed_item)) is None
    assert ids("logs") == {child}


def test_tables_limits_the_work(app, integration):
    for kind in PRUNED_TABLES:
        add(kind, integration.id, NOW - timedelta(days=1000))

    assert prune(app, now=NOW, tables=["logs", "requests"]) == {"requests": 1, "logs": 1}
    assert ids("webhooks") and ids("idempotency_keys")


def test_unknown_table_is_refused(app):
    with pytest.raises(ValueError, match="mappings"):
        prune(app, tables=["mappings"])


def test_now_must_be_timezone_aware(app):
    with pytest.raises(ValueError, match="timezone-aware"):
        prune(app, now=datetime(2026, 1, 1))


# -- chunks and dry run -------------------------------------------------------------------------


def count_deletes(app: Any) -> list[str]:
    seen: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE"):
            seen.append(statement)

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", listener)
    return seen


def test_each_chunk_is_one_delete_of_at_most_chunk_size_rows(app_small_chunks):
    app = app_small_chunks
    with app.app_context():
        integration = app.extensions["integrations"].create("loose", "x", {})
        old = [add("requests", integration.id, NOW - timedelta(days=100, seconds=i)) for i in range(5)]
        new = {add("requests", integration.id, NOW - timedelta(days=1, seconds=i)) for i in range(3)}
        old.append(add("requests", integration.id, NOW - timedelta(days=200)))  # after newer ids
        deletes = count_deletes(app)
        chunks: list[tuple[str, int]] = []

        deleted = prune(app, now=NOW, tables=["requests"], progress=lambda kind, n: chunks.append((kind, n)))

        assert deleted == {"requests": 6}
        assert len(deletes) == 3
        assert chunks == [("requests", 2), ("requests", 2), ("requests", 2)]
        assert ids("requests") == new
        db.session.remove()


def test_a_chunk_is_its_own_transaction(app_small_chunks):
    app = app_small_chunks
    with app.app_context():
        integration = app.extensions["integrations"].create("loose", "x", {})
        for i in range(5):
            add("requests", integration.id, NOW - timedelta(days=100, seconds=i))
        commits: list[int] = []
        sa.event.listen(db.engine, "commit", lambda conn: commits.append(1))

        prune(app, now=NOW, tables=["requests"])

        assert len(commits) == 3
        db.session.remove()


def test_dry_run_counts_and_deletes_nothing(app_small_chunks):
    app = app_small_chunks
    with app.app_context():
        integration = app.extensions["integrations"].create("loose", "x", {})
        for kind in PRUNED_TABLES:
            for i in range(3):
                add(kind, integration.id, NOW - timedelta(days=1000, seconds=i))
        before = {kind: ids(kind) for kind in PRUNED_TABLES}
        deletes = count_deletes(app)

        counted = prune(app, now=NOW, dry_run=True)

        assert counted == {kind: 3 for kind in PRUNED_TABLES}
        assert deletes == []
        assert {kind: ids(kind) for kind in PRUNED_TABLES} == before
        db.session.remove()


def test_terminal_progress_rewrites_one_line_per_table(app):
    stream = io.StringIO()
    progress = TerminalProgress(state_of(app), stream=stream)
    progress("requests", 1000)
    progress("requests", 500)
    progress("logs", 3)
    progress.close()

    assert stream.getvalue() == (
        "\rintegration_requests: 1,000 rows deleted\rintegration_requests: 1,500 rows deleted\n"
        "\rintegration_logs: 3 rows deleted\n"
    )


# -- the command ----------------------------------------------------------------------------------


def test_cli_prints_an_aligned_table_of_deleted_rows(app, integration):
    for days in (400, 200, 100):
        add("requests", integration.id, utcnow() - timedelta(days=days))
    add("logs", integration.id, utcnow() - timedelta(days=400))
    add("requests", integration.id, utcnow())

    result = app.test_cli_runner().invoke(args=["integrations", "prune"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "table                         deleted",
        "integration_requests                3",
        "integration_idempotency_keys        0",
        "integration_sync_items              0",
        "integration_webhooks                0",
        "integration_logs                    1",
        "total                               4",
    ]
    assert len(ids("requests")) == 1


def test_cli_dry_run_and_table_option(app, integration):
    add("requests", integration.id, utcnow() - timedelta(days=100))
    add("logs", integration.id, utcnow() - timedelta(days=400))

    result = app.test_cli_runner().invoke(args=["integrations", "prune", "--dry-run", "--table", "requests"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "Dry run: nothing was deleted.",
        "table                 would delete",
        "integration_requests             1",
        "total                            1",
    ]
    assert len(ids("requests")) == 1


def test_cli_is_quiet_off_a_terminal(app, integration):
    add("requests", integration.id, utcnow() - timedelta(days=100))

    result = app.test_cli_runner().invoke(args=["integrations", "prune"])

    assert result.exit_code == 0
    assert "\r" not in result.output and result.stderr == ""


def test_cli_rejects_an_unknown_table(app):
    result = app.test_cli_runner().invoke(args=["integrations", "prune", "--table", "mappings"])

    assert result.exit_code != 0
    assert "mappings" in result.output


def test_cli_database_error_is_one_line_and_exit_1(app, integration):
    with app.app_context():
        name = db.engine.dialect.identifier_preparer.quote(state_of(app).tables["idempotency_keys"].name)
        db.session.execute(sa.text(f"DROP TABLE {name}"))
        db.session.commit()

    result = app.test_cli_runner().invoke(args=["integrations", "prune", "--table", "idempotency_keys"])

    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: pruning stopped: ")
    assert "idempotency_keys" in lines[0]


# -- memory on PostgreSQL -----------------------------------------------------------------------

CHILD = """
import json, sys
from datetime import datetime
from pathlib import Path
from flask_integrations.prune import prune
from tests.helpers.app import make_app

app = make_app(sys.argv[1], INTEGRATIONS_PRUNING={"chunk_size": int(sys.argv[3])})
deleted = prune(app, now=datetime.fromisoformat(sys.argv[2]), tables=["requests"])
hwm = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:")]
print(json.dumps({"deleted": deleted["requests"], "peak_rss_kb": int(hwm[0].split()[1])}))
"""


def load_requests(app: Any, integration_id: int, rows: int) -> int:
    """Fill the requests table with `rows` rows, the older half past retention; return that half."""
    table = state_of(app).tables["requests"]
    old = rows // 2
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(sa.text(f'TRUNCATE "{table.name}"'))
        connection.execute(
            sa.text(
                f'INSERT INTO "{table.name}" (integration_id, endpoint, method, status_code, '
                "response_data, duration_ms, cache_hits, stale_hits, created_at, updated_at) "
                "SELECT :integration, 'tickets/' || g || '.json', 'GET', 200, '{\"id\": ' || g || '}',"
                " 40, 0, 0, t, t FROM generate_series(1, :rows) AS g, LATERAL (SELECT CASE WHEN g <= :old"
                " THEN :now - interval '120 days' ELSE :now - interval '10 days' END"
                " + g * interval '1 millisecond' AS t) AS stamp"
            ),
            {"integration": integration_id, "rows": rows, "old": old, "now": NOW},
        )
        connection.execute(sa.text(f'ANALYZE "{table.name}"'))
    return old


def prune_in_child(url: str, chunk_size: int) -> dict[str, int]:
    output = subprocess.run(
        [sys.executable, "-c", CHILD, url, NOW.isoformat(), str(chunk_size)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.postgres
def test_memory_stays_flat_on_a_million_rows(postgres_url):
    app = make_app(postgres_url)
    with app.app_context():
        reset_tables()
        integration_id = app.extensions["integrations"].create("loose", "bulk", {}).id
        db.session.remove()
    requests = state_of(app).tables["requests"]

    runs = {}
    for rows in (100_000, 1_000_000):
        old = load_requests(app, integration_id, rows)
        runs[rows] = prune_in_child(postgres_url, chunk_size=10_000)
        assert runs[rows]["deleted"] == old
        with app.app_context(), db.engine.connect() as connection:
            left = connection.execute(
                sa.select(sa.func.count(), sa.func.min(requests.c.created_at)).select_from(requests)
            ).one()
        assert left[0] == rows - old
        assert left[1] > NOW - timedelta(days=90)

    small, big = (runs[n]["peak_rss_kb"] / 1024 for n in (100_000, 1_000_000))
    print(f"prune peak RSS: {small:.1f} MB at 100,000 rows, {big:.1f} MB at 1,000,000 rows")
    assert big < 150, f"peak RSS {big:.1f} MB"
    assert abs(big - small) < 5, f"peak RSS grew from {small:.1f} MB to {big:.1f} MB with 10x the rows"
