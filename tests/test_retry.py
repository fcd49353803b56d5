"""Retry decisions and delays: RetryableError, CustomizesRetry, then the defaults (SPEC 3.5)."""

from __future__ import annotations

import httpx
import pytest

from flask_integrations import (
    CircuitOpenError,
    CustomizesRetry,
    IntegrationHTTPError,
    Provider,
    RateLimitExceeded,
    RetryableError,
)
from flask_integrations.pipeline.retry import THROTTLE_DELAY, default_attempts, retry_delay
from tests.helpers.responses import REQUEST, response


class Plain(Provider):
    pass


PLAIN = Plain()


def delay(
    *,
    attempt: int = 1,
    max_attempts: int = 3,
    status: int | None = None,
    exc: BaseException | None = None,
    provider: object = PLAIN,
    retry_after_max: float = 600,
    response: httpx.Response | None = None,
) -> float | None:
    return retry_delay(
        attempt=attempt,
        max_attempts=max_attempts,
        status=status,
        exc=exc,
        provider=provider,
        retry_after_max=retry_after_max,
        response=response,
    )


# -- default attempts ----------------------------------------------------------


def test_get_defaults_to_three_attempts():
    assert default_attempts("GET") == 3
    assert default_attempts("get") == 3


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "customers.create"])
def test_other_verbs_default_to_one_attempt(method):
    assert default_attempts(method) == 1


# -- defaults ------------------------------------------------------------------


def test_5xx_waits_attempt_times_two_seconds():
    assert delay(attempt=1, status=503) == 2.0
    assert delay(attempt=2, status=500) == 4.0


def test_5xx_honours_the_upstreams_retry_after():
    assert delay(status=503, response=response(503, {"Retry-After": "7"})) == 7.0


def test_501_is_never_retried():
    assert delay(status=501) is None


def test_connection_error_waits_attempt_times_one_second():
    assert delay(attempt=1, exc=httpx.ConnectError("refused")) == 1.0
    assert delay(attempt=2, exc=httpx.ConnectError("refused")) == 2.0


def test_timeout_waits_attempt_times_one_second():
    assert delay(attempt=2, exc=httpx.ReadTimeout("slow")) == 2.0


def test_429_waits_retry_after():
    assert delay(status=429, response=response(429, {"Retry-After": "12"})) == 12.0


def test_429_without_retry_after_waits_thirty_seconds():
    assert delay(status=429) == THROTTLE_DELAY == 30.0


def test_429_retry_after_is_read_from_an_integration_http_error():
    exc = IntegrationHTTPError(429, response(429, {"Retry-After": "5"}))
    assert delay(exc=exc) == 5.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 422])
def test_4xx_other_than_429_is_never_retried(status):
    assert delay(status=status) is None


def test_unknown_exceptions_are_never_retried():
    assert delay(exc=ValueError("bug in the callable")) is None


def test_our_own_rate_limit_exceeded_is_not_retried():
    assert delay(exc=RateLimitExceeded(1, retry_after=5)) is None


def test_sdk_exception_chained_from_a_503_is_retried_like_a_503():
    try:
        try:
            resp = response(503)
            raise httpx.HTTPStatusError("503", request=REQUEST, response=resp)
        except httpx.HTTPStatusError as inner:
            raise RuntimeError("SDK failed") from inner
    except RuntimeError as exc:
        assert delay(attempt=1, exc=exc) == 2.0


def test_no_retry_once_attempts_are_spent():
    assert delay(attempt=3, max_attempts=3, status=503) is None
    assert delay(attempt=1, max_attempts=1, exc=httpx.ConnectError("x")) is None


def test_success_is_not_retried():
    assert delay(status=None, exc=None) is None


def test_every_delay_is_capped_by_retry_after_max():
    assert delay(status=429, response=response(429, {"Retry-After": "3600"}), retry_after_max=600) == 600.0
    assert delay(status=429, retry_after_max=10) == 10.0
    assert delay(attempt=2, status=503, retry_after_max=1) == 1.0


# -- RetryableError ------------------------------------------------------------


def test_retryable_error_always_retries_with_its_retry_after():
    assert delay(exc=RetryableError("again", retry_after=3)) == 3.0


def test_retryable_error_without_retry_after_waits_attempt_seconds():
    assert delay(attempt=2, exc=RetryableError("again")) == 2.0


