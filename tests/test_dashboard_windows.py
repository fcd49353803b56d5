"""The time window of the overview and the integration page (SPEC section 14): `?window=1h|24h|7d`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from flask_integrations import Integration
from flask_integrations.clock import utcnow
from tests.helpers.app import Loose, Tickets
from tests.helpers.dashboard import DASH, cell, create_tickets, html, row_of, statements_of
from tests.helpers.rows import add_requests, failure

#: The rows every test here starts from: one in each window and one older than all of them.
AGES = {"30 min": timedelta(minutes=30), "5 h": timedelta(hours=5), "3 days": timedelta(days=3)}
TOO_OLD = timedelta(days=10)


@pytest.fixture
def app(app_factory) -> Flask:
    return app_factory(INTEGRATIONS_PROVIDERS={"tickets": Tickets, "loose": Loose})


@pytest.fixture
def tickets(ext, ctx) -> Integration:
    return create_tickets(ext, "sk-test")


@pytest.fixture
def history(tickets: Integration) -> dict[str, datetime]:
    """30 min ago 10 ms, 5 h ago 20 ms, 3 days ago a 503 of 30 ms, 10 days ago 40 ms; their times."""
    now = utcnow()
    times = {name: now - age for name, age in AGES.items()} | {"10 days": now - TOO_OLD}
    add_requests(
        tickets.id,
        {"at": times["30 min"], "duration_ms": 10},
        {"at": times["5 h"], "duration_ms": 20},
        failure(503, "HTTP 503", at=times["3 days"], duration_ms=30),
        {"at": times["10 days"], "duration_ms": 40},
    )
    return times


def chart_of(page: str) -> str:
    match = re.search(r'<svg id="activity-chart".*?</svg>', page, re.S)
    assert match, "the page has no activity chart"
    return match.group(0)


def bar_titles(page: str) -> list[str]:
    """The bars' titles, oldest first (the chart's own <title> comes before them)."""
    return re.findall(r'<a class="bar" href="[^"]*">\s*<title>([^<]*)</title>', chart_of(page))


def x_labels(page: str) -> list[str]:
    axis = re.search(r'<g class="axis x-axis">(.*?)</g>', chart_of(page), re.S).group(1)
    return re.findall(r"<text[^>]*>([^<]*)</text>", axis)


def bucket_of(moment: datetime, length: timedelta) -> datetime:
    seconds = int(length.total_seconds())
    return datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, UTC)


def window_links(page: str) -> dict[str, str]:
    """{label: href} of the page's window selector."""
    nav = re.search(r'<nav class="windows"[^>]*>(.*?)</nav>', page, re.S)
    assert nav, "the page has no window selector"
    return {label: href for href, label in re.findall(r'<a href="([^"]*)"[^>]*>([^<]*)</a>', nav.group(1))}


# -- overview ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "heading", "figures"),
    [
        ("?window=1h", "Requests 1 h", ("1", "0.0%", "10 ms")),
        ("", "Requests 24 h", ("2", "0.0%", "15 ms")),
        ("?window=24h", "Requests 24 h", ("2", "0.0%", "15 ms")),
        ("?window=7d", "Requests 7 d", ("3", "33.3%", "20 ms")),
    ],
)
def test_the_overview_figures_and_their_heading_follow_the_window(
    client, tickets, history, query, heading, figures
):
    page = html(client.get(f"{DASH}/{query}"))

    row = row_of(page, "data-integration-id", tickets.id)
    assert (cell(row, "requests"), cell(row, "error-rate"), cell(row, "p50")) == figures
    assert f">{heading}</th>" in page
    assert 'id="invalid-filters"' not in page


def test_the_overview_says_the_window_in_its_column_titles(client, history):
    page = html(client.get(f"{DASH}/?window=1h"))
    assert 'title="request attempts in the last hour"' in page
    assert 'title="95th percentile duration in the last hour"' in page
    assert 'title="request attempts in the last 7 days"' in html(client.get(f"{DASH}/?window=7d"))


# -- integration page --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "heading", "summary"),
    [
        ("1h", "last 1 h · 1 request, 0 errors", "No failed attempts in the last 1 h."),
        ("24h", "last 24 h · 2 requests, 0 errors", "No failed attempts in the last 24 h."),
        ("7d", "last 7 d · 3 requests, 1 error", "1 failed of 3:"),
    ],
)
def test_the_integration_pages_activity_and_failures_follow_the_window(
    client, tickets, history, window, heading, summary
):
    page = html(client.get(f"{DASH}/integrations/{tickets.id}?window={window}"))

    assert f'<span class="muted">{heading}</span></h2>' in page
    failures = re.search(r'<p id="failure-summary"[^>]*>(.*?)</p>', page, re.S).group(1)
    assert summary in re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", failures))


def test_the_chart_has_twelve_five_minute_bars_over_an_hour(client, tickets, history):
    page = html(client.get(f"{DASH}/integrations/{tickets.id}?window=1h"))

    titles = bar_titles(page)
    assert len(titles) == 12
    start = bucket_of(history["30 min"], timedelta(minutes=5))
    bar = f"{start:%Y-%m-%d %H:%M}–{start + timedelta(minutes=5):%H:%M} UTC: 1 request, 0 errors"
    assert bar in titles
    assert sum(t.endswith(": 0 requests, 0 errors") for t in titles) == 11
    assert "Requests and errors per 5 minutes, last hour: 1 request, 0 errors" in page
    assert "· per 5 minutes, UTC" in page
    labels = x_labels(page)
    assert len(labels) == 4 and all(re.fullmatch(r"\d\d:(00|15|30|45)", label) for label in labels)


