"""Providers and handlers of the sync tests, importable by worker processes (tests.helpers.sync_app)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import sqlalchemy as sa

from flask_integrations import (
    IncrementalSync,
    IntegrationLog,
    IntegrationSyncItem,
    Limit,
    Provider,
    ScheduledSync,
    on_sync_item,
)
from tests.helpers.app import db

#: how many items `Feed` dispatches (read per run, so a test can change it)
ITEMS = {"count": 20}
#: external ids whose handler raises, with how many more times
FAILING: dict[str, int] = {}
#: set to make the enumeration raise
BROKEN = {"enumeration": False}


class Feed(Provider, IncrementalSync):
    """Dispatches `count` items past the cursor, checkpoint = item number."""

    sync_interval = 10

    def sync_incremental(self, integration: Any, session: Any) -> None:
        if BROKEN["enumeration"]:
            raise RuntimeError("upstream is down")
        start = session.cursor or 0
        count = int(os.environ.get("SYNC_TEST_ITEMS", ITEMS["count"]))
        for n in range(start + 1, start + count + 1):
            session.dispatch("feed.entry", {"n": n}, checkpoint=n, external_id=f"e{n}")


def record(db: Any, integration: Any, payload: dict) -> None:
    """The handler's idempotent side effect: one row per entry in `sync_seen`."""
    n = payload["n"]
    marker_dir = os.environ.get("SYNC_TEST_FAIL_ONCE_DIR")
    if marker_dir and f"e{n}" in os.environ.get("SYNC_TEST_FAIL_ONCE", "").split(","):
        marker = os.path.join(marker_dir, f"e{n}.failed")
        if not os.path.exists(marker):  # fails on its first attempt in any process
            open(marker, "w").close()
            raise ValueError(f"entry {n} is malformed")
    if FAILING.get(f"e{n}"):
        FAILING[f"e{n}"] -= 1
        raise ValueError(f"entry {n} is malformed")
    if os.environ.get("SYNC_TEST_SLOW"):
        import time

        time.sleep(float(os.environ["SYNC_TEST_SLOW"]))
    db.session.execute(
        sa.text("INSERT INTO sync_seen (n, pid) VALUES (:n, :pid)"), {"n": n, "pid": os.getpid()}
    )


class CallingFeed(Feed):
    """Asks the (SDK) upstream how many entries there are before dispatching: one request row per run."""

    def sync_incremental(self, integration: Any, session: Any) -> None:
        ITEMS["count"] = integration.at("entries.count").get(lambda: 3)
        super().sync_incremental(integration, session)


#: how Backfill pages (read per run; worker processes read SYNC_TEST_PAGES, ..._BREAK_AT, ..._HANG_AT)
BACKFILL: dict[str, Any] = {"pages": 5, "per_page": 10, "break_at": None}
#: the `session.position` each Backfill run started at, in this process
STARTS: list[Any] = []


class Limited(ScheduledSync, Provider):
    """Five items whose handler GETs the URL in SYNC_TEST_UPSTREAM, at most two a second."""

    sync_interval = 60
    rate_limit = [Limit(2, per="second")]

    def sync(self, integration: Any, session: Any) -> None:
        for n in range(5):
            session.dispatch("limited.entry", {"n": n}, external_id=f"e{n}")

    @on_sync_item("limited.entry")
    def fetch(self, integration: Any, payload: dict) -> None:
        integration.at("entry").with_attempts(1).get(os.environ["SYNC_TEST_UPSTREAM"])


class Backfill(Provider, ScheduledSync):
    """Lists `pages` pages of `per_page` entries, saving its position (the page) after each; raises
    on page `break_at`, or hangs there (SYNC_TEST_HANG_AT) until the test kills its worker."""

    def sync(self, integration: Any, session: Any) -> None:
        import time

        pages = int(os.environ.get("SYNC_TEST_PAGES", BACKFILL["pages"]))
        per_page = BACKFILL["per_page"]
        break_at = os.environ.get("SYNC_TEST_BREAK_AT") or BACKFILL["break_at"]
        hang_at = os.environ.get("SYNC_TEST_HANG_AT")
        STARTS.append(session.position)
        for page in range((session.position or 0) + 1, pages + 1):
            if hang_at and page == int(hang_at):
                time.sleep(600)
            if break_at and page == int(break_at):
                raise RuntimeError(f"page {page} timed out upstream")
            for k in range(1, per_page + 1):
                n = (page - 1) * per_page + k
                session.dispatch("feed.entry", {"n": n}, checkpoint=n, external_id=f"e{n}")
            session.save_position(page)


def create_seen_table() -> None:
    """The table `record` writes to, empty."""
    with db.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS sync_seen"))
        connection.execute(sa.text("CREATE TABLE sync_seen (n INTEGER NOT NULL, pid INTEGER)"))


def seen() -> list[int]:
    return sorted(db.session.execute(sa.text("SELECT n FROM sync_seen")).scalars())


def runs(integration_id: int) -> list[IntegrationLog]:
    return list(
        db.session.scalars(
            sa.select(IntegrationLog)
            .where(IntegrationLog.integration_id == integration_id, IntegrationLog.operation == "sync")
            .order_by(IntegrationLog.id)
        )
    )


def items(status: str | None = None) -> list[IntegrationSyncItem]:
    query = sa.select(IntegrationSyncItem).order_by(IntegrationSyncItem.id)
    if status:
        query = query.where(IntegrationSyncItem.status == status)
    return list(db.session.scalars(query))


def refreshed(integration: Any) -> Any:
    db.session.expire_all()
    return db.session.get(type(integration), integration.id)


ROOT = Path(__file__).resolve().parents[2]


def worker_env(database_url: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a `flask integrations ...` process on tests.helpers.sync_app."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FLASK_APP": "tests.helpers.sync_app:create_app",
        "SYNC_TEST_DATABASE_URL": database_url,
        "SYNC_TEST_REDIS_URL": redis_url or "",
    }
    for name in ("SYNC_TEST_SLOW", "SYNC_TEST_HANG_AT", "SYNC_TEST_BREAK_AT", "SYNC_TEST_PAGES"):
        env.pop(name, None)
    env.update(extra)
    return env


def flask_command(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """`flask integrations <args>` in a process group of its own (a test may kill it whole)."""
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "integrations", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_ok(process: subprocess.Popen, timeout: float = 90) -> tuple[str, str]:
    """Wait for a process and assert that it exited 0."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out, err


def sync_test_app(database_url: str, redis_url: str | None = None, **extra: str) -> Any:
    """tests.helpers.sync_app's app in this process, configured as `worker_env` configures a worker's.

    `create_app` reads its settings from the environment (as `flask --app` loads it in a worker);
    they are set only while it runs (`patch.dict` puts the environment back as it was).
    """
    from tests.helpers.sync_app import create_app  # it imports this module

    settings = {
        "SYNC_TEST_DATABASE_URL": database_url,
        **({"SYNC_TEST_REDIS_URL": redis_url} if redis_url else {}),
        **extra,
    }
    with mock.patch.dict(os.environ, settings):
        return create_app()
