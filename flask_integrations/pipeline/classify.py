"""The one failure classifier: it feeds retries, health and the circuit breaker.

`upstream` (5xx except 501, connection errors, timeouts, `RetryableError`),
`throttle` (429, rate-limit exceptions), `client` (other 4xx, 501, requests
that could never be sent), `unknown` (everything else). SDK exceptions are
judged by their chain (`__cause__` / `__context__`): the first link that says
something decides, so an SDK error raised from an `httpx.HTTPStatusError` is
classified by the status inside it. A `ClassifiesFailures` provider speaks first
(`provider_failure_class`), and its answer feeds the same consumers.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ..db.statuses import FailureClass
from ..errors import IntegrationHTTPError, IntegrationsError, RateLimitExceeded, RetryableError
from ..parsing import parse_number

UPSTREAM, THROTTLE, CLIENT, UNKNOWN = (
    FailureClass.UPSTREAM,
    FailureClass.THROTTLE,
    FailureClass.CLIENT,
    FailureClass.UNKNOWN,
)

__all__ = [
    "chain",
    "classify_exception",
    "classify_status",
    "connection_never_established",
    "deciding_link",
    "find_retry_after",
    "find_status",
    "parse_retry_after",
    "provider_failure_class",
]

logger = logging.getLogger("flask_integrations")

#: What `ClassifiesFailures.classify_failure` may answer (besides None).
PROVIDER_CLASSES = (UPSTREAM, THROTTLE, CLIENT)

#: Seconds to wait after a 429 (or a throttle) that did not say how long.
THROTTLE_DELAY = 30.0

#: Links followed at most; SDK chains are a handful deep, cycles are guarded separately.
MAX_CHAIN = 32

#: Errors of our own making (bad URL scheme, invalid outgoing HTTP): a client fault, never retried.
_OUR_FAULT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)

_TRANSPORT = (
    httpx.TimeoutException,
    httpx.TransportError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    socket.herror,
)

#: Errors proving no connection was made (so nothing was sent).
_NOT_CONNECTED = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.UnsupportedProtocol,
    ConnectionRefusedError,
    socket.gaierror,
)


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc` and every exception it was raised from or while handling, outermost first, each once.

    Follows `__cause__` before `__context__`, and follows a context hidden by
    `raise ... from None` too: an SDK that hides it still failed because of it.
    """
    seen: set[int] = set()
    stack = [exc] if exc is not None else []
    while stack and len(seen) < MAX_CHAIN:
        link = stack.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        for nxt in (link.__context__, link.__cause__):  # popped in reverse: cause first
            if isinstance(nxt, BaseException) and id(nxt) not in seen:
                stack.append(nxt)


def classify_status(status_code: int) -> str | None:
    """None for a success (1xx-3xx), else the failure class of an HTTP status."""
    if status_code < 400:
        return None
    if status_code == 429:
        return THROTTLE
    if status_code == 501:
        return CLIENT
    if status_code < 500:
        return CLIENT
    if status_code < 600:
        return UPSTREAM
    return UNKNOWN


def classify_exception(exc: BaseException) -> str:
    """The failure class of an exception, judged by the first link of its chain that tells."""
    link = deciding_link(exc)
    return UNKNOWN if link is None else _classify_link(link) or UNKNOWN


def provider_failure_class(provider: Any, exc: BaseException | None, response: Any) -> str | None:
    """The class a `ClassifiesFailures` provider gives a failed attempt, or None to use the defaults.

    A hook that raises or answers something else is logged and has no opinion: it never
    masks the failure it was asked about.
    """
    hook = getattr(provider, "classify_failure", None)  # ClassifiesFailures (read by name: no import)
    if hook is None:
        return None
    try:
        said = hook(exc, response)
    except Exception:
        logger.warning(
            "%s.classify_failure raised; the default classifier decides.", provider.key, exc_info=True
        )
        return None
    if said is None:
        return None
    if said not in PROVIDER_CLASSES:
        logger.warning(
            "%s.classify_failure returned %r, not one of upstream, throttle, client or None; "
            "the default classifier decides.",
            provider.key,
            said,
        )
        return None
    return FailureClass(said)


def deciding_link(exc: BaseException | None) -> BaseException | None:
    """The first link of the chain that says what kind of failure this is, or None."""
    return next((link for link in chain(exc) if _classify_link(link) is not None), None)


def _classify_link(link: BaseException) -> str | None:
    if isinstance(link, RetryableError):
        return UPSTREAM
    if isinstance(link, RateLimitExceeded):
        return THROTTLE
    status = _status_of(link)
    if status is not None:
        return classify_status(status) or UNKNOWN
    if isinstance(link, IntegrationsError):
        # The package's own refusals (breaker open, idempotency conflict, bad
        # configuration) say nothing about the upstream, whatever they were raised from.
        return UNKNOWN
    if isinstance(link, _OUR_FAULT):
        return CLIENT
    if isinstance(link, _TRANSPORT + _optional_transport_errors()):
        return UPSTREAM
    return None


