"""The `httpx.Request` a URL call sends: its URL (the provider's `base_url`, templated per
integration), query or body, headers, then its credentials: an `OAuth2` provider's bearer
token, the provider's `auth` scheme, and last `prepare_request`, the escape hatch."""

from __future__ import annotations

from typing import Any

import httpx

from ..providers import SupportsIdempotency
from ..state import AppState
from .builder import RequestBuilder
from .http import client, join_url


def build_request(
    state: AppState, provider: Any, spec: RequestBuilder, method: str, target: str, bearer: str | None
) -> httpx.Request:
    """The request of one attempt, ready to send; `bearer` is the OAuth2 access token, if any."""
    integration = spec.integration
    is_get = method == "GET"
    request = client(state).build_request(
        method,
        join_url(provider.base_url_for(integration), target),
        params=query(spec.data) if is_get and spec.data is not None else None,
        json=spec.data if not is_get and spec.data is not None and spec.form is None else None,
        data=spec.form,
        headers=spec.headers,
        timeout=spec.timeout or state.setting("HTTP_TIMEOUT"),
    )
    if spec.idempotency_key and isinstance(provider, SupportsIdempotency):
        request.headers.setdefault("Idempotency-Key", spec.idempotency_key)
    if bearer:
        request.headers.setdefault("Authorization", f"Bearer {bearer}")
    if provider.auth is not None:
        provider.auth.apply(request, integration.credentials_dict(), integration.id)
    provider.prepare_request(integration, request)
    return request


def query(data: Any) -> Any:
    """A GET's query: a None value is left out (``with_data({"since": cursor})`` on a first run)."""
    if isinstance(data, dict):
        return {key: value for key, value in data.items() if value is not None}
    return data


def sets_authorization(spec: RequestBuilder) -> bool:
    """True when the caller put an Authorization header on the call itself."""
    return any(name.lower() == "authorization" for name in spec.headers)
