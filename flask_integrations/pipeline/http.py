"""One `httpx.Client` per process for URL calls (created lazily, again after a fork)."""

from __future__ import annotations

import os
import threading

import httpx

_lock = threading.Lock()
_client: httpx.Client | None = None
_pid: int | None = None


def client() -> httpx.Client:
    global _client, _pid
    if _client is None or _pid != os.getpid():
        with _lock:
            if _client is None or _pid != os.getpid():
                _client = httpx.Client(follow_redirects=False)
                _pid = os.getpid()
    return _client


def join_url(base_url: str | None, target: str) -> str:
    """An absolute URL as is; a path joined to the provider's `base_url`."""
    if target.startswith(("http://", "https://")):
        return target
    if not base_url:
        raise ValueError(f"{target!r} is a path but the provider has no base_url; pass a full URL.")
    return base_url.rstrip("/") + "/" + target.lstrip("/")


def decode(response: httpx.Response) -> object:
    """Decoded JSON, else text; None for 204 or an empty body."""
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text
