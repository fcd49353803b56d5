"""Two webhook providers showing how to verify signatures.

`SignedWebhooks` checks a GitHub-style header, ``X-Signature-256: sha256=<hex>``,
an HMAC-SHA256 of the raw body under the integration's ``signing_secret``.

`StandardWebhooks` follows the Standard Webhooks scheme (standardwebhooks.com):
headers ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` (several space-separated
signatures may be sent while a secret rotates), a secret written
``whsec_<base64 key>``, and a timestamp tolerance against replays.

Register them like any provider::

    app.config["INTEGRATIONS_PROVIDERS"] = {
        "signed": "examples.webhook_providers:SignedWebhooks",
        "standard": "examples.webhook_providers:StandardWebhooks",
    }

and point the sender at ``/integrations/signed/<integration id>/webhook``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from typing import Any

from flask_integrations import HandlesWebhooks, Provider

#: Seconds a Standard Webhooks timestamp may differ from our clock.
TIMESTAMP_TOLERANCE = 300


@dataclasses.dataclass
class SigningSecret:
    signing_secret: str


def hmac_signature(secret: str, body: bytes) -> str:
    """The ``X-Signature-256`` value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, message_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one message."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def _event_from_json(body: bytes, field: str) -> str | None:
    try:
        value = json.loads(body).get(field)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


class SignedWebhooks(Provider, HandlesWebhooks):
    """HMAC-SHA256 of the body in ``X-Signature-256``; event in ``X-Event``, id in ``X-Delivery``."""

    name = "Signed webhooks"
    credential_class = SigningSecret

    def verify_webhook(self, integration: Any, request: Any) -> bool:
        if integration is None:  # the secret is per integration: use the route with the id
            return False
        received = request.headers.get("X-Signature-256", "")
        expected = hmac_signature(integration.credentials.signing_secret, request.get_data())
        return hmac.compare_digest(received.encode("utf-8"), expected.encode("utf-8"))

    def webhook_event(self, request: Any) -> str | None:
        return request.headers.get("X-Event")

    def webhook_delivery_id(self, request: Any) -> str | None:
        return request.headers.get("X-Delivery")


class StandardWebhooks(Provider, HandlesWebhooks):
    """Standard Webhooks signatures; the event type is the payload's ``type`` field."""

    name = "Standard webhooks"
    credential_class = SigningSecret

    def verify_webhook(self, integration: Any, request: Any) -> bool:
        if integration is None:
            return False
        message_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        if not message_id or not timestamp.isdigit():
            return False
        if abs(time.time() - int(timestamp)) > TIMESTAMP_TOLERANCE:
            return False
        expected = standard_signature(
            integration.credentials.signing_secret, message_id, timestamp, request.get_data()
        ).encode("ascii")
        offered = request.headers.get("webhook-signature", "").split()
        return any(hmac.compare_digest(candidate.encode("utf-8"), expected) for candidate in offered)

    def webhook_event(self, request: Any) -> str | None:
        return _event_from_json(request.get_data(), "type")

    def webhook_delivery_id(self, request: Any) -> str | None:
        return request.headers.get("webhook-id")
