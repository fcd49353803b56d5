"""The one failure classifier: statuses, exceptions, SDK chains, Retry-After, unconnected calls."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from flask_integrations import (
    CircuitOpenError,
    IdempotencyConflict,
    IntegrationHTTPError,
    RateLimitExceeded,
    RetryableError,
)
from flask_integrations.pipeline.classify import (
    CLIENT,
    THROTTLE,
    UNKNOWN,
    UPSTREAM,
    chain,
    classify_exception,
    classify_status,
    connection_never_established,
    find_retry_after,
    find_status,
    parse_retry_after,
)
from tests.helpers.responses import response, status_error


class SDKError(Exception):
    """An SDK's own exception with no status of its own."""


def raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` raised `from inner`, as an SDK wraps the httpx error it caught."""
    try:
        try:
            raise inner
        except BaseException as caught:
            raise outer from caught
    except BaseException as wrapped:
        return wrapped


def raised_while_handling(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` raised inside `except inner` without `from` (implicit `__context__`)."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit context is what is tested
    except BaseException as wrapped:
        return wrapped


# -- statuses ------------------------------------------------------------------


@pytest.mark.parametrize("status", [100, 200, 201, 204, 301, 304, 399])
def test_success_statuses_are_not_failures(status):
    assert classify_status(status) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_5xx_except_501_is_upstream(status):
    assert classify_status(status) == UPSTREAM


def test_501_is_client():
    assert classify_status(501) == CLIENT


def test_429_is_throttle():
    assert classify_status(429) == THROTTLE


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 422, 499])
def test_other_4xx_are_client(status):
    assert classify_status(status) == CLIENT


def test_a_status_beyond_599_is_unknown():
    assert classify_status(600) == UNKNOWN


