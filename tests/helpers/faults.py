"""The app the fault tests run in every process: gunicorn, `flask integrations worker`, callers.

FLASK_APP=tests.helpers.faults:create_app, configured by environment:
FAULT_DATABASE_URL, FAULT_REDIS_URL, FAULT_EVENTS (a file
each process appends one line to per finished sync run, so a test can count
finalisations across processes). Sync items use tests.helpers.sync.Feed
(SYNC_TEST_ITEMS, SYNC_TEST_SLOW) and its idempotent handler (rows in `sync_seen`).

- `hooks`: signed webhooks (HMAC-SHA256 of the body with the integration's
  `signing_secret`, header X-Signature); event and delivery id from headers. Its
  handler inserts the delivery id into `webhook_seen` in the job's transaction,
  the same one that commits the row `processed`.
- `api`: outbound calls to the loopback upstream (tests/helpers/upstream.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import time
from typing import Any

import sqlalchemy as sa

from flask_integrations import HandlesWebhooks, Provider, signals
from tests.helpers.app import db, make_app
from tests.helpers.sync import Feed, record

SECRET = "whsec-faults-0123456789"


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def handle_event(integration: Any, webhook: Any) -> None:
    db.session.execute(
        sa.text("INSERT INTO webhook_seen (delivery_id, pid) VALUES (:d, :pid)"),
        {"d": webhook.delivery_id, "pid": os.getpid()},
    )


class Hooks(Provider, HandlesWebhooks):
    def verify_webhook(self, integration: Any, request: Any) -> bool:
        if integration is None:
            return False
        secret = integration.credentials_dict().get("signing_secret", "")
        return hmac.compare_digest(request.headers.get("X-Signature", ""), sign(request.get_data(), secret))

    def webhook_event(self, request: Any) -> str | None:
        return request.headers.get("X-Event")

    def webhook_delivery_id(self, request: Any) -> str | None:
        return request.headers.get("X-Delivery")

    def webhook_handlers(self) -> dict[str, Any]:
        return {"order.paid": handle_event}


@dataclasses.dataclass
class ApiCredentials:
    token: str


class Api(Provider):
    credential_class = ApiCredentials


class LimitedApi(Api):
    rate_limit = 5  # per minute: the limiter's state must live in Redis again after a restart


AUX_TABLES = (
    "CREATE TABLE IF NOT EXISTS webhook_seen (delivery_id VARCHAR(255) NOT NULL, pid INTEGER)",
    "CREATE TABLE IF NOT EXISTS sync_seen (n INTEGER NOT NULL, pid INTEGER)",
)


def config_from_env() -> dict[str, Any]:
    return {
        "INTEGRATIONS_PROVIDERS": {"hooks": Hooks, "feed": Feed, "api": Api, "limited": LimitedApi},
        "INTEGRATIONS_REDIS_URL": os.environ.get("FAULT_REDIS_URL") or None,
        "INTEGRATIONS_BLUEPRINTS": {"webhooks": True, "oauth": False, "dashboard": False},
        "INTEGRATIONS_WEBHOOK": {"retry_delay": 1},
        "INTEGRATIONS_SYNC": {
            "items_per_job": int(os.environ.get("SYNC_TEST_PER_JOB", "50")),
            "item_backoff": [1, 2, 3],
            "item_tries": 5,
        },
        "INTEGRATIONS_BREAKER": {"threshold": 5, "cooldown": float(os.environ.get("FAULT_COOLDOWN", "1"))},
        "INTEGRATIONS_RETRY_AFTER_MAX": 0.05,
        "INTEGRATIONS_RATE_LIMIT_MAX_WAIT": 0,
        "INTEGRATIONS_HTTP_TIMEOUT": 5,
        "TESTING": False,
    }


def _note_finalised(app: Any, integration: Any, log: Any, status: str, **extra: Any) -> None:
    path = os.environ.get("FAULT_EVENTS")
    if path:
        line = json.dumps({"log": log.id, "status": status, "pid": os.getpid()}) + "\n"
        with open(path, "a") as handle:  # one short O_APPEND write: lines never interleave
            handle.write(line)


def create_app(database_url: str | None = None, **overrides: Any) -> Any:
    app = make_app(database_url or os.environ["FAULT_DATABASE_URL"], **{**config_from_env(), **overrides})
    integrations = app.extensions["integrations"]

    @integrations.sync_handler("feed.entry")
    def ingest(integration: Any, payload: dict) -> None:
        record(db, integration, payload)

    signals.sync_completed.connect(_note_finalised, app, weak=False)
    return app


def create_tables(app: Any) -> None:
    with app.app_context():
        db.create_all()
        with db.engine.begin() as connection:
            for statement in AUX_TABLES:
                connection.execute(sa.text(statement))
        db.session.remove()


# -- outbound callers (run in processes of their own) ----------------------------------------------


def call_loop(
    integration_id: int,
    endpoint: str,
    url: str,
    seconds: float,
    out: str,
    attempts: int | None = None,
    warmup: str | None = None,
) -> None:
    """Call `url` through the pipeline for `seconds`; write every outcome (and its time) to `out`.

    A first call to `warmup` (endpoint "warmup") opens the connections; then `out`.ready appears.
    """
    from flask_integrations import CircuitOpenError, IntegrationHTTPError, RateLimitExceeded

    app = create_app()
    outcomes: list[dict[str, Any]] = []
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        if warmup:
            integration.at("warmup").get(warmup)
            db.session.remove()
            integration = app.extensions["integrations"].get(integration_id)
        open(out + ".ready", "w").close()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            builder = integration.at(endpoint)
            if attempts:
                builder = builder.with_attempts(attempts)
            try:
                builder.get(url)
                kind = "ok"
            except CircuitOpenError:
                kind = "CircuitOpenError"
            except RateLimitExceeded:
                kind = "RateLimitExceeded"
            except IntegrationHTTPError as exc:
                kind = f"HTTP {exc.status_code}"
            except Exception as exc:  # noqa: BLE001 - recorded; the test decides what was allowed
                kind = f"{type(exc).__module__}.{type(exc).__name__}"
            outcomes.append({"kind": kind, "at": started, "seconds": time.monotonic() - started})
            db.session.remove()
            time.sleep(0.01)
    with open(out, "w") as handle:
        json.dump(outcomes, handle)