def test_retryable_error_max_attempts_overrides_the_callers():
    exc = RetryableError("again", retry_after=1, max_attempts=5)
    assert delay(attempt=3, max_attempts=1, exc=exc) == 1.0
    assert delay(attempt=5, max_attempts=1, exc=exc) is None


def test_retryable_error_max_attempts_can_also_lower_the_limit():
    assert delay(attempt=2, max_attempts=5, exc=RetryableError("again", max_attempts=2)) is None


def test_retryable_error_is_retried_even_from_a_client_status():
    try:
        try:
            raise IntegrationHTTPError(409)
        except IntegrationHTTPError as inner:
            raise RetryableError("conflict, try later", retry_after=2) from inner
    except RetryableError as exc:
        assert delay(exc=exc) == 2.0


def test_retryable_error_wrapped_by_an_sdk_exception_still_retries():
    try:
        try:
            raise RetryableError("again", retry_after=4)
        except RetryableError as inner:
            raise RuntimeError("SDK callback failed") from inner
    except RuntimeError as exc:
        assert delay(exc=exc) == 4.0


def test_a_package_refusal_raised_while_handling_a_retryable_error_is_not_retried():
    try:
        try:
            raise RetryableError("again")
        except RetryableError:
            raise CircuitOpenError(1)  # noqa: B904 - the implicit context is what is tested
    except CircuitOpenError as exc:
        assert delay(exc=exc) is None


def test_retryable_error_delay_is_capped():
    assert delay(exc=RetryableError("again", retry_after=9999), retry_after_max=60) == 60.0


def test_retryable_error_is_not_overruled_by_the_provider():
    class Never(Provider, CustomizesRetry):
        def is_retryable(self, exc):
            return False

    assert delay(exc=RetryableError("again", retry_after=1), provider=Never()) == 1.0


# -- CustomizesRetry -----------------------------------------------------------


class Custom(Provider, CustomizesRetry):
    def __init__(self, retryable=None, wait=None):
        self.retryable, self.wait, self.seen = retryable, wait, []

    def is_retryable(self, exc):
        self.seen.append(("is_retryable", exc))
        return self.retryable

    def retry_delay(self, exc, attempt, status):
        self.seen.append(("retry_delay", exc, attempt, status))
        return self.wait


def test_provider_can_forbid_a_retry_the_defaults_would_make():
    assert delay(status=503, provider=Custom(retryable=False)) is None


def test_provider_can_allow_a_retry_the_defaults_would_not_make():
    assert delay(status=400, provider=Custom(retryable=True)) == 1.0


def test_provider_delay_replaces_the_default_delay():
    assert delay(status=503, provider=Custom(wait=0.25)) == 0.25


def test_provider_delay_is_capped():
    assert delay(status=503, provider=Custom(wait=10_000), retry_after_max=5) == 5.0


def test_provider_without_opinion_falls_back_to_the_defaults():
    assert delay(attempt=2, status=503, provider=Custom()) == 4.0
    assert delay(status=404, provider=Custom()) is None


def test_provider_cannot_extend_spent_attempts():
    assert delay(attempt=3, max_attempts=3, status=503, provider=Custom(retryable=True)) is None


def test_provider_hooks_receive_an_integration_http_error_for_a_plain_status():
    provider = Custom(retryable=True, wait=1)
    delay(attempt=2, status=503, provider=provider)
    (_, first), (_, second, attempt, status) = provider.seen
    assert isinstance(first, IntegrationHTTPError) and first.status_code == 503
    assert second is first and (attempt, status) == (2, 503)


def test_provider_hooks_receive_the_exception_itself():
    provider = Custom(retryable=True, wait=1)
    exc = httpx.ReadTimeout("slow")
    delay(exc=exc, provider=provider)
    assert provider.seen[0] == ("is_retryable", exc)


def test_a_provider_hook_that_raises_has_no_opinion(caplog):
    class Broken(Provider, CustomizesRetry):
        def is_retryable(self, exc):
            raise KeyError("oops")

    assert delay(attempt=1, status=503, provider=Broken()) == 2.0
    assert "falling back to the default retry rules" in caplog.text


def test_a_non_numeric_provider_delay_is_ignored():
    assert delay(attempt=1, status=503, provider=Custom(wait="soon")) == 2.0
