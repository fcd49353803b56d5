"""The app `bench/sync.py` runs its workers on (``flask --app bench/sync_app.py``).

Its provider lists ``metadata["items"]`` numbers and its item handler does nothing, like the
no-op job of the plain RQ baseline: what is measured is the engine around the handler.
"""

from __future__ import annotations

import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

import flask_integrations as fi

db = SQLAlchemy()


class Numbers(fi.Provider, fi.ScheduledSync):
    def sync(self, integration, session):
        for n in range(int(integration.metadata["items"])):
            session.dispatch("number", {"n": n}, external_id=n)

    @fi.on_sync_item("number")
    def noop(self, integration, payload):
        return None


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=os.environ["BENCH_DATABASE_URL"],
        INTEGRATIONS_REDIS_URL=os.environ["BENCH_REDIS_URL"],
        INTEGRATIONS_ENCRYPTION_KEYS=[os.environ["BENCH_KEY"]],
        INTEGRATIONS_PROVIDERS={"numbers": Numbers},
        INTEGRATIONS_SYNC={"max_items_per_run": 1_000_000},
    )
    db.init_app(app)
    fi.Integrations(app, db=db)
    return app
