"""`integration.failure_summary(hours=24)` (SPEC 15): the figures the dashboard and the CLI show."""

from __future__ import annotations

import dataclasses
import re

import pytest

from flask_integrations import FailureSummary, IntegrationHTTPError, Provider, TopError
from tests.helpers.rows import add_requests, seed_figures


class Api(Provider):
    """A provider whose calls go to the loopback upstream by full URL."""


@pytest.fixture
def app(app_factory, upstream):
    app = app_factory(INTEGRATIONS_RETRY_AFTER_MAX=0.01)
    app.extensions["integrations"].register("api", Api)
    return app


def test_summary_counts_real_calls_by_failure_class(ext, integration, upstream):
    api = ext.create("api", "API", {})
    for _ in range(2):
        api.at("ok").get(upstream.url + "/json")
    for status in (404, 429, 503):
        with pytest.raises(IntegrationHTTPError):
            api.at("fails").with_attempts(1).get(f"{upstream.url}/status/{status}")

    summary = api.failure_summary()

    assert isinstance(summary, FailureSummary)
    assert (summary.integration_id, summary.hours) == (api.id, 24)
    assert (summary.requests, summary.failures) == (5, 3)
    assert summary.error_rate == pytest.approx(0.6)
    assert summary.by_class == {"client": 1, "throttle": 1, "upstream": 1}
    assert summary.p50_ms is not None and summary.p95_ms >= summary.p50_ms
    assert sorted(summary.top_errors, key=lambda e: e.error) == [
        TopError(1, "HTTP 404"),
        TopError(1, "HTTP 429"),
        TopError(1, "HTTP 503"),
    ]


def test_summary_reads_the_window_percentiles_and_orders_top_errors(integration):
    seed_figures(integration.id)

    day = integration.failure_summary()
    two_days = integration.failure_summary(hours=48)

    assert (day.requests, day.failures) == (10, 5)
    assert (day.p50_ms, day.p95_ms) == pytest.approx((55, 95.5))
    assert day.by_class == {"upstream": 3, "throttle": 1, "client": 1}
    assert day.top_errors[0] == TopError(2, "HTTP 503")
    assert len(day.top_errors) == 4
    assert (two_days.requests, two_days.failures) == (11, 6)
    assert two_days.by_class["upstream"] == 4


def test_a_failure_status_without_a_class_counts_as_unknown(integration):
    add_requests(integration.id, {"status_code": 502, "error": None, "failure_class": None})
    assert integration.failure_summary().by_class == {"unknown": 1}


def test_top_errors_are_the_stored_texts_with_credentials_scrubbed(integration):
    def leaky():
        raise RuntimeError("login failed for key sk-live-123")

    with pytest.raises(RuntimeError):
        integration.at("sdk").with_attempts(1).post(leaky)

    (top,) = integration.failure_summary().top_errors
    assert top.count == 1
    assert "sk-live-123" not in top.error
    assert top.error.startswith("RuntimeError: login failed for key")


def test_an_integration_without_requests_has_an_empty_summary(integration):
    summary = integration.failure_summary(hours=1)
    assert (summary.requests, summary.failures, summary.error_rate) == (0, 0, None)
    assert (summary.p50_ms, summary.p95_ms, summary.by_class, summary.top_errors) == (None, None, {}, ())


def test_the_summary_is_frozen(integration):
    with pytest.raises(dataclasses.FrozenInstanceError):
        integration.failure_summary().requests = 1


@pytest.mark.parametrize("hours", [0, -1, "24", True, None])
def test_hours_must_be_a_positive_number(integration, hours):
    with pytest.raises(ValueError, match="failure_summary\\(\\) needs hours as a positive number"):
        integration.failure_summary(hours=hours)


def test_the_cli_and_the_dashboard_show_the_summary(app, integration):
    seed_figures(integration.id)
    summary = integration.failure_summary()
    output = app.test_cli_runner().invoke(args=["integrations", "health"]).output
    row = next(line for line in output.splitlines() if line.split()[:2] == [str(integration.id), "tickets"])
    assert re.search(rf"\b{summary.requests}\s+50\.0%\s+55 ms\s+95\.5 ms$", row)
    for error in summary.top_errors[:3]:
        assert re.search(rf"{integration.id}\s+{error.count}\s+{re.escape(error.error)}\n", output)
    page = app.test_client().get("/integrations/dashboard/").get_data(as_text=True)
    explore = f"/integrations/dashboard/requests?integration={integration.id}&amp;window=24h"
    assert f'<td class="num requests"><a href="{explore}">{summary.requests}</a></td>' in page
    assert '<td class="num p50">55 ms</td>' in page
