"""The `httpx.Client` URL calls go through (one per app and process), URLs and bodies."""

from __future__ import annotations

import logging

import httpx

from ..config import DEFAULTS
from ..redaction import safe_url_text, scrub_for
from ..state import AppState, current_state
from .context import current_context


def client(state: AppState) -> httpx.Client:
    """The app's client in this process: made on first use, again in a forked child."""
    return state.derived("http-client", lambda: httpx.Client(follow_redirects=False))


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


class CallLogFilter(logging.Filter):
    """Log lines of httpx and httpcore as the request log would show them.

    httpx logs each request's URL at INFO (``HTTP Request: GET https://...?api_key=...``):
    query values under a redact key (`INTEGRATIONS_REDACT_KEYS`, the defaults outside an
    app) are logged as ``[REDACTED]``. And while a call of the pipeline runs, the credential
    values of the integration being called (put in the path or the query by
    `prepare_request`, or echoed back in a response header that httpcore logs at DEBUG) are
    scrubbed from every line. Installed on their loggers at import (`LOGGERS`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            args = record.args
            if isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], httpx.URL):
                record.args = (args[0], redacted_url(args[1]), *args[2:])
            ctx = current_context()
            if ctx is not None:
                message = record.getMessage()
                scrubbed = scrub_for(ctx.integration, message)
                if scrubbed != message:
                    record.msg, record.args = scrubbed, ()
        except Exception:  # noqa: BLE001 - a log line is never worth an error, nor a leak
            record.msg, record.args = "[a log line that could not be redacted]", ()
        return True


#: The loggers of the HTTP client (a filter on a logger does not apply to its children).
LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def redacted_url(url: httpx.URL) -> str:
    """`url` as a log line may show it (see `CallLogFilter`)."""
    try:
        keys = current_state().setting("REDACT_KEYS")
    except Exception:  # noqa: BLE001 - outside an app context, or an app without the extension
        keys = DEFAULTS["INTEGRATIONS_REDACT_KEYS"]
    ctx = current_context()
    return safe_url_text(str(url), ctx.integration if ctx is not None else None, keys)


for _name in LOGGERS:
    logging.getLogger(_name).addFilter(CallLogFilter())
