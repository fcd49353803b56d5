"""The app the load test serves with gunicorn, and the loopback upstream its outbound calls hit.

Served as ``gunicorn 'tests.helpers.load_app:create_app()'``; its RQ workers are
``flask --app tests.helpers.load_app:create_app integrations worker``. Everything
comes from the environment the test sets:

- ``LOAD_DATABASE_URL``, ``LOAD_REDIS_URL``: PostgreSQL and Redis (Redis mode, real RQ).
- ``LOAD_REDIS_PREFIX``, ``LOAD_QUEUE``: a Redis key prefix and an RQ queue of this run only.
- ``LOAD_UPSTREAM_URL``: the upstream server (``python -m tests.helpers.load_app upstream``).
- ``LOAD_SYNC_ITEMS``: how many items each sync run dispatches.

Routes (besides the package's webhook route ``/integrations/hooks/<id>/webhook``):

- ``GET /api/items/<n>``: an outbound GET through the pipeline (upstream answers after 20 ms);
- ``GET /api/cached/<n>``: the same with ``with_cache(60)`` (a few keys: mostly cache hits);
- ``POST /api/orders``: an outbound POST with an idempotency key (at most once);
- ``POST /api/sync``: ``sync_now()`` of the feed integration (its items go to the RQ workers);
- ``GET /api/health``: readiness.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from typing import Any

import sqlalchemy as sa
from flask import Flask, jsonify, request

from examples.webhook_providers import SignedWebhooks
from flask_integrations import IncrementalSync, Integrations, Provider, SupportsIdempotency
from tests.helpers.app import KEY, db
from tests.helpers.upstream import UpstreamServer

#: Names of the rows the test creates (see tests/reliability/test_load.py).
WEBHOOK_EVENT = "order.updated"
SYNC_EVENT = "feed.entry"
SEEN_TABLES = (
    "CREATE TABLE IF NOT EXISTS load_webhook_seen "
    "(id BIGSERIAL PRIMARY KEY, webhook_id BIGINT NOT NULL, delivery_id TEXT, pid INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS load_sync_seen "
    "(id BIGSERIAL PRIMARY KEY, n INTEGER NOT NULL, pid INTEGER NOT NULL)",
)


def upstream_url() -> str:
    return os.environ["LOAD_UPSTREAM_URL"]


@dataclasses.dataclass
class ApiKey:
    api_key: str


class Shop(Provider, SupportsIdempotency):
    """The API the routes call (on the loopback upstream)."""

    name = "Shop"
    credential_class = ApiKey

    def prepare_request(self, integration: Any, request: Any) -> None:
        request.headers["X-Api-Key"] = integration.credentials.api_key


def record_webhook(integration: Any, webhook: Any) -> None:
    """Handler side effect: one `load_webhook_seen` row per run of the handler (counted by the test)."""
    db.session.execute(
        sa.text("INSERT INTO load_webhook_seen (webhook_id, delivery_id, pid) VALUES (:w, :d, :p)"),
        {"w": webhook.id, "d": webhook.delivery_id, "p": os.getpid()},
    )


class Hooks(SignedWebhooks):
    """Signed webhooks (HMAC-SHA256 of the body) whose handler records each run."""

    def webhook_handlers(self) -> dict[str, Any]:
        return {WEBHOOK_EVENT: record_webhook}


class Feed(Provider, IncrementalSync):
    """Asks the upstream for news (one outbound call), then dispatches ``LOAD_SYNC_ITEMS`` items."""

    name = "Feed"
    sync_interval = 60

    def sync_incremental(self, integration: Any, session: Any) -> None:
        start = session.cursor or 0
        integration.at("feed.since").with_data({"since": start}).get(f"{upstream_url()}/json")
        for n in range(start + 1, start + int(os.environ.get("LOAD_SYNC_ITEMS", "50")) + 1):
            session.dispatch(SYNC_EVENT, {"n": n}, checkpoint=n, external_id=f"e{n}")


def create_app() -> Flask:
    app = Flask("load_app")
    queue = os.environ["LOAD_QUEUE"]
    app.config.update(
        SECRET_KEY="load-test-secret",
        SQLALCHEMY_DATABASE_URI=os.environ["LOAD_DATABASE_URL"],
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 8, "max_overflow": 4, "pool_pre_ping": True},
        INTEGRATIONS_ENCRYPTION_KEYS=[KEY],
        INTEGRATIONS_PROVIDERS={"shop": Shop, "hooks": Hooks, "feed": Feed},
        INTEGRATIONS_REDIS_URL=os.environ["LOAD_REDIS_URL"],
        INTEGRATIONS_REDIS_PREFIX=os.environ["LOAD_REDIS_PREFIX"],
        INTEGRATIONS_WEBHOOK={"queue": queue},
        INTEGRATIONS_SYNC={"queue": queue, "items_per_job": 25},
        INTEGRATIONS_BLUEPRINTS={"webhooks": True, "oauth": False, "dashboard": False},
    )
    db.init_app(app)
    integrations = Integrations(app, db=db)

    @integrations.sync_handler(SYNC_EVENT)
    def ingest(integration: Any, payload: dict) -> None:
        db.session.execute(
            sa.text("INSERT INTO load_sync_seen (n, pid) VALUES (:n, :p)"),
            {"n": payload["n"], "p": os.getpid()},
        )

    def integration_of(provider: str) -> Any:
        from flask_integrations import Integration

        return db.session.scalars(sa.select(Integration).where(Integration.provider == provider)).one()

    @app.get("/api/health")
    def health() -> Any:
        db.session.execute(sa.text("SELECT 1"))
        return jsonify(ok=True, pid=os.getpid())

    @app.get("/api/items/<int:n>")
    def item(n: int) -> Any:
        answer = integration_of("shop").at("items").get(f"{upstream_url()}/slow?delay=0.02&item={n}")
        return jsonify(ok=bool(answer.get("slow")))

    @app.get("/api/cached/<int:n>")
    def cached(n: int) -> Any:
        answer = integration_of("shop").at("catalog").with_cache(60).get(f"{upstream_url()}/json?item={n}")
        return jsonify(item=answer["query"]["item"])

    @app.post("/api/orders")
    def order() -> Any:
        key = request.get_json()["key"]
        answer = (
            integration_of("shop")
            .at("orders.create")
            .with_idempotency_key(key)
            .with_data({"order": key})
            .post(f"{upstream_url()}/json")
        )
        return jsonify(key=key, echoed=answer["method"])

    @app.post("/api/sync")
    def sync() -> Any:
        log = integration_of("feed").sync_now()
        return jsonify(started=log is not None, log_id=log.id if log is not None else None)

    return app


class _QuietUpstream(UpstreamServer):
    """The tests' upstream server, without the per-request record (it would grow for the whole run)."""

    def record(self, request: dict[str, Any]) -> None:
        return


def serve_upstream() -> None:
    server = _QuietUpstream()
    print(server.url, flush=True)
    server.serve_forever()


def new_queue_name() -> str:
    return f"load-{uuid.uuid4().hex[:10]}"


if __name__ == "__main__" and sys.argv[1:] == ["upstream"]:
    serve_upstream()
