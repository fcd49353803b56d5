"""The app `bench/webhooks.py` serves with gunicorn (``webhooks_app:create_app()``).

Two ways in for one delivery: the package's webhook route for provider ``signed`` (HMAC
verified, deduplicated by delivery id, stored, its job enqueued to RQ), and ``POST /bare``, a
plain Flask route that inserts the same row into the same table and answers 202: the floor a
hand-written endpoint would have.
"""

from __future__ import annotations

import dataclasses
import json
import os

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy

import flask_integrations as fi
from flask_integrations import webhooks
from flask_integrations.clock import utcnow

db = SQLAlchemy()


@dataclasses.dataclass
class SignedCredentials:
    webhook_secret: str


class Signed(fi.Provider, fi.HandlesWebhooks):
    credential_class = SignedCredentials
    webhook_verifier = webhooks.Hmac("X-Signature", secret="webhook_secret", timestamp_header="X-Timestamp")
    webhook_event_key = "type"
    webhook_delivery_key = "id"


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=os.environ["BENCH_DATABASE_URL"],
        INTEGRATIONS_REDIS_URL=os.environ["BENCH_REDIS_URL"],
        INTEGRATIONS_ENCRYPTION_KEYS=[os.environ["BENCH_KEY"]],
        INTEGRATIONS_PROVIDERS={"signed": Signed},
    )
    db.init_app(app)
    integrations = fi.Integrations(app, db=db)

    @app.post("/bare")
    def bare():
        body = request.get_data()
        delivery = json.loads(body)
        now = utcnow()
        table = integrations.state_for(app).tables["webhooks"]
        row = {
            "provider": "bare",
            "payload": body.decode(),
            "headers": {"Content-Type": request.content_type or ""},
            "event_type": delivery.get("type"),
            "delivery_id": delivery.get("id"),
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        webhook_id = db.session.execute(table.insert().values(row).returning(table.c.id)).scalar_one()
        db.session.commit()
        return jsonify(id=webhook_id, status="pending"), 202

    return app
