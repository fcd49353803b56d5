"""The requests explorer (SPEC section 14): every filter, its invalid values, figures, keyset pages."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_integrations import Integration
from flask_integrations.clock import utcnow
from flask_integrations.state import current_state
from flask_integrations.web.dashboard import explorer
from tests.helpers.app import Loose, Tickets, db
from tests.helpers.dashboard import create_tickets, html, statements_of
from tests.helpers.rows import add_requests, failure, seed_figures

EXPLORER = "/integrations/dashboard/requests"
SECRET = "sk-live-EXPLORER-91b2"


@pytest.fixture
def app(app_factory) -> Flask:
    return app_factory(INTEGRATIONS_PROVIDERS={"tickets": Tickets, "loose": Loose})


@pytest.fixture
def tickets(ext, ctx) -> Integration:
    return create_tickets(ext, SECRET)


@pytest.fixture
def loose(ext, ctx) -> Integration:
    return ext.create("loose", "Loose CRM", {"token": "t"})


def shown_ids(page: str) -> list[int]:
    """The request ids of the explorer's rows, in page order."""
    return [int(i) for i in re.findall(r'<tr data-request-id="(\d+)"', page)]


def figure(page: str, name: str) -> str:
    match = re.search(rf'<dd id="figure-{name}">(.*?)</dd>', page, re.S)
    assert match, f"no figure {name}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def ids_where(**columns: Any) -> list[int]:
    """The ids of request rows with these column values, newest first (as the explorer lists them)."""
    t = current_state().tables["requests"]
    query = sa.select(t.c.id).order_by(t.c.created_at.desc(), t.c.id.desc())
    for name, value in columns.items():
        query = query.where(t.c[name] == value)
    return list(db.session.scalars(query))


def invalid_messages(page: str) -> list[str]:
    block = re.search(r'<div class="flashes" role="status" id="invalid-filters">(.*?)</div>', page, re.S)
    return re.findall(r"<p[^>]*>([^<]*)</p>", block.group(1)) if block else []


@pytest.fixture
def varied(tickets: Integration, loose: Integration) -> dict[str, int]:
    """One row of each kind the filters tell apart, a minute old unless said otherwise."""
    add_requests(
        tickets.id,
        {"endpoint": "orders/{id}", "method": "GET", "duration_ms": 40, "provider_request_id": "req-aaa"},
        failure(404, "HTTP 404", "client", endpoint="orders", method="GET", duration_ms=30),
        failure(503, "HTTP 503", endpoint="invoices.create", method="POST", duration_ms=2500),
        failure(None, "ConnectError: refused", endpoint="search", method="GET", duration_ms=5),
        {"endpoint": "orders", "method": "PATCH", "duration_ms": 60, "hours_ago": 5},
        {"endpoint": "orders", "method": "GET", "duration_ms": 70, "hours_ago": 72},
        {"endpoint": "orders", "method": "GET", "duration_ms": 80, "hours_ago": 24 * 20},
    )
    add_requests(
        loose.id,
        failure(429, "HTTP 429", "throttle", endpoint="contacts", method="GET", duration_ms=15),
        {"endpoint": "contacts_100%", "method": "DELETE", "duration_ms": 20},
    )
    return {"tickets": tickets.id, "loose": loose.id}


# -- filters -------------------------------------------------------------------------------------


#: The rows of the default window (24 h), by label (`label_of`).
LAST_DAY = {"orders/{id}", "orders", "invoices.create", "search", "orders PATCH", "contacts", "contacts_100%"}