def _optional_transport_errors() -> tuple[type[BaseException], ...]:
    """Connection errors of `requests` / `urllib3`, when the caller's SDK has imported them."""
    return _optional_classes(
        ("requests.exceptions", ("ConnectionError", "Timeout")),
        ("urllib3.exceptions", ("TimeoutError", "NewConnectionError", "ProtocolError", "MaxRetryError")),
    )


def _optional_not_connected() -> tuple[type[BaseException], ...]:
    return _optional_classes(
        ("requests.exceptions", ("ConnectTimeout",)),
        ("urllib3.exceptions", ("ConnectTimeoutError",)),  # NewConnectionError is a subclass
    )


def _optional_classes(*sources: tuple[str, tuple[str, ...]]) -> tuple[type[BaseException], ...]:
    """Classes of libraries already imported by someone else; never imports them itself."""
    found = []
    for module_name, names in sources:
        module = sys.modules.get(module_name)
        if module is not None:
            found += [getattr(module, name, None) for name in names]
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, BaseException))


def find_status(exc: BaseException | None) -> int | None:
    """The HTTP status carried by the first link of the chain that carries one."""
    for link in chain(exc):
        status = _status_of(link)
        if status is not None:
            return status
    return None


def _status_of(obj: Any) -> int | None:
    """An HTTP status found on an exception the way common SDKs expose it."""
    if isinstance(obj, IntegrationHTTPError | httpx.HTTPStatusError):
        status = obj.status_code if isinstance(obj, IntegrationHTTPError) else obj.response.status_code
        return status if _is_status(status) else None
    for name in ("status_code", "status", "http_status"):
        value = _safe_getattr(obj, name)
        if _is_status(value):
            return value
    response = _safe_getattr(obj, "response")
    if response is not None:
        for name in ("status_code", "status"):
            value = _safe_getattr(response, name)
            if _is_status(value):
                return value
        if isinstance(response, Mapping):  # botocore: response["ResponseMetadata"]["HTTPStatusCode"]
            meta = response.get("ResponseMetadata")
            value = meta.get("HTTPStatusCode") if isinstance(meta, Mapping) else None
            if _is_status(value):
                return value
    return None


def _is_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def _safe_getattr(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # a property that raises (e.g. httpx.HTTPError.request) tells nothing
        return None


def connection_never_established(exc: BaseException | None) -> bool:
    """True when the chain proves the request never reached the upstream.

    A refused or timed-out connect, a DNS failure, or a request that could not
    be sent at all: the upstream cannot have acted, so an idempotency key may
    be released.
    """
    classes = _NOT_CONNECTED + _optional_not_connected()
    return any(isinstance(link, classes) for link in chain(exc))


def find_retry_after(source: Any, *, now: datetime | None = None) -> float | None:
    """Seconds to wait, from a response's `Retry-After` or an exception that carries one.

    `source` is an `httpx.Response` (or any object with `.headers`) or an
    exception: each link of the chain is asked for a `retry_after` attribute
    (`RetryableError`, SDK errors), then for `.headers` / `.response.headers`.
    The package's own refusals (`RateLimitExceeded`, `CircuitOpenError`) carry
    our wait, not the upstream's, and are skipped.
    """
    if source is None:
        return None
    if not isinstance(source, BaseException):
        return _retry_after_from(source, now)
    for link in chain(source):
        if isinstance(link, RetryableError) or not isinstance(link, IntegrationsError):
            seconds = _seconds(_safe_getattr(link, "retry_after"))
            if seconds is not None:
                return seconds
        seconds = _retry_after_from(link, now)
        if seconds is not None:
            return seconds
        seconds = _retry_after_from(_safe_getattr(link, "response"), now)
        if seconds is not None:
            return seconds
    return None


def _retry_after_from(obj: Any, now: datetime | None) -> float | None:
    headers = _safe_getattr(obj, "headers")
    if headers is None:
        return None
    milliseconds = _seconds(_header(headers, "retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    return parse_retry_after(_header(headers, "retry-after"), now=now)


def _header(headers: Any, name: str) -> Any:
    try:
        value = headers.get(name)
        if value is None and isinstance(headers, Mapping):
            value = next((v for k, v in headers.items() if str(k).lower() == name), None)
        return value
    except Exception:
        return None


def parse_retry_after(value: Any, *, now: datetime | None = None) -> float | None:
    """A `Retry-After` value (delay-seconds or an HTTP-date) as seconds from now; None if invalid."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    seconds = _seconds(value)
    if seconds is not None or not isinstance(value, str):
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _seconds(value: Any) -> float | None:
    return parse_number(value)
