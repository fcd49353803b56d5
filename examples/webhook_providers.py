"""Two webhook providers showing how to verify signatures, declared with the provider kit.

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

and point the sender at ``/integrations/signed/<integration id>/webhook``. The
two signing functions below make the headers a sender would send (for tests and
scripts; `send_webhook(..., sign=True)` does the same from a provider's
`webhook_verifier`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac

from flask_integrations import HandlesWebhooks, Provider, webhooks

#: Seconds a Standard Webhooks timestamp may differ from our clock.
TIMESTAMP_TOLERANCE = 300


@dataclasses.dataclass
class SigningSecret:
    signing_secret: str


class SignedWebhooks(Provider, HandlesWebhooks):
    """HMAC-SHA256 of the body in ``X-Signature-256``; event in ``X-Event``, id in ``X-Delivery``."""

    name = "Signed webhooks"
    credential_class = SigningSecret
    webhook_verifier = webhooks.Hmac("X-Signature-256", secret="signing_secret", prefix="sha256=")
    webhook_event_key = "header:X-Event"
    webhook_delivery_key = "header:X-Delivery"


class StandardWebhooks(Provider, HandlesWebhooks):
    """Standard Webhooks signatures (the delivery id is the signed ``webhook-id``); the event type
    is the payload's ``type`` field."""

    name = "Standard webhooks"
    credential_class = SigningSecret
    webhook_verifier = webhooks.StandardWebhooks(secret="signing_secret", tolerance=TIMESTAMP_TOLERANCE)
    webhook_event_key = "type"


def hmac_signature(secret: str, body: bytes) -> str:
    """The ``X-Signature-256`` value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, message_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one message."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
