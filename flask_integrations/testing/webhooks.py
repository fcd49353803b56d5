"""Test helpers for webhooks and background jobs."""

from __future__ import annotations

import json
from typing import Any

from ..errors import ConfigurationError
from ..queue import run_queued_jobs

__all__ = ["run_queued_jobs", "send_webhook", "webhook_url"]


def webhook_url(app: Any, provider: str, integration: Any = None) -> str:
    """The path of the webhook route for `provider` (and an integration or its id)."""
    prefix = app.config.get("INTEGRATIONS_URL_PREFIX", "/integrations").rstrip("/")
    if integration is None:
        return f"{prefix}/{provider}/webhook"
    integration_id = integration if isinstance(integration, int) else integration.id
    return f"{prefix}/{provider}/{integration_id}/webhook"


def send_webhook(
    client: Any,
    provider: str,
    payload: Any,
    integration: Any = None,
    headers: dict[str, str] | None = None,
    sign: bool = False,
) -> Any:
    """POST `payload` to the webhook route with a Flask test client and return the response.

    A dict or list is sent as JSON, a str as UTF-8 text, bytes as they are. With `sign`, the
    provider's `webhook_verifier` signs the body with the integration's secret (a fresh
    timestamp where it uses one); `headers` are sent after, so a test can spoil one. The
    response is closed before it is returned, so that jobs the embedded mode runs after the
    response (as a real server would) have run.
    """
    headers = dict(headers or {})
    if isinstance(payload, bytes | bytearray):
        body = bytes(payload)
    elif isinstance(payload, str):
        body = payload.encode("utf-8")
    else:
        body = json.dumps(payload).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    if sign:
        headers = {**signature_headers(client.application, provider, integration, body), **headers}
    url = webhook_url(client.application, provider, integration)
    return client.post(url, data=body, headers=headers, buffered=True)


def signature_headers(app: Any, provider: str, integration: Any, body: bytes) -> dict[str, str]:
    """The headers with which `provider`'s `webhook_verifier` accepts `body` for `integration`."""
    with app.app_context():
        extension = app.extensions["integrations"]
        verifier = getattr(extension.state_for(app).provider(provider), "webhook_verifier", None)
        if verifier is None:
            raise ConfigurationError(
                f"send_webhook(sign=True): provider {provider!r} declares no webhook_verifier to sign with."
            )
        if integration is None:
            raise ConfigurationError(
                "send_webhook(sign=True) needs the integration whose secret signs the delivery."
            )
        if isinstance(integration, int):
            integration = extension.get(integration)
        return verifier.sign(integration, body)
