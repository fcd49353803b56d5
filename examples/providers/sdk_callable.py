"""A provider whose calls go through a vendor's SDK instead of URLs.

Many APIs are best called with their own client library (Stripe, boto3, a mail service's SDK).
Hand the pipeline a callable instead of a URL: ``integration.at("messages.send").post(fn)``.
The call is still logged (one row per attempt, under its label), rate-limited, retried, watched
by the circuit breaker and, with a key, made at most once. A callable that takes a parameter
receives the call's `RequestContext`: `ctx.idempotency_key` to pass on to the SDK, and
`ctx.report(...)` to tell the pipeline the request id the SDK saw.

The SDK's own errors are judged by what they carry: an exception with a ``http_status`` (or
``status_code``, or a ``response`` with one) is a 5xx to retry, a 4xx not to, and so on.

`MailerClient` stands in for the vendor's SDK: its own HTTP client, its own exceptions. The
`auth` declaration and `prepare_request` do not apply to callables: the SDK is given the key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

import flask_integrations as fi

# -- the vendor's SDK (a stand-in) ----------------------------------------------------------------


class MailerError(Exception):
    """What the SDK raises when the API answers with an error."""

    def __init__(self, http_status: int, message: str):
        super().__init__(f"{http_status}: {message}")
        self.http_status = http_status


class MailerClient:
    """``MailerClient(api_key, base_url)``; `send()` and `account()` return the API's JSON."""

    def __init__(self, api_key: str, base_url: str, timeout: float = 10):
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "mailer-python/2.1"},
            timeout=timeout,
        )

    def __enter__(self) -> MailerClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._http.close()

    def account(self) -> dict[str, Any]:
        return self._request("GET", "/account")

    def send(self, to: str, subject: str, text: str, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._request("POST", "/messages", {"to": to, "subject": subject, "text": text}, headers)

    def _request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response = self._http.request(method, path, json=body, headers=headers)
        if response.is_error:
            raise MailerError(response.status_code, response.text[:200])
        return {**response.json(), "request_id": response.headers.get("X-Request-Id")}


# -- the provider ----------------------------------------------------------------------------------


@dataclasses.dataclass
class MailerCredentials:
    api_key: str


class Mailer(fi.Provider, fi.HasHealthCheck, fi.SupportsIdempotency):
    name = "Mailer"
    credential_class = MailerCredentials
    base_url = "https://api.mailer.example/v3"  # where the SDK is pointed

    def client(self, integration: Any) -> MailerClient:
        """An SDK client with the integration's key (close it, or use it in a `with` block)."""
        return MailerClient(integration.credentials.api_key, self.base_url_for(integration))

    def health_check(self, integration: Any) -> bool:
        with self.client(integration) as client:
            try:
                integration.at("account.get").with_attempts(1).get(client.account)
            except MailerError:
                return False
        return True


def send_message(integration: Any, to: str, subject: str, text: str, key: str) -> str:
    """Send one message, at most once per `key` across retries and processes; its id.

    A second call with the same key raises `IdempotencyConflict` without sending anything.
    """

    def send(ctx: fi.RequestContext) -> dict[str, Any]:
        message = client.send(to, subject, text, idempotency_key=ctx.idempotency_key)
        ctx.report(provider_request_id=message["request_id"])
        return message

    with integration.provider_instance.client(integration) as client:
        message = integration.at("messages.send").with_idempotency_key(key).with_attempts(3).post(send)
    return message["id"]
