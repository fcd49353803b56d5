"""Providers and handlers of the sync tests, importable by worker processes (tests.helpers.sync_app)."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

from flask_integrations import IncrementalSync, Provider

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
