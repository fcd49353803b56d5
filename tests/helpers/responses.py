"""httpx responses and status errors built by hand, for the classifier and retry tests."""

from __future__ import annotations

import httpx

REQUEST = httpx.Request("GET", "http://127.0.0.1/x")


def response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=REQUEST)


def status_error(status: int, headers: dict[str, str] | None = None) -> httpx.HTTPStatusError:
    resp = response(status, headers)
    return httpx.HTTPStatusError(f"HTTP {status}", request=REQUEST, response=resp)