CASES = [
    # (query string, the labels of the rows shown; the test checks their order, newest first)
    ("", LAST_DAY),
    ("window=1h", LAST_DAY - {"orders PATCH"}),
    ("window=7d", LAST_DAY | {"orders 72h"}),
    ("window=30d", LAST_DAY | {"orders 72h", "orders 20d"}),
    ("provider=loose", {"contacts", "contacts_100%"}),
    ("endpoint=orders", {"orders/{id}", "orders", "orders PATCH"}),
    ("endpoint=orders/", {"orders/{id}"}),
    ("endpoint=contacts_1", {"contacts_100%"}),  # _ is not a wildcard
    ("endpoint=contacts_100%25", {"contacts_100%"}),  # nor is %
    ("method=post", {"invoices.create"}),
    ("method=DELETE", {"contacts_100%"}),
    ("status=404", {"orders"}),
    ("status=5xx", {"invoices.create"}),
    ("status=4XX", {"orders", "contacts"}),
    ("status=none", {"search"}),
    ("failure_class=throttle", {"contacts"}),
    ("failure_class=any", {"orders", "invoices.create", "search", "contacts"}),
    ("failure_class=none", {"orders/{id}", "orders PATCH", "contacts_100%"}),
    ("min_duration=60", {"invoices.create", "orders PATCH"}),
    ("provider_request_id=req-aaa", {"orders/{id}"}),
    ("provider_request_id=req-nope", set()),
    ("provider=tickets&status=4xx&method=get", {"orders"}),
]


def label_of(row: dict[str, Any]) -> str:
    hours = row["hours"]
    suffix = {5: " PATCH", 72: " 72h", 480: " 20d"}.get(hours, "")
    return row["endpoint"] + suffix


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[c[0] or "default" for c in CASES])
def test_each_filter_narrows_the_rows(client, varied, query: str, expected: set[str]) -> None:
    page = html(client.get(f"{EXPLORER}?{query}"))

    assert invalid_messages(page) == []
    t = current_state().tables["requests"]
    rows = db.session.execute(sa.select(t.c.id, t.c.endpoint, t.c.created_at)).all()
    now = utcnow()
    labels = {
        r.id: label_of({"endpoint": r.endpoint, "hours": round((now - r.created_at).total_seconds() / 3600)})
        for r in rows
    }
    ids = shown_ids(page)
    assert {labels[i] for i in ids} == expected
    assert len(ids) == len(expected)
    created = {r.id: r.created_at for r in rows}
    assert [created[i] for i in ids] == sorted((created[i] for i in ids), reverse=True)  # newest first


def test_the_integration_filter_and_its_links(client, varied) -> None:
    page = html(client.get(f"{EXPLORER}?integration={varied['loose']}"))

    assert len(shown_ids(page)) == 2
    assert f'href="/integrations/dashboard/integrations/{varied["loose"]}"' in page
    for request_id in shown_ids(page):
        assert f'href="/integrations/dashboard/requests/{request_id}"' in page


def test_from_and_to_replace_the_window(client, tickets) -> None:
    day = (utcnow() - timedelta(days=10)).replace(hour=12, minute=0, second=0, microsecond=0)
    add_requests(
        tickets.id,
        {"endpoint": "day-before", "at": day - timedelta(days=1)},
        {"endpoint": "morning", "at": day - timedelta(hours=6)},
        {"endpoint": "noon", "at": day},
        {"endpoint": "evening", "at": day + timedelta(hours=8)},
        {"endpoint": "day-after", "at": day + timedelta(days=1)},
    )
    date = day.date().isoformat()

    def endpoints(query: str) -> list[str]:
        page = html(client.get(f"{EXPLORER}?{query}"))
        assert invalid_messages(page) == []
        return re.findall(r'<td class="endpoint"><a [^>]+>([^<]+)</a>', page)

    assert endpoints(f"from={date}&to={date}") == ["evening", "noon", "morning"]  # the whole day
    assert endpoints(f"from={date}T12:00&to={date}T20:00") == ["noon"]  # to is exclusive
    assert endpoints(f"from={date}T12:00:00Z") == ["day-after", "evening", "noon"]
    assert endpoints(f"to={date}") == ["evening", "noon", "morning", "day-before"]
    assert endpoints(f"from={date}&window=1h") == ["day-after", "evening", "noon", "morning"]


