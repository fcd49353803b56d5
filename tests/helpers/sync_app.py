"""The app worker processes of the sync tests load (FLASK_APP=tests.helpers.sync_app:create_app)."""

from __future__ import annotations

import os

from tests.helpers.app import db, make_app
from tests.helpers.sync import Backfill, Feed, Limited, record


def create_app():
    app = make_app(
        os.environ["SYNC_TEST_DATABASE_URL"],
        INTEGRATIONS_PROVIDERS={"feed": Feed, "backfill": Backfill, "limited": Limited},
        INTEGRATIONS_RATE_LIMIT_MAX_WAIT=0,
        INTEGRATIONS_REDIS_URL=os.environ.get("SYNC_TEST_REDIS_URL") or None,
        INTEGRATIONS_SYNC={
            "items_per_job": int(os.environ.get("SYNC_TEST_PER_JOB", "50")),
            "item_backoff": [int(os.environ.get("SYNC_TEST_BACKOFF", "10"))],
            "item_tries": int(os.environ.get("SYNC_TEST_TRIES", "5")),
        },
    )
    integrations = app.extensions["integrations"]

    @integrations.sync_handler("feed.entry")
    def ingest(integration, payload):
        record(db, integration, payload)

    return app
