"""URLs and endpoint labels as they may be stored, shown or logged."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .bodies import redact_query
from .secrets import scrub_for


def safe_url_text(text: str, integration: Any, redact_keys: Iterable[str]) -> str:
    """`text` (a URL, a path, or an endpoint label such as ``/search?api_key=...``) with its query
    values under redact keys replaced and `integration`'s credential values scrubbed anywhere in it
    (``/v1/items/<api key>/detail``)."""
    path, mark, query = text.partition("?")
    if mark:
        text = f"{path}?{redact_query(query, redact_keys=redact_keys)}"
    return scrub_for(integration, text) or ""
