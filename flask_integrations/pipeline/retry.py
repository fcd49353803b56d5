"""When to try a call again, and how long to wait first (SPEC 3.5).

The order of precedence: a `RetryableError` always retries (its own
`retry_after` and `max_attempts` win); then a `CustomizesRetry` provider
decides; then the defaults, which retry only transient failures:

- 5xx except 501: `Retry-After` if the upstream sent one, else attempt x 2 s;
- connection errors and timeouts: attempt x 1 s;
- 429: `Retry-After`, else 30 s;
- any other 4xx, 501 and unknown exceptions: never.

Every delay is capped by `INTEGRATIONS_RETRY_AFTER_MAX`. Classification comes
from `classify.py`, the one place that says what kind of failure something is.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..errors import IntegrationHTTPError, RetryableError
from ..providers import CustomizesRetry
from .classify import (
    THROTTLE,
    THROTTLE_DELAY,
    UNKNOWN,
    UPSTREAM,
    classify_exception,
    classify_status,
    deciding_link,
    find_retry_after,
    find_status,
)

__all__ = ["THROTTLE_DELAY", "default_attempts", "retry_delay"]

logger = logging.getLogger("flask_integrations")


def default_attempts(method: str) -> int:
    """Attempts when the caller did not choose: GET is safe to repeat, other verbs are not."""
    return 3 if method.upper() == "GET" else 1


def retry_delay(
    *,
    attempt: int,
    max_attempts: int,
    status: int | None,
    exc: BaseException | None,
    provider: object,
    retry_after_max: float,
    response: Any = None,
    failure: str | None = None,
) -> float | None:
    """Seconds to wait before the next attempt, or None to stop and raise.

    `attempt` is the 1-based attempt that just failed. Pass `status` for an
    HTTP answer, `exc` for an exception (or both); `response` (the
    `httpx.Response`, when there is one) supplies `Retry-After`. `failure` is
    the class a `ClassifiesFailures` provider gave, which the defaults then follow.
    """
    retryable = deciding_link(exc)
    if isinstance(retryable, RetryableError):
        limit = retryable.max_attempts if retryable.max_attempts is not None else max_attempts
        if attempt >= limit:
            return None
        delay = _number(retryable.retry_after)
        if delay is None:
            delay = _retry_after(exc, response)
        return _cap(float(attempt) if delay is None else delay, retry_after_max)

    if attempt >= max_attempts or (exc is None and status is None):
        return None
    if status is None:
        status = find_status(exc)
    told = failure is not None
    failure = failure or _failure_class(status, exc)
    default = _default_delay(failure, status, exc, attempt, response, told)

    if isinstance(provider, CustomizesRetry):
        seen = exc if exc is not None else IntegrationHTTPError(status, response)
        decision = _ask(provider.is_retryable, seen)
        if decision is False or (decision is None and default is None):
            return None
        custom = _number(_ask(provider.retry_delay, seen, attempt, status))
        if custom is not None:
            return _cap(custom, retry_after_max)
        if default is None:  # the provider made retryable what the defaults would not retry
            default = _retry_after(exc, response)
            default = float(attempt) if default is None else default
        return _cap(default, retry_after_max)

    return None if default is None else _cap(default, retry_after_max)


def _failure_class(status: int | None, exc: BaseException | None) -> str | None:
    failure = classify_exception(exc) if exc is not None else None
    if failure in (None, UNKNOWN) and status is not None:
        failure = classify_status(status)
    return failure


def _default_delay(
    failure: str | None,
    status: int | None,
    exc: BaseException | None,
    attempt: int,
    response: Any,
    told: bool,
) -> float | None:
    """The default wait for a failure class, None for failures not worth repeating (`told`: the
    provider classified it, so a throttle without a 429 is the upstream's, never our limiter's)."""
    if failure == UPSTREAM:
        if status is not None and 500 <= status <= 599:
            after = _retry_after(exc, response)
            return attempt * 2.0 if after is None else after
        return attempt * 1.0
    if failure == THROTTLE and (status == 429 or told):
        after = _retry_after(exc, response)
        return THROTTLE_DELAY if after is None else after
    # 4xx other than 429, 501, unknown exceptions, and our own RateLimitExceeded
    # (the limiter already waited as long as it may, SPEC 3.3): not retried.
    return None


def _retry_after(exc: BaseException | None, response: Any) -> float | None:
    found = find_retry_after(response) if response is not None else None
    return find_retry_after(exc) if found is None else found


def _ask(hook: Any, *args: Any) -> Any:
    """Call a provider hook; one that raises has no opinion (and is logged), never masks the failure."""
    try:
        return hook(*args)
    except Exception:
        logger.warning("%s raised; falling back to the default retry rules.", hook, exc_info=True)
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return max(0.0, float(value))


def _cap(delay: float, retry_after_max: float) -> float:
    return max(0.0, min(float(delay), float(retry_after_max)))
