"""Webhook signatures, declared: ``webhook_verifier = webhooks.Hmac("X-Signature", secret="signing_key")``.

A verifier checks a delivery's signature with a secret from the integration's credentials
(a delivery to the generic route without an integration is refused: there is no secret to
check it with). Comparisons are constant-time; a timestamp outside `tolerance` seconds of
now fails, so a captured delivery cannot be replayed later. `sign()` makes the headers of a
delivery the verifier accepts, for tests (`send_webhook(..., sign=True)`).

Safe shape: sign what identifies the delivery. With `Hmac`, take the delivery id from the
signed body (``webhook_delivery_key = "id"``) and use a timestamp header; `StandardWebhooks`
signs its id and timestamp and supplies the delivery id itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import ConfigurationError
from ..parsing import parse_int

__all__ = ["Hmac", "StandardWebhooks", "Verifier"]

#: What time it is, in unix seconds; tests may replace it.
clock: Callable[[], float] = time.time

_PLACEHOLDER = re.compile(rb"\{(timestamp|body)\}")


class Verifier:
    """Checks a delivery's signature; `fields` are the credential fields it reads."""

    fields: tuple[str, ...] = ()

    def verify(self, integration: Any, request: Any) -> bool:
        raise NotImplementedError

    def sign(self, integration: Any, body: bytes) -> dict[str, str]:
        """Headers that make `body` a delivery this verifier accepts (for tests)."""
        raise NotImplementedError

    def _secret(self, integration: Any) -> str | None:
        if integration is None:
            return None
        value = integration.credentials_dict().get(self.fields[0])
        return value if isinstance(value, str) and value else None


class Hmac(Verifier):
    """An HMAC of the body (and a timestamp) in a header: GitHub, Shopify, Slack, most providers.

    `header` holds the signature, after `prefix` (``"sha256="``), in `encoding` ("hex" or
    "base64"); `secret` is the credential field of the signing key. With `timestamp_header`,
    `signed` defaults to ``"{timestamp}.{body}"`` and a timestamp more than `tolerance`
    seconds from now fails verification.
    """

    def __init__(
        self,
        header: str,
        secret: str,
        algorithm: str = "sha256",
        encoding: str = "hex",
        prefix: str = "",
        timestamp_header: str | None = None,
        tolerance: int = 300,
        signed: str | None = None,
    ):
        if algorithm not in hashlib.algorithms_guaranteed:
            raise ConfigurationError(f"Hmac(algorithm={algorithm!r}) is not a hashlib algorithm.")
        if encoding not in ("hex", "base64"):
            raise ConfigurationError(f"Hmac(encoding={encoding!r}) must be 'hex' or 'base64'.")
        signed = signed or ("{timestamp}.{body}" if timestamp_header else "{body}")
        if "{timestamp}" in signed and not timestamp_header:
            raise ConfigurationError("Hmac(signed=...) uses {timestamp} but no timestamp_header is given.")
        self.header, self.algorithm, self.encoding, self.prefix = header, algorithm, encoding, prefix
        self.timestamp_header, self.tolerance, self.signed = timestamp_header, tolerance, signed
        self.fields = (secret,)

    def __repr__(self) -> str:
        return f"Hmac({self.header!r}, secret={self.fields[0]!r}, algorithm={self.algorithm!r})"

    def verify(self, integration: Any, request: Any) -> bool:
        secret = self._secret(integration)
        sent = request.headers.get(self.header, "")
        if secret is None or not sent.startswith(self.prefix):
            return False
        timestamp = None
        if self.timestamp_header:
            timestamp = request.headers.get(self.timestamp_header, "")
            moment = parse_int(timestamp)
            if moment is None or abs(clock() - moment) > self.tolerance:
                return False
        expected = self._signature(secret, request.get_data(), timestamp)
        return hmac.compare_digest(
            expected.encode(), sent[len(self.prefix) :].strip().encode("utf-8", "replace")
        )

    def sign(self, integration: Any, body: bytes) -> dict[str, str]:
        secret = self._secret(integration)
        if secret is None:
            raise ConfigurationError(f"The integration has no {self.fields[0]!r} to sign a webhook with.")
        headers = {}
        timestamp = None
        if self.timestamp_header:
            timestamp = headers[self.timestamp_header] = str(int(clock()))
        headers[self.header] = self.prefix + self._signature(secret, body, timestamp)
        return headers

    def _signature(self, secret: str, body: bytes, timestamp: str | None) -> str:
        parts = {b"timestamp": (timestamp or "").encode(), b"body": body}
        message = _PLACEHOLDER.sub(lambda match: parts[match.group(1)], self.signed.encode())
        digest = hmac.new(secret.encode(), message, self.algorithm).digest()
        return digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()


class StandardWebhooks(Verifier):
    """The Standard Webhooks scheme (Svix and others): ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, several allowed)
    headers, a ``whsec_`` base64 secret in the credential field `secret`, and a replay window of
    `tolerance` seconds. The delivery id is the signed ``webhook-id``."""

    #: `HandlesWebhooks.webhook_delivery_id` reads this when the provider declares no key of its own
    delivery_key = "header:webhook-id"

    def __init__(self, secret: str, tolerance: int = 300):
        self.tolerance = tolerance
        self.fields = (secret,)

    def __repr__(self) -> str:
        return f"StandardWebhooks(secret={self.fields[0]!r})"

    def verify(self, integration: Any, request: Any) -> bool:
        secret = self._secret(integration)
        delivery, timestamp = request.headers.get("webhook-id"), request.headers.get("webhook-timestamp", "")
        moment = parse_int(timestamp)
        if secret is None or not delivery or moment is None or abs(clock() - moment) > self.tolerance:
            return False
        expected = self._signature(secret, delivery, timestamp, request.get_data()).encode()
        sent = request.headers.get("webhook-signature", "").split()
        candidates = [entry.partition(",")[2].encode() for entry in sent if entry.startswith("v1,")]
        return any(hmac.compare_digest(expected, candidate) for candidate in candidates)

    def sign(self, integration: Any, body: bytes) -> dict[str, str]:
        secret = self._secret(integration)
        if secret is None:
            raise ConfigurationError(f"The integration has no {self.fields[0]!r} to sign a webhook with.")
        delivery, timestamp = f"msg_{uuid.uuid4().hex}", str(int(clock()))
        signature = self._signature(secret, delivery, timestamp, body)
        return {
            "webhook-id": delivery,
            "webhook-timestamp": timestamp,
            "webhook-signature": f"v1,{signature}",
        }

    @staticmethod
    def _signature(secret: str, delivery: str, timestamp: str, body: bytes) -> str:
        encoded = secret.removeprefix("whsec_")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            key = encoded.encode()
        message = f"{delivery}.{timestamp}.".encode() + body
        return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
