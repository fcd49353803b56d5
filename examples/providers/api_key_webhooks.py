"""An API key, signed webhooks and a paginated incremental sync: the most common provider shape.

Parcels is a made-up shipment-tracking API. Everything it needs is declared:

- `auth`: every call carries the integration's key in ``X-Api-Key`` (never in a log row);
- `base_url`: each integration calls its own account's host, ``{account}`` from its credentials;
- `health_check_endpoint`: ``flask integrations test`` (and install, and the dashboard) GET it;
- `webhook_verifier`: an HMAC-SHA256 of ``"<timestamp>.<body>"`` in ``X-Parcels-Signature``, the
  timestamp in ``X-Parcels-Timestamp``; a delivery older than 5 minutes is refused (a replay);
- `webhook_event_key` / `webhook_delivery_key`: read from the signed body, so a redelivery of one
  id is stored and handled once;
- `sync_incremental` reads the shipments changed since the last run, page by page; each one is a
  sync item that `store` writes to the app's table, and a webhook about a shipment goes through
  the same method.

The app side is here too (the `Shipment` model and `create_app`); in an app of your own, `store`
writes to your model and the provider is registered by name:
``INTEGRATIONS_PROVIDERS = {"parcels": "examples.providers.api_key_webhooks:Parcels"}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

import flask_integrations as fi
from flask_integrations import auth, pagination, webhooks


@dataclasses.dataclass
class ParcelsCredentials:
    api_key: str
    webhook_secret: str
    account: str


class Parcels(fi.Provider, fi.IncrementalSync, fi.HandlesWebhooks, fi.HasHealthCheck):
    name = "Parcels"
    credential_class = ParcelsCredentials
    base_url = "https://{account}.parcels.example/api/v2"
    auth = auth.Header("X-Api-Key", "api_key")
    health_check_endpoint = "/account"
    webhook_verifier = webhooks.Hmac(
        "X-Parcels-Signature", secret="webhook_secret", timestamp_header="X-Parcels-Timestamp"
    )
    webhook_event_key = "event"
    webhook_delivery_key = "id"
    sync_interval = 15  # minutes
    page_size = 100  # shipments per page: the API's largest

    def sync_incremental(self, integration: Any, session: Any) -> None:
        listing = integration.at("shipments.list").with_data(
            {"updated_since": session.cursor, "per_page": self.page_size}
        )
        pages = pagination.PageNumber("page", size=self.page_size)
        for shipment in listing.paginate("/shipments", items="data", pages=pages):
            session.dispatch(
                "shipment", shipment, checkpoint=shipment["updated_at"], external_id=shipment["id"]
            )

    @fi.on_sync_item("shipment")
    def store(self, integration: Any, shipment: dict[str, Any]) -> None:
        """Idempotent (items and webhooks arrive at least once): one row per shipment id."""
        attributes = {"tracking_number": shipment["tracking_number"], "status": shipment["status"]}
        integration.upsert_by_external_id(shipment["id"], Shipment, attributes)

    @fi.on_webhook("shipment.created", "shipment.updated")
    def changed(self, integration: Any, webhook: Any) -> None:
        self.store(integration, webhook.json()["data"])


# -- the app side ----------------------------------------------------------------------------------

db = SQLAlchemy()
integrations = fi.Integrations(db=db)


class Shipment(db.Model):
    """The app's own copy of a shipment."""

    __tablename__ = "parcels_shipments"
    id = db.Column(db.Integer, primary_key=True)
    tracking_number = db.Column(db.String(64), nullable=False)
    status = db.Column(db.String(32), nullable=False)


def create_app(**config: Any) -> Flask:
    """An app with Parcels registered and the tables created; `config` gives the rest
    (`SQLALCHEMY_DATABASE_URI`, `INTEGRATIONS_ENCRYPTION_KEYS`, ...) and may override it."""
    app = Flask(__name__)
    app.config.update(INTEGRATIONS_PROVIDERS={"parcels": Parcels})
    app.config.update(config)
    db.init_app(app)
    integrations.init_app(app)
    with app.app_context():
        db.create_all()  # a real app: `flask integrations publish-migrations` + `flask db upgrade`
    return app