INVALID = [
    ("window=2w", "Ignored window='2w': expected one of 1h, 24h, 7d, 30d."),
    ("status=abc", "Ignored status='abc': expected a status code such as 404, a class such as 5xx, or none."),
    ("status=700", "Ignored status='700'"),
    ("failure_class=bogus", "Ignored failure_class='bogus': expected one of upstream, throttle, client"),
    ("min_duration=fast", "Ignored min_duration='fast': expected a number of milliseconds."),
    ("min_duration=-5", "Ignored min_duration='-5'"),
    ("from=yesterday", "Ignored from='yesterday': expected a date or a date and time"),
    ("to=2026-13-01", "Ignored to='2026-13-01'"),
    ("integration=abc", "Ignored integration='abc': expected an id."),
    ("provider=nope", "Ignored provider='nope': expected one of loose, tickets."),
    ("before=x1", "Ignored before='x1': expected a request id."),
    ("before=999999", "Ignored before='999999': expected the id of a stored request."),
    ("after=999999", "Ignored after='999999': expected the id of a stored request."),
]


@pytest.mark.parametrize(("query", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_an_invalid_value_is_reported_and_ignored(client, varied, query: str, message: str) -> None:
    page = html(client.get(f"{EXPLORER}?{query}"))

    messages = invalid_messages(page)
    assert len(messages) == 1 and messages[0].replace("&#39;", "'").startswith(message), messages
    assert len(shown_ids(page)) == 7  # the default window's rows, the bad filter left out


def test_a_to_before_from_is_reported_and_ignored(client, varied) -> None:
    since = (utcnow() - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M")
    before = (utcnow() - timedelta(days=3)).date().isoformat()

    page = html(client.get(f"{EXPLORER}?from={since}&to={before}"))

    assert [m.replace("&#39;", "'") for m in invalid_messages(page)] == [
        f"Ignored to='{before}': expected a moment after from."
    ]
    assert len(shown_ids(page)) == 7  # from six hours ago on


# -- figures -------------------------------------------------------------------------------------


def test_figures_of_the_filtered_rows(client, tickets, loose) -> None:
    seed_figures(tickets.id)  # 10 rows in the window, 5 failed: p50 55 ms, p95 95.5 ms
    add_requests(loose.id, *({"duration_ms": 5000} for _ in range(3)))

    mine = html(client.get(f"{EXPLORER}?integration={tickets.id}"))
    assert figure(mine, "count") == "10"
    assert figure(mine, "error-rate") == "50.0%"
    assert figure(mine, "p50") == "55 ms"
    assert figure(mine, "p95") == "95 ms"  # 95.5, less a float rounding error
    # the error rate links to the failures, p95 to the requests at least that slow
    assert f'href="{EXPLORER}?integration={tickets.id}&amp;failure_class=any"' in mine
    assert f'href="{EXPLORER}?integration={tickets.id}&amp;min_duration=95"' in mine

    everything = html(client.get(EXPLORER))
    assert figure(everything, "count") == "13"
    assert figure(everything, "error-rate") == "38.5%"

    none = html(client.get(f"{EXPLORER}?provider_request_id=absent"))
    assert figure(none, "count") == "0"
    assert figure(none, "error-rate") == "—"
    assert figure(none, "p50") == "—"
    assert "No requests match these filters over the last 24 hours." in none


def test_figures_stop_counting_at_the_limit_and_say_so(client, tickets, monkeypatch) -> None:
    monkeypatch.setattr(explorer, "SAMPLE_ROWS", 3)
    now = utcnow()
    rows = [failure(503, "HTTP 503", duration_ms=10 * n, at=now - timedelta(hours=n)) for n in range(1, 3)]
    add_requests(tickets.id, *rows, *({"duration_ms": 10 * n, "hours_ago": n} for n in range(3, 7)))

    monkeypatch.setattr(explorer, "COUNT_LIMIT", 100)
    sampled = html(client.get(f"{EXPLORER}?window=7d"))
    assert figure(sampled, "count") == "6"
    assert figure(sampled, "error-rate") == "33.3%"  # 2 of all 6
    assert figure(sampled, "p50") == "20 ms"  # of 10, 20, 30 ms: the newest three
    assert "p50 and p95 are of the newest 3." in sampled

    monkeypatch.setattr(explorer, "COUNT_LIMIT", 4)
    capped = html(client.get(f"{EXPLORER}?window=7d"))
    assert figure(capped, "count") == "4+"
    assert figure(capped, "error-rate") == "66.7%"  # 2 of the newest 3
    assert "At least 4 requests match: the error rate, p50 and p95 are of the newest 3." in capped


# -- pages ---------------------------------------------------------------------------------------


def test_keyset_pages_walk_older_and_newer_and_ignore_new_rows(client, tickets) -> None:
    start = utcnow() - timedelta(hours=2)
    add_requests(tickets.id, *({"endpoint": f"e{n}", "at": start + timedelta(seconds=n)} for n in range(120)))
    newest_first = ids_where(integration_id=tickets.id)

    first = html(client.get(EXPLORER))
    assert shown_ids(first) == newest_first[:50]
    assert figure(first, "count") == "120"  # past the page: from the newest matches
    assert 'rel="prev"' not in first
    older = re.search(r'<a rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert older == f"{EXPLORER}?before={newest_first[49]}"

    add_requests(tickets.id, {"endpoint": "written meanwhile"})  # shifts nothing on the next pages
    second = html(client.get(older))
    assert shown_ids(second) == newest_first[50:100]
    third_url = re.search(r'<a rel="next" href="([^"]+)"', second).group(1).replace("&amp;", "&")
    third = html(client.get(third_url))
    assert shown_ids(third) == newest_first[100:]
    assert 'rel="next"' not in third

    back = re.search(r'<a rel="prev" href="([^"]+)"', third).group(1).replace("&amp;", "&")
    assert back == f"{EXPLORER}?after={newest_first[100]}"
    assert shown_ids(html(client.get(back))) == newest_first[50:100]


def test_pages_keep_the_filters(client, tickets) -> None:
    now = utcnow()
    add_requests(
        tickets.id,
        *(failure(503, "HTTP 503", endpoint=f"e{n}", at=now - timedelta(minutes=n)) for n in range(60)),
    )
    add_requests(tickets.id, *({"endpoint": "ok"} for _ in range(10)))

    first = html(client.get(f"{EXPLORER}?status=5xx&window=1h"))
    link = re.search(r'<a rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "status=5xx" in link and "window=1h" in link
    second = html(client.get(link))
    assert len(shown_ids(second)) == 10
    assert "ok</a>" not in second


def test_an_error_holding_a_credential_is_shown_scrubbed(client, tickets) -> None:
    add_requests(tickets.id, failure(401, f"HTTP 401: bad key {SECRET}", "client"))

    page = html(client.get(EXPLORER))

    assert SECRET not in page
    assert "bad key [REDACTED]" in page


def test_the_number_of_queries_does_not_grow_with_the_rows(app, client, tickets, loose) -> None:
    tickets_id, loose_id = tickets.id, loose.id  # statements_of empties the session

    add_requests(tickets_id, {"endpoint": "one"})
    one_page = statements_of(app, client, EXPLORER)  # the page holds every match: the figures are its rows'
    add_requests(tickets_id, *({"endpoint": f"e{n}"} for n in range(60)))
    pages = statements_of(app, client, EXPLORER)
    assert pages == one_page + 1  # the newest matches, read for the figures
    add_requests(loose_id, *({"endpoint": f"l{n}"} for n in range(300)))
    assert statements_of(app, client, EXPLORER) == pages
    older = ids_where(endpoint="e10")[0]
    assert statements_of(app, client, f"{EXPLORER}?before={older}") == pages + 1  # the anchor's timestamp


def test_the_page_reads_its_rows_through_the_explorer_index(app, database_url) -> None:
    """On SQLite the ids query is judged on `ix_integration_req_explorer` alone, whatever the filter."""
    if not database_url.startswith("sqlite"):
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    with app.app_context():
        state = current_state()
        t = state.tables["requests"]
        filters = explorer.ExplorerFilters(
            since=utcnow() - timedelta(days=30), status="418", method="get", min_duration=5, endpoint="x"
        )
        query = (
            sa.select(t.c.id).where(*filters.conditions(state)).order_by(t.c.created_at.desc(), t.c.id.desc())
        )
        sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
        plan = " | ".join(row[3] for row in db.session.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")))
    assert "USING COVERING INDEX ix_integration_req_explorer" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # the index gives the order


def test_the_explorer_is_in_the_navigation_and_sends_the_security_headers(client, tickets) -> None:
    response = client.get(EXPLORER)

    assert f'<a href="{EXPLORER}" aria-current="page">Requests</a>' in html(response)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


# -- the numbers elsewhere lead here ---------------------------------------------------------------


def hrefs(page: str, pattern: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(rf'href="({pattern}[^"]*)"', page)]


def test_the_overviews_figures_link_to_their_rows(client, tickets) -> None:
    seed_figures(tickets.id)  # 11 rows in 7 days: 10..100 ms and a failed 1,000 ms one; 6 failed
    overview = html(client.get("/integrations/dashboard/?window=7d"))

    links = {frozenset(parse_qsl(urlsplit(h).query)): h for h in hrefs(overview, EXPLORER)}
    mine = {("integration", str(tickets.id)), ("window", "7d")}
    assert frozenset(mine) in links
    failed = html(client.get(links[frozenset(mine | {("failure_class", "any")})]))
    assert figure(failed, "count") == "6" and figure(failed, "error-rate") == "100.0%"
    slow = next(h for args, h in links.items() if dict(args).get("min_duration"))
    assert figure(html(client.get(slow)), "count") == "1"  # p95 is 550 ms: only the 1,000 ms one


def test_the_integration_pages_figures_and_bars_link_to_their_rows(client, tickets) -> None:
    seed_figures(tickets.id)
    page = html(client.get(f"/integrations/dashboard/integrations/{tickets.id}"))

    summary = re.search(r'<p id="failure-summary".*?</p>', page, re.S).group(0)
    by_class = {
        kind: href.replace("&amp;", "&")
        for href, kind in re.findall(r'<a class="badge status-(?:\w+)" href="([^"]+)">\d+ (\w+)</a>', summary)
    }
    assert set(by_class) == {"upstream", "throttle", "client"}
    throttled = html(client.get(by_class["throttle"]))
    assert figure(throttled, "count") == "1"

    bars = re.findall(r'<a class="bar" href="([^"]+)">\s*<title>([^<]*)</title>', page)
    assert len(bars) == 24
    busy = [(href, title) for href, title in bars if not title.endswith(": 0 requests, 0 errors")]
    assert len(busy) == 1 and busy[0][1].endswith(": 10 requests, 5 errors")
    in_bar = html(client.get(busy[0][0].replace("&amp;", "&")))
    assert figure(in_bar, "count") == "10" and invalid_messages(in_bar) == []


def test_list_statuses_link_to_their_rows(client, tickets) -> None:
    add_requests(tickets.id, failure(503, "HTTP 503"), {"endpoint": "ok"})
    page = html(client.get(f"/integrations/dashboard/integrations/{tickets.id}"))

    log = re.search(r'<section id="requests".*?</section>', page, re.S).group(0)
    upstream = (
        re.search(r'<a class="badge status-upstream" href="([^"]+)"', log).group(1).replace("&amp;", "&")
    )
    assert upstream.endswith("failure=upstream#requests")
    assert html(client.get(upstream)).count("data-request-id=") == 1


def test_an_sdk_operation_is_matched_as_logged_and_an_http_method_in_any_case(client, tickets) -> None:
    add_requests(tickets.id, {"method": "listCharges"}, {"method": "DELETE"})

    assert len(shown_ids(html(client.get(f"{EXPLORER}?method=listCharges")))) == 1
    assert shown_ids(html(client.get(f"{EXPLORER}?method=listcharges"))) == []
    assert len(shown_ids(html(client.get(f"{EXPLORER}?method=delete")))) == 1