# -- exceptions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.ReadTimeout("slow read"),
        httpx.PoolTimeout("pool"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("peer closed"),
        ConnectionRefusedError("refused"),
        ConnectionResetError("reset"),
        TimeoutError("timed out"),
        socket.gaierror(-2, "Name or service not known"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_errors_and_timeouts_are_upstream(exc):
    assert classify_exception(exc) == UPSTREAM


def test_retryable_error_is_upstream():
    assert classify_exception(RetryableError("try again")) == UPSTREAM


def test_retryable_error_wins_over_the_client_status_it_was_raised_from():
    assert classify_exception(raised_from(RetryableError("again"), status_error(400))) == UPSTREAM


def test_rate_limit_exceeded_is_throttle():
    assert classify_exception(RateLimitExceeded(1, retry_after=3)) == THROTTLE


def test_integration_http_error_is_classified_by_its_status():
    assert classify_exception(IntegrationHTTPError(503)) == UPSTREAM
    assert classify_exception(IntegrationHTTPError(404)) == CLIENT
    assert classify_exception(IntegrationHTTPError(429)) == THROTTLE


def test_httpx_status_error_is_classified_by_its_response():
    assert classify_exception(status_error(502)) == UPSTREAM
    assert classify_exception(status_error(422)) == CLIENT


def test_sdk_exception_raised_from_an_httpx_status_error_is_classified_by_that_status():
    exc = raised_from(SDKError("server exploded"), status_error(503))
    assert classify_exception(exc) == UPSTREAM
    assert find_status(exc) == 503


def test_sdk_exception_raised_while_handling_a_connect_error_is_upstream():
    exc = raised_while_handling(SDKError("could not reach API"), httpx.ConnectError("refused"))
    assert classify_exception(exc) == UPSTREAM


def test_context_hidden_by_raise_from_none_is_still_followed():
    try:
        try:
            raise httpx.ReadTimeout("slow")
        except httpx.ReadTimeout:
            raise SDKError("timeout") from None
    except SDKError as exc:
        assert classify_exception(exc) == UPSTREAM


def test_sdk_exception_with_a_status_code_attribute_is_classified_by_it():
    exc = SDKError("not found")
    exc.status_code = 404
    assert classify_exception(exc) == CLIENT


def test_sdk_exception_with_a_status_attribute_is_classified_by_it():
    exc = SDKError("overloaded")
    exc.status = 503
    assert classify_exception(exc) == UPSTREAM


def test_stripe_style_http_status_attribute_is_read():
    exc = SDKError("card declined")
    exc.http_status = 402
    assert find_status(exc) == 402


def test_sdk_exception_with_a_response_object_is_classified_by_its_status():
    exc = SDKError("rate limited")
    exc.response = response(429)
    assert classify_exception(exc) == THROTTLE


def test_botocore_style_response_dict_is_read():
    exc = SDKError("throttled")
    exc.response = {"ResponseMetadata": {"HTTPStatusCode": 500}}
    assert find_status(exc) == 500


def test_non_http_status_attributes_are_ignored():
    exc = SDKError("odd")
    exc.status = "failed"
    exc.status_code = True
    assert find_status(exc) is None
    assert classify_exception(exc) == UNKNOWN


def test_an_unrelated_exception_is_unknown():
    assert classify_exception(ValueError("bad value")) == UNKNOWN
    assert classify_exception(KeyError("id")) == UNKNOWN


def test_an_unsupported_url_scheme_is_client_not_upstream():
    assert classify_exception(httpx.UnsupportedProtocol("ftp://")) == CLIENT


def test_package_refusals_are_unknown_even_when_raised_while_handling_an_upstream_error():
    breaker = raised_while_handling(CircuitOpenError(1), httpx.ConnectError("refused"))
    conflict = raised_while_handling(IdempotencyConflict(1, "k"), status_error(503))
    assert classify_exception(breaker) == UNKNOWN
    assert classify_exception(conflict) == UNKNOWN


def test_a_cyclic_chain_ends():
    first, second = SDKError("a"), SDKError("b")
    first.__cause__, second.__cause__ = second, first
    assert classify_exception(first) == UNKNOWN
    assert list(chain(first)) == [first, second]


def test_chain_visits_the_cause_before_the_context():
    cause, context, outer = SDKError("cause"), SDKError("context"), SDKError("outer")
    outer.__cause__, outer.__context__ = cause, context
    assert list(chain(outer)) == [outer, cause, context]


def test_requests_connection_errors_are_upstream():
    requests = pytest.importorskip("requests")
    assert classify_exception(requests.exceptions.ConnectionError("down")) == UPSTREAM
    assert classify_exception(requests.exceptions.ReadTimeout("slow")) == UPSTREAM


# -- find_status ---------------------------------------------------------------


def test_find_status_is_none_without_a_status():
    assert find_status(httpx.ConnectError("x")) is None
    assert find_status(None) is None


def test_find_status_takes_the_outermost_status():
    assert find_status(raised_from(IntegrationHTTPError(502), status_error(500))) == 502


# -- Retry-After ---------------------------------------------------------------


def test_retry_after_seconds_from_a_response():
    assert find_retry_after(response(503, {"Retry-After": "7"})) == 7.0


def test_retry_after_http_date_from_a_response():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert find_retry_after(response(429, {"Retry-After": header}), now=now) == 90.0


def test_retry_after_date_in_the_past_is_zero():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize("value", ["soon", "-5", "", "nan", "inf", None])
def test_invalid_retry_after_is_none(value):
    assert parse_retry_after(value) is None


def test_retry_after_ms_header_is_read_in_seconds():
    assert find_retry_after(response(429, {"retry-after-ms": "1500"})) == 1.5


def test_retry_after_missing_is_none():
    assert find_retry_after(response(503)) is None


def test_retry_after_from_an_httpx_status_error():
    assert find_retry_after(status_error(429, {"Retry-After": "12"})) == 12.0


def test_retry_after_from_an_sdk_exception_raised_from_a_status_error():
    assert (
        find_retry_after(raised_from(SDKError("slow down"), status_error(429, {"Retry-After": "4"}))) == 4.0
    )


def test_retry_after_from_a_plain_headers_dict_is_case_insensitive():
    exc = SDKError("slow down")
    exc.headers = {"RETRY-AFTER": "3"}
    assert find_retry_after(exc) == 3.0


def test_retry_after_of_a_retryable_error():
    assert find_retry_after(RetryableError("again", retry_after=2.5)) == 2.5


def test_our_own_rate_limiter_wait_is_not_an_upstream_retry_after():
    assert find_retry_after(RateLimitExceeded(1, retry_after=40)) is None


def test_find_retry_after_of_none_is_none():
    assert find_retry_after(None) is None


# -- connection never established ----------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        ConnectionRefusedError("refused"),
        socket.gaierror(-2, "Name or service not known"),
        httpx.UnsupportedProtocol("ftp://"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connect_failures_prove_nothing_was_sent(exc):
    assert connection_never_established(exc)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow read"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("peer closed"),
        ConnectionResetError("reset"),
        IntegrationHTTPError(503),
        SDKError("?"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_failures_after_connecting_do_not_prove_anything(exc):
    assert not connection_never_established(exc)


def test_connect_error_deep_in_an_sdk_chain_proves_nothing_was_sent():
    inner = raised_from(SDKError("transport"), httpx.ConnectError("refused"))
    assert connection_never_established(raised_while_handling(SDKError("api"), inner))


def test_connection_never_established_of_none_is_false():
    assert not connection_never_established(None)