def test_the_chart_has_twenty_four_hourly_bars_over_a_day(client, tickets, history):
    page = html(client.get(f"{DASH}/integrations/{tickets.id}"))

    titles = bar_titles(page)
    assert len(titles) == 24
    for name in ("30 min", "5 h"):
        start = bucket_of(history[name], timedelta(hours=1))
        assert f"{start:%Y-%m-%d %H}:00–{start + timedelta(hours=1):%H}:00 UTC: 1 request, 0 errors" in titles
    assert "Requests and errors per hour, last 24 hours: 2 requests, 0 errors" in page
    assert set(x_labels(page)) == {"00:00", "06:00", "12:00", "18:00"}


def test_the_chart_has_twenty_eight_six_hour_bars_over_a_week(client, tickets, history):
    page = html(client.get(f"{DASH}/integrations/{tickets.id}?window=7d"))

    titles = bar_titles(page)
    assert len(titles) == 28
    start = bucket_of(history["3 days"], timedelta(hours=6))
    assert f"{start:%Y-%m-%d %H:%M}–{start + timedelta(hours=6):%H:%M} UTC: 1 request, 1 error" in titles
    assert start.hour in (0, 6, 12, 18)
    assert "Requests and errors per 6 hours, last 7 days: 3 requests, 1 error" in page
    days = [(utcnow() - timedelta(days=n)).strftime("%b %d") for n in range(6, -1, -1)]
    assert x_labels(page) == days


# -- an invalid window -------------------------------------------------------------------------


def test_an_invalid_window_is_reported_and_the_default_used(client, tickets, history):
    said = "Ignored window=&#39;2d&#39;: expected one of 1h, 24h, 7d."

    overview = html(client.get(f"{DASH}/?window=2d"))
    integration = html(client.get(f"{DASH}/integrations/{tickets.id}?window=2d"))

    assert said in overview and said in integration
    assert cell(row_of(overview, "data-integration-id", tickets.id), "requests") == "2"
    assert ">Requests 24 h</th>" in overview
    assert len(bar_titles(integration)) == 24
    assert "last 24 h · 2 requests, 0 errors" in integration


# -- the selector and the links ----------------------------------------------------------------


def test_the_overviews_window_links_keep_its_filters_and_its_links_keep_the_window(client, tickets):
    page = html(client.get(f"{DASH}/?provider=tickets&health=healthy&window=7d"))

    assert window_links(page) == {
        short: f"{DASH}/?provider=tickets&amp;health=healthy&amp;window={name}"
        for short, name in (("1 h", "1h"), ("24 h", "24h"), ("7 d", "7d"))
    }
    assert re.search(r'<a href="[^"]*window=7d"[^>]*aria-current="true"[^>]*>7 d</a>', page)
    assert f'href="{DASH}/integrations/{tickets.id}?window=7d">Acme tickets</a>' in page
    assert '<input type="hidden" name="window" value="7d">' in page  # the filter form keeps it
    assert f'<a class="clear" href="{DASH}/?window=7d">Clear</a>' in page


def test_the_default_window_adds_nothing_to_the_overviews_links(client, tickets):
    page = html(client.get(f"{DASH}/"))

    assert f'href="{DASH}/integrations/{tickets.id}">Acme tickets</a>' in page
    assert 'name="window"' not in page
    assert re.search(r'<a href="[^"]*window=24h"[^>]*aria-current="true"[^>]*>24 h</a>', page)


def test_the_integration_pages_window_links_keep_the_request_log_filters(client, tickets):
    base = f"{DASH}/integrations/{tickets.id}"
    page = html(client.get(f"{base}?endpoint=tickets&status=5xx&page=2&window=1h"))

    assert (
        window_links(page)["7 d"]
        == f"{base}?endpoint=tickets&amp;status=5xx&amp;page=2&amp;window=7d#activity"
    )
    assert re.search(r'<a href="[^"]*window=1h#activity"[^>]*aria-current="true"[^>]*>1 h</a>', page)
    assert f'<a href="{DASH}/?window=1h">Overview</a>' in page  # the breadcrumb
    assert '<input type="hidden" name="window" value="1h">' in page  # the request filter form keeps it
    assert f'<a class="clear" href="{base}?window=1h#requests">Clear</a>' in page


# -- queries -----------------------------------------------------------------------------------


def test_each_pages_number_of_queries_is_the_same_for_every_window_and_any_number_of_rows(
    app, client, ext, tickets, history
):
    tickets_id = tickets.id
    pages = {"overview": f"{DASH}/", "integration": f"{DASH}/integrations/{tickets_id}"}

    def counts() -> dict[str, set[int]]:
        """Each page's statement counts over the three windows."""
        return {
            name: {statements_of(app, client, f"{url}?window={w}") for w in ("1h", "24h", "7d")}
            for name, url in pages.items()
        }

    few = counts()
    for n in range(30):
        other = ext.create("loose", f"Loose {n}", {})
        add_requests(other.id, {"hours_ago": n}, failure(500, "HTTP 500", hours_ago=n * 5))
    add_requests(tickets_id, *({"hours_ago": n, "duration_ms": n + 1} for n in range(0, 24 * 8, 2)))
    many = counts()

    assert many == few
    assert all(len(each) == 1 for each in many.values())  # the window changes no query's number
