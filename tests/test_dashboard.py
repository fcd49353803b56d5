"""The dashboard (SPEC section 9): pages, filters, pagination, actions, access, secrets, figures."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, redirect
from jinja2 import DictLoader

from flask_integrations import HandlesWebhooks, IncrementalSync, Integration, IntegrationLog, Provider
from flask_integrations.clock import utcnow
from flask_integrations.state import current_state
from flask_integrations.testing import run_queued_jobs, send_webhook
from tests.helpers.app import Loose, Tickets, db, run_docs_example
from tests.helpers.dashboard import DASH, cell, create_tickets, html, row_of, statements_of
from tests.helpers.rows import add_requests, failure, open_breaker, seed_figures

SECRET = "sk-live-PLANTED-7f3a9c"
FEED: dict[str, Any] = {"count": 3, "failing": set()}


class DashFeed(Provider, IncrementalSync):
    """Dispatches `count` entries past the cursor; entries in `failing` raise in their handler."""

    sync_interval = 10

    def sync_incremental(self, integration: Any, session: Any) -> None:
        start = session.cursor or 0
        for n in range(start + 1, start + FEED["count"] + 1):
            session.dispatch("dash.entry", {"n": n}, checkpoint=n, external_id=f"e{n}")


def ingest_entry(integration: Any, payload: dict) -> None:
    if payload["n"] in FEED["failing"]:
        raise ValueError(f"entry {payload['n']} is malformed")


class Hooks(Provider, HandlesWebhooks):
    """Accepts every delivery; event and delivery id come from headers."""

    def verify_webhook(self, integration: Any, request: Any) -> bool:
        return True

    def webhook_event(self, request: Any) -> str | None:
        return request.headers.get("X-Event")

    def webhook_delivery_id(self, request: Any) -> str | None:
        return request.headers.get("X-Delivery")

    def webhook_handlers(self) -> dict:
        return {"ping": lambda integration, webhook: None}


@pytest.fixture(autouse=True)
def _reset_feed():
    FEED.update(count=3, failing=set())
    yield
    FEED.update(count=3, failing=set())


@pytest.fixture
def app(app_factory) -> Flask:
    app = app_factory(
        INTEGRATIONS_PROVIDERS={"tickets": Tickets, "loose": Loose, "hooks": Hooks, "feed": DashFeed},
        INTEGRATIONS_SYNC={"item_tries": 1},
    )
    app.extensions["integrations"].sync_handler("dash.entry")(ingest_entry)
    return app


@pytest.fixture
def tickets(ext, ctx) -> Integration:
    return create_tickets(ext, SECRET)


# -- helpers -----------------------------------------------------------------------------------


def csrf(client, integration_id: int) -> str:
    page = html(client.get(f"{DASH}/integrations/{integration_id}"))
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the integration page has no action form"
    return match.group(1)


def post(client, url: str, **data: Any):
    """POST like a browser form; buffered so that jobs run after the response have run."""
    return client.post(url, data=data, buffered=True)


def flashes(client) -> list[tuple[str, str]]:
    """The flashed messages of the next page, as (class, text)."""
    page = html(client.get(f"{DASH}/webhooks"))
    return [(c.strip(), t.strip()) for c, t in re.findall(r'<p class="(flash[^"]*)">([^<]*)</p>', page)]


def flashed(client, kind: str, text: str) -> bool:
    """Whether the next page shows `text` in a flash of class "flash {kind}"."""
    return (f"flash {kind}", text) in flashes(client)


def refreshed(model: type, row_id: int) -> Any:
    db.session.expire_all()
    return db.session.get(model, row_id)


def table_row(kind: str, row_id: int) -> Any:
    db.session.commit()
    t = current_state().tables[kind]
    return db.session.execute(sa.select(t).where(t.c.id == row_id)).one()


def run_feed_sync(integration: Integration) -> IntegrationLog:
    log = integration.sync_now()
    assert log is not None
    run_queued_jobs()
    return refreshed(IntegrationLog, log.id)


# -- overview ----------------------------------------------------------------------------------


def test_overview_shows_each_integration_with_its_figures_over_24_hours(client, ext, tickets):
    quiet = ext.create("loose", "Quiet", {})
    seed_figures(tickets.id)
    open_breaker(quiet.id)

    page = html(client.get(f"{DASH}/"))

    assert '<table id="integrations">' in page
    row = row_of(page, "data-integration-id", tickets.id)
    assert f'href="{DASH}/integrations/{tickets.id}">Acme tickets</a>' in row
    assert '<span class="badge health-healthy">healthy</span>' in row
    assert 'class="badge breaker-closed"' in row
    assert (cell(row, "requests"), cell(row, "error-rate"), cell(row, "p50"), cell(row, "p95")) == (
        "10",
        "50.0%",
        "55 ms",
        "95 ms",  # 95.5 ms less a float epsilon, shown in whole milliseconds
    )
    assert cell(row, "active") == "yes"
    other = row_of(page, "data-integration-id", quiet.id)
    assert 'class="badge breaker-open"' in other
    assert (cell(other, "requests"), cell(other, "error-rate"), cell(other, "p50")) == ("0", "—", "—")


def test_overview_shows_owner_sync_times_relative_with_the_exact_time_in_a_title(client, tickets):
    synced = utcnow() - timedelta(minutes=3, seconds=10)
    tickets.update(owner_type="users", owner_id=42, next_sync_at=utcnow() + timedelta(hours=2, minutes=5))
    db.session.execute(
        sa.update(current_state().tables["integrations"])
        .where(current_state().tables["integrations"].c.id == tickets.id)
        .values(last_synced_at=synced)
    )
    db.session.commit()

    row = row_of(html(client.get(f"{DASH}/")), "data-integration-id", tickets.id)

    assert cell(row, "owner") == "users#42"
    assert cell(row, "last-sync") == "3 min ago"
    assert f'title="{synced:%Y-%m-%d %H:%M:%S} UTC"' in row
    assert cell(row, "next-sync") == "in 2 h"


def test_overview_without_integrations_says_how_to_create_one(client):
    page = html(client.get(f"{DASH}/"))
    assert "No integrations yet — create one with <code>flask integrations install</code>" in page
    assert 'id="integrations"' not in page


def test_overview_filters_by_provider_and_health(client, ext, tickets):
    loose = ext.create("loose", "Loose one", {})
    db.session.execute(
        sa.update(current_state().tables["integrations"])
        .where(current_state().tables["integrations"].c.id == loose.id)
        .values(health_status="failing")
    )
    db.session.commit()

    by_provider = html(client.get(f"{DASH}/?provider=tickets"))
    assert f'data-integration-id="{tickets.id}"' in by_provider
    assert f'data-integration-id="{loose.id}"' not in by_provider
    by_health = html(client.get(f"{DASH}/?health=failing"))
    assert f'data-integration-id="{loose.id}"' in by_health
    assert 'class="badge health-failing"' in by_health
    assert f'data-integration-id="{tickets.id}"' not in by_health
    assert "No integrations match these filters" in html(
        client.get(f"{DASH}/?provider=tickets&health=failing")
    )
    unknown = html(client.get(f"{DASH}/?provider=nope&health=bogus"))  # ignored, not an error
    assert unknown.count("data-integration-id=") == 2


def test_overview_is_paginated_fifty_to_a_page(client, ext, ctx):
    table = current_state().tables["integrations"]
    token = ext.create("loose", "Integration 1", {})._credentials_token
    now = utcnow()
    db.session.execute(
        sa.insert(table),
        [
            {"provider": "loose", "name": f"Integration {n}", "credentials": token, "is_active": True}
            | {"health_status": "healthy", "consecutive_failures": 0, "created_at": now, "updated_at": now}
            for n in range(2, 56)
        ],
    )
    db.session.commit()

    first = html(client.get(f"{DASH}/"))
    second = html(client.get(f"{DASH}/?page=2"))

    assert first.count("data-integration-id=") == 50
    assert f'href="{DASH}/?page=2"' in first and 'rel="prev"' not in first
    assert second.count("data-integration-id=") == 5
    assert f'href="{DASH}/?page=1"' in second and 'rel="next"' not in second
    assert "No integrations match" in html(client.get(f"{DASH}/?page=3"))
    assert html(client.get(f"{DASH}/?page=-4")).count("data-integration-id=") == 50


def test_overview_queries_do_not_grow_with_the_integrations_on_the_page(app, client, ext, ctx):
    first = ext.create("loose", "First", {})
    seed_figures(first.id)
    few = statements_of(app, client, f"{DASH}/")
    for n in range(40):
        integration = ext.create("loose", f"Loose {n}", {})
        add_requests(integration.id, {"duration_ms": n + 1}, failure(500, "HTTP 500", duration_ms=n + 5))
    many = statements_of(app, client, f"{DASH}/")

    assert many == few
    assert many <= 4  # the page, the figures, on SQLite the percentiles, and the overrides (embedded mode)


# -- integration page --------------------------------------------------------------------------


def test_integration_page_shows_metadata_masked_credentials_and_every_section(client, tickets):
    tickets.map_external_id("ext-1", tickets)
    db.session.commit()

    page = html(client.get(f"{DASH}/integrations/{tickets.id}"))

    assert re.search(r"<h1>Acme tickets</h1>", page)
    for section in ("requests", "operations", "webhooks", "sync-runs"):
        assert f'<section id="{section}"' in page
    assert '<svg id="activity-chart"' in page
    assert "<code>api_key: ••••••</code>" in page and "<code>subdomain: ••••••</code>" in page
    assert SECRET not in page and "acme</" not in page
    assert "&#34;team&#34;: &#34;support&#34;" in page
    assert '<dd id="mappings-count">1</dd>' in page
    assert '<code id="sync-cursor">none</code>' in page
    assert '<span class="badge health-healthy">healthy</span>' in page
    assert 'class="badge breaker-closed"' in page
    for action in ("disable", "health-check", "reset-breaker"):
        assert f'action="{DASH}/integrations/{tickets.id}/{action}"' in page
    assert "sync-now" not in page  # the tickets provider has no sync


def test_every_action_button_posts_a_form_with_the_csrf_token(client, tickets):
    page = html(client.get(f"{DASH}/integrations/{tickets.id}"))
    forms = re.findall(r'<form method="post"(.*?)</form>', page, re.S)
    assert len(forms) == 3
    for form in forms:
        assert '<input type="hidden" name="csrf_token" value="' in form
        assert '<button type="submit"' in form


def test_unknown_ids_are_404(client, ctx):
    for path in ("integrations/12345", "requests/12345", f"integrations/{2**70}", f"requests/{2**64}"):
        assert client.get(f"{DASH}/{path}").status_code == 404


def test_the_chart_counts_requests_and_errors_per_hour(client, tickets):
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    add_requests(
        tickets.id,
        {"at": hour + timedelta(seconds=1)},
        failure(503, "HTTP 503", at=hour + timedelta(seconds=2)),
        {"at": hour - timedelta(hours=2) + timedelta(seconds=5)},
        {"at": hour - timedelta(hours=30)},  # outside the window
    )

    page = html(client.get(f"{DASH}/integrations/{tickets.id}"))
    chart = re.search(r'<svg id="activity-chart".*?</svg>', page, re.S).group(0)

    titles = re.findall(r"<title>([^<]*)</title>", chart)
    assert len(titles) == 24  # one per hour, oldest first
    assert titles[-1] == f"{hour:%Y-%m-%d %H}:00–{hour + timedelta(hours=1):%H}:00 UTC: 2 requests, 1 error"
    assert titles[-3].endswith(": 1 request, 0 errors")
    assert sum(t.endswith(": 0 requests, 0 errors") for t in titles) == 22
    assert chart.count('class="errors"') == 24
    assert "3 requests, 1 error</span>" in page


def test_a_nul_character_in_the_endpoint_filter_is_ignored_not_a_500(client, tickets):
    """Regression: PostgreSQL refuses NUL in a query parameter (a DataError, then a 500)."""
    add_requests(tickets.id, {"endpoint": "tickets/1"})
    page = html(client.get(f"{DASH}/integrations/{tickets.id}", query_string={"endpoint": "tick\x00ets"}))
    assert "tickets/1" in page


def test_request_log_filters_by_endpoint_status_and_failure_class(client, tickets):
    add_requests(
        tickets.id,
        {"endpoint": "tickets.list"},
        {"endpoint": "users.show", "status_code": 201},
        failure(404, "HTTP 404", "client", endpoint="tickets.show"),
        failure(503, "HTTP 503", endpoint="tickets.list"),
        failure(None, "ConnectError: refused", endpoint="users.show"),
    )

    def endpoints(query: str) -> list[str]:
        page = html(client.get(f"{DASH}/integrations/{tickets.id}?{query}"))
        section = page.split('<section id="requests"')[1].split("</section>")[0]
        return sorted(re.findall(r'<td class="endpoint"><a [^>]*>([^<]*)</a>', section))

    assert endpoints("endpoint=tickets.") == ["tickets.list", "tickets.list", "tickets.show"]
    assert endpoints("status=404") == ["tickets.show"]
    assert endpoints("status=2xx") == ["tickets.list", "users.show"]
    assert endpoints("status=none") == ["users.show"]
    assert endpoints("failure=upstream") == ["tickets.list", "users.show"]
    assert endpoints("failure=none") == ["tickets.list", "users.show"]
    assert endpoints("endpoint=users&failure=upstream") == ["users.show"]
    assert endpoints("endpoint=%25") == []  # a wildcard character is matched literally
    assert "No requests match these filters" in html(
        client.get(f"{DASH}/integrations/{tickets.id}?endpoint=nothing")
    )


def test_request_log_is_paginated(client, tickets):
    add_requests(tickets.id, *({"endpoint": f"e{n:02d}", "hours_ago": n / 100} for n in range(60)))
    first = html(client.get(f"{DASH}/integrations/{tickets.id}"))
    second = html(client.get(f"{DASH}/integrations/{tickets.id}?page=2"))
    assert first.count("data-request-id=") == 50 and second.count("data-request-id=") == 10
    assert "e00" in first and "e59" in second
    assert f'href="/integrations/dashboard/integrations/{tickets.id}?page=2#requests"' in first


def test_the_next_page_link_keeps_an_endpoint_filter(client, tickets):
    """Regression: `?endpoint=` reached `url_for` as its own `endpoint` parameter (a TypeError, a 500)."""
    add_requests(tickets.id, *({"endpoint": "tickets.list"} for _ in range(60)))
    page = html(client.get(f"{DASH}/integrations/{tickets.id}?endpoint=tickets"))
    assert f'href="{DASH}/integrations/{tickets.id}?endpoint=tickets&amp;page=2#requests"' in page


def test_a_gets_data_is_shown_as_its_query_parameters(client, tickets):
    add_requests(tickets.id, {"method": "GET", "request_data": '{"since": 5}'})
    add_requests(tickets.id, {"method": "POST", "request_data": '{"subject": "Printer"}'})
    get_id, post_id = sorted(db.session.scalars(sa.select(current_state().tables["requests"].c.id)))

    assert "<h2>Query parameters</h2>" in html(client.get(f"{DASH}/requests/{get_id}"))
    post_page = html(client.get(f"{DASH}/requests/{post_id}"))
    assert "<h2>Request body</h2>" in post_page and "Query parameters" not in post_page


def test_request_detail_shows_every_field_and_the_stored_bodies(client, tickets):
    add_requests(tickets.id, {"endpoint": "tickets.create", "method": "POST"})
    first_id = db.session.scalar(sa.select(sa.func.max(current_state().tables["requests"].c.id)))
    add_requests(
        tickets.id,
        failure(
            503,
            "HTTP 503",
            endpoint="tickets.create",
            method="POST",
            duration_ms=1234,
            idempotency_key="create-ticket:42",
            provider_request_id="req_abc123",
            retry_of=first_id,
            related_type="users",
            related_id=7,
            request_data='{"subject": "Printer", "password": "[REDACTED]"}',
            response_data='{"error": "unavailable"}',
        ),
    )
    row_id = first_id + 1

    page = html(client.get(f"{DASH}/requests/{row_id}"))

    for text in ("tickets.create", "POST", "503", "1234 ms", "upstream", "HTTP 503", "create-ticket:42"):
        assert text in page
    assert "req_abc123" in page and "users#7" in page
    assert f'<a id="retry-of" href="{DASH}/requests/{first_id}">request #{first_id}</a>' in page
    assert "{\n  &#34;subject&#34;: &#34;Printer&#34;,\n  &#34;password&#34;: &#34;[REDACTED]&#34;\n}" in page
    assert "&#34;error&#34;: &#34;unavailable&#34;" in page
    assert f'href="{DASH}/integrations/{tickets.id}#requests">Acme tickets</a>' in page


def test_redacted_fields_stay_redacted_in_the_request_detail(app, client, ext):
    with app.app_context():
        integration = ext.create("loose", "Shop", {"api_key": SECRET})
        result = (
            integration.at("orders.create")
            .with_data({"password": "hunter2-hunter2", "note": f"key {SECRET}", "amount": 5})
            .post(lambda: {"access_token": "tok-very-secret", "id": 9})
        )
        assert result == {"access_token": "tok-very-secret", "id": 9}
    with app.app_context():
        t = current_state().tables["requests"]
        row_id = db.session.scalar(sa.select(t.c.id).where(t.c.endpoint == "orders.create"))
        db.session.remove()

    page = html(client.get(f"{DASH}/requests/{row_id}"))

    assert "hunter2-hunter2" not in page and "tok-very-secret" not in page and SECRET not in page
    assert page.count("[REDACTED]") >= 3
    assert "&#34;amount&#34;: 5" in page


def test_operations_are_a_tree_of_top_level_logs_and_their_children(client, tickets):
    parent = tickets.log_operation("import", "inbound", "success", summary="nightly import")
    child = tickets.log_operation("import.page", "inbound", "failed", error="page 2 broke", parent=parent)
    tickets.log_operation("import.row", "inbound", "success", summary="row 7", parent=child)
    tickets.log_operation("export", "outbound", "processing")

    page = html(client.get(f"{DASH}/integrations/{tickets.id}"))
    section = page.split('<section id="operations"')[1].split("</section>")[0]

    nested = re.search(
        rf'<li data-log-id="{parent.id}">.*?<ul class="tree children">\s*<li data-log-id="{child.id}">'
        r'.*?<ul class="tree children">\s*<li data-log-id="\d+">.*?row 7',
        section,
        re.S,
    )
    assert nested, section
    assert section.index("export") < section.index("nightly import")  # newest first
    assert "page 2 broke" in section
    assert 'class="badge status-failed"' in section


def test_sync_runs_show_their_items_by_status_and_the_cursor(client, ext, ctx):
    feed = ext.create("feed", "Feed", {})
    run_feed_sync(feed)
    FEED["failing"] = {5}
    second = run_feed_sync(feed)
    assert second.status == "partial"

    page = html(client.get(f"{DASH}/integrations/{feed.id}"))
    section = page.split('<section id="sync-runs"')[1].split("</section>")[0]

    assert '<code id="sync-cursor">3</code>' in section
    run = row_of(section, "data-run-id", second.id)
    assert "2 success" in run and "1 failed" in run and 'class="badge status-partial"' in run
    assert f'href="{DASH}/sync-items?integration={feed.id}&amp;status=failed"' in run
    assert f'action="{DASH}/integrations/{feed.id}/sync-now"' in page
    # each count opens the run's items of that status; the run's operation log opens the run
    assert f'href="{DASH}/sync-runs/{second.id}?status=failed#run-items">1 failed</a>' in run
    operations = page.split('<section id="operations"')[1].split("</section>")[0]
    assert f'<a href="{DASH}/sync-runs/{second.id}">sync #{second.id}</a>' in operations


# -- webhooks and sync items pages ---------------------------------------------------------------


@pytest.fixture
def hooks(ext, ctx) -> Integration:
    return ext.create("hooks", "Hooks", {"signing_secret": SECRET})


def deliver(client, integration: Integration, delivery: str, event: str = "ping") -> int:
    response = send_webhook(
        client,
        "hooks",
        {"n": delivery},
        integration=integration,
        headers={"X-Event": event, "X-Delivery": delivery},
    )
    assert response.status_code in (200, 202)
    return response.get_json()["id"]


def set_status(kind: str, row_id: int, status: str, error: str | None = None) -> None:
    t = current_state().tables[kind]
    db.session.execute(sa.update(t).where(t.c.id == row_id).values(status=status, error=error))
    db.session.commit()


def test_webhooks_page_lists_filters_and_offers_replay(client, hooks):
    processed = deliver(client, hooks, "d1")
    failed = deliver(client, hooks, "d2")
    set_status("webhooks", failed, "failed", "handler raised")
    deliver(client, hooks, "d1")  # a duplicate

    page = html(client.get(f"{DASH}/webhooks"))

    assert '<table id="webhooks">' in page
    assert page.count("data-webhook-id=") == 3
    row = row_of(page, "data-webhook-id", failed)
    assert cell(row, "status") == "failed"
    assert re.search(r'<button type="submit" class="button ">Replay</button>', row)
    assert "handler raised" in row
    assert cell(row_of(page, "data-webhook-id", processed), "status") == "processed"
    only_failed = html(client.get(f"{DASH}/webhooks?status=failed"))
    assert only_failed.count("data-webhook-id=") == 1 and f'data-webhook-id="{failed}"' in only_failed
    duplicates = html(client.get(f"{DASH}/webhooks?status=duplicate"))
    assert duplicates.count("data-webhook-id=") == 1
    assert "Replay" not in duplicates.split('<table id="webhooks">')[1]  # a duplicate is not replayed
    assert "No webhooks match" in html(client.get(f"{DASH}/webhooks?provider=tickets"))
    assert html(client.get(f"{DASH}/webhooks?provider=hooks")).count("data-webhook-id=") == 3
    assert html(client.get(f"{DASH}/webhooks?integration={hooks.id}")).count("data-webhook-id=") == 3


def test_webhooks_page_when_empty_and_paginated(client, hooks):
    assert "No webhooks received yet." in html(client.get(f"{DASH}/webhooks"))
    for n in range(52):
        deliver(client, hooks, f"p{n}")
    assert html(client.get(f"{DASH}/webhooks")).count("data-webhook-id=") == 50
    assert html(client.get(f"{DASH}/webhooks?page=2")).count("data-webhook-id=") == 2


def test_sync_items_page_shows_failed_items_by_default_with_retry_and_skip(client, ext, ctx):
    feed = ext.create("feed", "Feed", {})
    FEED["failing"] = {2}
    run_feed_sync(feed)
    failed_id = db.session.scalar(
        sa.select(current_state().tables["sync_items"].c.id).where(
            current_state().tables["sync_items"].c.status == "failed"
        )
    )

    page = html(client.get(f"{DASH}/sync-items"))

    assert page.count("data-item-id=") == 1
    row = row_of(page, "data-item-id", failed_id)
    assert cell(row, "status") == "failed" and "entry 2 is malformed" in row
    run_id = db.session.scalar(sa.select(current_state().tables["sync_items"].c.sync_log_id).limit(1))
    assert f'<a href="{DASH}/sync-runs/{run_id}">#{run_id}</a>' in row
    assert ">Retry</button>" in row and ">Skip</button>" in row
    every = html(client.get(f"{DASH}/sync-items?status=all"))
    assert every.count("data-item-id=") == 3
    success = html(client.get(f"{DASH}/sync-items?status=success&integration={feed.id}"))
    assert success.count("data-item-id=") == 2 and ">Retry</button>" not in success
    assert "No sync items match" in html(client.get(f"{DASH}/sync-items?integration={feed.id + 1}"))


def test_sync_items_page_without_failures(client, ctx):
    assert "No failed sync items." in html(client.get(f"{DASH}/sync-items"))


# -- actions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "forged"])
def test_actions_without_the_csrf_token_are_400_and_change_nothing(client, hooks, tickets, token):
    tickets_id, hooks_id = tickets.id, hooks.id
    webhook = deliver(client, hooks, "w1")
    set_status("webhooks", webhook, "failed", "boom")
    data = {} if token is None else {"csrf_token": token}
    csrf(client, tickets_id)  # the session has a token; the forms below do not send it
    urls = [f"{DASH}/integrations/{tickets_id}/{a}" for a in ("disable", "health-check", "reset-breaker")]
    urls += [f"{DASH}/integrations/{hooks_id}/enable", f"{DASH}/webhooks/{webhook}/replay"]
    urls += [f"{DASH}/sync-items/1/retry", f"{DASH}/sync-items/1/skip", f"{DASH}/integrations/999/disable"]
    for url in urls:
        assert post(client, url, **data).status_code == 400, url
    assert refreshed(Integration, tickets_id).is_active is True
    assert table_row("webhooks", webhook).status == "failed"


def test_enable_and_disable(client, tickets):
    token = csrf(client, tickets.id)
    response = post(client, f"{DASH}/integrations/{tickets.id}/disable", csrf_token=token)
    assert response.status_code == 302
    assert response.headers["Location"] == f"{DASH}/integrations/{tickets.id}"
    assert refreshed(Integration, tickets.id).is_active is False
    assert flashed(
        client, "success", "“Acme tickets” disabled: no outbound calls or syncs until it is enabled."
    )

    db.session.execute(
        sa.update(current_state().tables["integrations"]).values(
            health_status="disabled", consecutive_failures=50
        )
    )
    db.session.commit()
    post(client, f"{DASH}/integrations/{tickets.id}/enable", csrf_token=token)
    integration = refreshed(Integration, tickets.id)
    assert (integration.is_active, integration.health_status, integration.consecutive_failures) == (
        True,
        "healthy",
        0,
    )


def test_actions_redirect_to_the_dashboard_page_they_came_from_only(client, tickets):
    token = csrf(client, tickets.id)
    url = f"{DASH}/integrations/{tickets.id}/reset-breaker"
    back = f"{DASH}/?provider=tickets&page=1"
    assert post(client, url, csrf_token=token, next=back).headers["Location"] == back
    home = f"{DASH}/integrations/{tickets.id}"
    for bad in ("https://evil.example/", "//evil.example/x", "/elsewhere", f"{DASH}/../../x", "/\\evil", ""):
        assert post(client, url, csrf_token=token, next=bad).headers["Location"] == home, bad


def test_health_check_records_the_outcome(client, ext, tickets):
    broken = ext.create("tickets", "Broken", {"api_key": "broken", "subdomain": "b"}, metadata={"team": "b"})
    token = csrf(client, tickets.id)

    post(client, f"{DASH}/integrations/{broken.id}/health-check", csrf_token=token)
    assert refreshed(Integration, broken.id).consecutive_failures == 1
    failed = "Health check of “Broken” failed (health check returned False); health is healthy."
    assert flashed(client, "error", failed)
    post(client, f"{DASH}/integrations/{tickets.id}/health-check", csrf_token=token)
    assert flashed(client, "success", "Health check of “Acme tickets” passed; health is healthy.")
    logs = db.session.execute(
        sa.select(IntegrationLog.integration_id, IntegrationLog.status, IntegrationLog.error)
        .where(IntegrationLog.operation == "health_check")
        .order_by(IntegrationLog.id)
    ).all()
    assert [tuple(row) for row in logs] == [
        (broken.id, "failed", "health check returned False"),
        (tickets.id, "success", None),
    ]
    page = client.get(f"{DASH}/integrations/{broken.id}").text
    assert "health_check" in page.split('id="operations"')[1] and "health check returned False" in page


def test_actions_that_do_not_apply_flash_an_error(client, ext, tickets):
    loose = ext.create("loose", "Loose", {})
    token = csrf(client, tickets.id)

    response = post(client, f"{DASH}/integrations/{loose.id}/health-check", csrf_token=token)
    assert response.status_code == 302
    assert flashed(client, "error", "“Loose” has no health check: its provider does not offer one.")
    post(client, f"{DASH}/integrations/{tickets.id}/sync-now", csrf_token=token)
    cannot = "“Acme tickets” cannot sync: its provider has no sync() or sync_incremental()."
    assert flashed(client, "error", cannot)


def test_unknown_ids_and_actions_are_404(client, tickets):
    token = csrf(client, tickets.id)
    for url in (
        f"{DASH}/integrations/999/disable",
        f"{DASH}/integrations/{tickets.id}/explode",
        f"{DASH}/webhooks/999/replay",
        f"{DASH}/sync-items/999/retry",
        f"{DASH}/sync-items/999/skip",
        f"{DASH}/sync-items/{2**70}/skip",
    ):
        assert post(client, url, csrf_token=token).status_code == 404, url


def test_sync_now_starts_a_run(client, ext, ctx):
    feed = ext.create("feed", "Feed", {})
    token = csrf(client, feed.id)

    response = post(client, f"{DASH}/integrations/{feed.id}/sync-now", csrf_token=token)

    assert response.status_code == 302
    run_queued_jobs()
    runs = db.session.scalars(sa.select(IntegrationLog).where(IntegrationLog.operation == "sync")).all()
    assert [r.status for r in runs] == ["success"]
    assert flashed(client, "success", f"Sync run #{runs[0].id} of “Feed” started.")
    assert refreshed(Integration, feed.id).sync_cursor == 3


def test_reset_breaker_closes_it(client, tickets):
    open_breaker(tickets.id)
    assert tickets.breaker_state() == "open"
    post(client, f"{DASH}/integrations/{tickets.id}/reset-breaker", csrf_token=csrf(client, tickets.id))
    assert tickets.breaker_state() == "closed"
    assert flashed(client, "success", "Circuit breaker of “Acme tickets” reset: closed.")


def test_replay_reruns_a_failed_webhook(client, hooks):
    webhook = deliver(client, hooks, "r1")
    set_status("webhooks", webhook, "failed", "handler raised")
    token = csrf(client, hooks.id)

    response = post(client, f"{DASH}/webhooks/{webhook}/replay", csrf_token=token, next=f"{DASH}/webhooks")

    assert response.headers["Location"] == f"{DASH}/webhooks"
    assert table_row("webhooks", webhook).status == "processed"
    assert flashed(client, "success", f"Webhook #{webhook} re-enqueued.")


def test_replay_of_a_duplicate_flashes_an_error(client, hooks):
    deliver(client, hooks, "r2")
    deliver(client, hooks, "r2")
    duplicate = db.session.scalar(
        sa.select(current_state().tables["webhooks"].c.id).where(
            current_state().tables["webhooks"].c.status == "duplicate"
        )
    )
    post(client, f"{DASH}/webhooks/{duplicate}/replay", csrf_token=csrf(client, hooks.id))
    assert flashed(
        client, "error", f"Webhook {duplicate} is a duplicate delivery; replay the original instead."
    )
    assert table_row("webhooks", duplicate).status == "duplicate"


def test_skip_and_retry_failed_items(client, ext, ctx):
    feed = ext.create("feed", "Feed", {})
    FEED["failing"] = {1, 2}
    run = run_feed_sync(feed)
    items = current_state().tables["sync_items"]
    first, second = db.session.scalars(
        sa.select(items.c.id).where(items.c.status == "failed").order_by(items.c.id)
    ).all()
    token = csrf(client, feed.id)

    response = post(client, f"{DASH}/sync-items/{first}/skip", csrf_token=token, next=f"{DASH}/sync-items")
    assert response.headers["Location"] == f"{DASH}/sync-items"
    assert table_row("sync_items", first).status == "skipped"
    assert flashed(client, "success", f"Sync item #{first} skipped.")

    FEED["failing"] = set()
    post(client, f"{DASH}/sync-items/{second}/retry", csrf_token=token)
    assert table_row("sync_items", second).status == "success"
    assert refreshed(IntegrationLog, run.id).status == "success"
    assert refreshed(Integration, feed.id).sync_cursor == 3

    post(client, f"{DASH}/sync-items/{second}/skip", csrf_token=token)
    assert flashed(client, "error", f"Sync item {second} is success: only failed items can be skipped.")
    assert table_row("sync_items", second).status == "success"


# -- access ------------------------------------------------------------------------------------


def test_without_a_rule_the_dashboard_is_403_unless_debug_or_testing(app, client, tickets):
    app.testing = False
    for path in ("/", f"/integrations/{tickets.id}", "/webhooks", "/sync-items", "/static/dashboard.css"):
        assert client.get(DASH + path).status_code == 403
    assert client.post(f"{DASH}/integrations/{tickets.id}/disable").status_code == 403
    app.debug = True
    assert client.get(f"{DASH}/").status_code == 200


def test_a_rule_returning_false_is_403_even_in_testing(app_factory):
    app = app_factory(INTEGRATIONS_DASHBOARD_AUTH=lambda request: False)
    assert app.test_client().get(f"{DASH}/").status_code == 403


def test_a_rule_returning_a_response_sends_it(app_factory):
    app = app_factory(INTEGRATIONS_DASHBOARD_AUTH=lambda request: redirect("/login?next=" + request.path))
    response = app.test_client().get(f"{DASH}/webhooks")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next={DASH}/webhooks"


def test_a_rule_returning_true_allows_outside_testing(app_factory):
    seen = []

    def admins_only(request: Any) -> bool:
        seen.append(request.path)
        return request.headers.get("X-Admin") == "1"

    app = app_factory(INTEGRATIONS_DASHBOARD_AUTH=admins_only)
    app.testing = False
    client = app.test_client()
    assert client.get(f"{DASH}/", headers={"X-Admin": "1"}).status_code == 200
    assert client.get(f"{DASH}/").status_code == 403
    assert seen == [f"{DASH}/", f"{DASH}/"]


# -- secrets, configuration, templates ---------------------------------------------------------


def test_no_page_shows_a_credential_value(client, ext, tickets, hooks):
    """Plant the secret everywhere a careless writer could have put it; no page shows it."""
    feed = ext.create("feed", "Feed", {"token": SECRET})
    FEED["failing"] = {1}
    run_feed_sync(feed)
    leaked = failure(500, f"HTTP 500 for key {SECRET}", request_data=f'{{"key": "{SECRET}"}}')
    add_requests(tickets.id, {**leaked, "response_data": SECRET})
    request_id = db.session.scalar(sa.select(sa.func.max(current_state().tables["requests"].c.id)))
    tickets.log_operation("import", "inbound", "failed", error=f"refused {SECRET}")
    webhook = deliver(client, hooks, "s1")
    set_status("webhooks", webhook, "failed", f"bad key {SECRET}")
    db.session.execute(
        sa.update(current_state().tables["logs"]).values(error=f"raw {SECRET}", summary=f"raw {SECRET}")
    )
    db.session.commit()

    pages = [
        "/",
        f"/integrations/{tickets.id}",
        f"/integrations/{hooks.id}",
        f"/integrations/{feed.id}",
        f"/requests/{request_id}",
        "/sync-items?status=all",
        "/static/dashboard.css",
    ]
    for path in pages:
        page = html(client.get(DASH + path))
        assert SECRET not in page, path
    assert "[REDACTED]" in html(client.get(f"{DASH}/requests/{request_id}"))


def test_the_dashboard_can_be_turned_off(app_factory):
    app = app_factory(INTEGRATIONS_BLUEPRINTS={"dashboard": False})
    assert app.test_client().get(f"{DASH}/").status_code == 404
    assert "integrations_dashboard" not in app.blueprints


def test_the_dashboard_follows_the_url_prefix(app_factory):
    app = app_factory(INTEGRATIONS_URL_PREFIX="/ops")
    page = html(app.test_client().get("/ops/dashboard/"))
    assert 'href="/ops/dashboard/static/dashboard.css"' in page
    assert 'href="/ops/dashboard/webhooks"' in page


def test_an_app_overrides_a_template_by_name(app):
    app.jinja_loader = DictLoader(
        {"flask_integrations/dashboard/overview.html": "custom overview: {{ page.items|length }}"}
    )
    assert html(app.test_client().get(f"{DASH}/")) == "custom overview: 0"


def test_the_pages_share_a_layout_with_navigation_and_the_stylesheet(client, ctx):
    page = html(client.get(f"{DASH}/webhooks"))
    assert f'<link rel="stylesheet" href="{DASH}/static/dashboard.css">' in page
    assert f'<a href="{DASH}/webhooks" aria-current="page">Webhooks</a>' in page
    for label in ("Overview", "Sync items"):
        assert f">{label}</a>" in page
    css = client.get(f"{DASH}/static/dashboard.css")
    assert css.status_code == 200 and ".badge.health-healthy" in css.get_data(as_text=True)
    css.close()


# -- the demo app ------------------------------------------------------------------------------


def _demo_module() -> Any:
    import importlib.util
    import sys
    from pathlib import Path

    if "demo_app" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "examples" / "demo_app.py"
        spec = importlib.util.spec_from_file_location("demo_app", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["demo_app"] = module
        spec.loader.exec_module(module)
    return sys.modules["demo_app"]


@pytest.fixture
def demo_client(tmp_path):
    demo = _demo_module()
    upstream = demo.FakeUpstream(port=0).start()
    app = demo.create_app(upstream, instance_path=str(tmp_path / "instance"))
    yield app.test_client()
    upstream.stop()
    with app.app_context():
        demo.db.session.remove()
        demo.db.engine.dispose()


def test_the_demo_links_to_its_dashboard_which_shows_its_data(demo_client):
    front = html(demo_client.get("/"))
    assert f'<a href="{DASH}/">Open the integrations dashboard</a>' in front

    overview = html(demo_client.get(f"{DASH}/"))  # not debug, not testing: its rule allows this machine
    assert overview.count("data-integration-id=") == 2
    tickets_id = int(
        re.search(r'data-integration-id="(\d+)">\s*<td class="name">\s*<a [^>]*>Acme', overview)[1]
    )
    page = html(demo_client.get(f"{DASH}/integrations/{tickets_id}"))
    assert '<code id="sync-cursor">3</code>' in page and "3 success" in page
    assert "tickets.changes" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    response = demo_client.post(f"{DASH}/integrations/{tickets_id}/reset-breaker", data={"csrf_token": token})
    assert response.status_code == 302  # the demo's own CSRF check leaves the dashboard's forms alone
    remote = demo_client.get(f"{DASH}/", environ_overrides={"REMOTE_ADDR": "203.0.113.9"})
    assert remote.status_code == 403


@pytest.mark.slow
def test_the_access_example_in_the_docs_runs(tmp_path):
    pattern = r"```python\n(import hmac.*?)```"
    lines = run_docs_example("dashboard.md", pattern, tmp_path, DASHBOARD_PASSWORD="s3cret")
    assert lines == ["401", "200 True"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "just now"), (-42, "42 s ago"), (-200, "3 min ago"), (7300, "in 2 h"), (-3 * 86400 - 5, "3 d ago")],
)
def test_relative_times_read_naturally(seconds, text):
    from flask_integrations.web.dashboard.formatting import relative_time

    now = utcnow()
    assert relative_time(now + timedelta(seconds=seconds), now) == text
    assert relative_time(None, now) == "never"


# -- security headers and the dashboard's own error pages ---------------------------------------------


def test_dashboard_and_oauth_pages_refuse_framing_and_sniffing(app, client, ext, ctx):
    integration = ext.create("loose", "Loose", {})
    responses = [
        client.get(f"{DASH}/"),
        client.get(f"{DASH}/integrations/{integration.id}"),
        client.get(f"{DASH}/integrations/999999"),
        client.post(f"{DASH}/integrations/{integration.id}/reset-breaker"),  # no CSRF token: 400
        client.get(f"/integrations/{integration.id}/oauth/authorize"),
    ]
    for response in responses:
        assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'", response.status
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_the_dashboards_403_and_404_are_its_own_pages(app_factory):
    app = app_factory(INTEGRATIONS_DASHBOARD_AUTH=lambda request: request.args.get("key") == "ok")
    client = app.test_client()
    denied = client.get(f"{DASH}/")
    assert denied.status_code == 403
    assert "403 · Forbidden" in denied.text and "dashboard.css" in denied.text
    missing = client.get(f"{DASH}/integrations/424242?key=ok")
    assert missing.status_code == 404
    assert "404 · Not found" in missing.text and "Back to the overview" in missing.text


def test_the_breadcrumb_names_the_integration(client, ext, ctx):
    integration = ext.create("loose", "Acme production", {})
    page = client.get(f"{DASH}/integrations/{integration.id}").text
    crumbs = page.split('class="crumbs"')[1].split("</nav>")[0]
    assert "Acme production" in crumbs


def test_an_invalid_filter_is_reported_never_silently_ignored(client, ext, ctx):
    integration = ext.create("loose", "Loose", {})
    cases = [
        (
            f"{DASH}/?health=bogus",
            "Ignored health=&#39;bogus&#39;: expected one of healthy, degraded, failing, disabled.",
        ),
        (
            f"{DASH}/integrations/{integration.id}?status=abc",
            "Ignored status=&#39;abc&#39;: expected a status code",
        ),
        (f"{DASH}/integrations/{integration.id}?failure=nope", "Ignored failure=&#39;nope&#39;"),
        (f"{DASH}/webhooks?integration=x1", "Ignored integration=&#39;x1&#39;: expected an id."),
        (f"{DASH}/sync-items?status=%3Cb%3E", "Ignored status=&#39;&lt;b&gt;&#39;"),
    ]
    for url, said in cases:
        response = client.get(url)
        assert response.status_code == 200 and said in response.text, url
    for url in (
        f"{DASH}/?health=failing",
        f"{DASH}/integrations/{integration.id}?status=5xx",
        f"{DASH}/sync-items",
    ):
        assert 'id="invalid-filters"' not in client.get(url).text, url


# -- a webhook's own page -------------------------------------------------------------------------------


def test_a_webhook_page_shows_payload_headers_attempts_and_duplicates(app, client, hooks):
    response = send_webhook(
        client,
        "hooks",
        {"n": "d9", "password": "hunter2-not-shown", "note": f"key {SECRET}"},
        integration=hooks,
        headers={"X-Event": "ping", "X-Delivery": "d9", "X-Trace": "abc"},
    )
    webhook_id = response.get_json()["id"]
    deliver(client, hooks, "d9")  # a duplicate of it
    listing = html(client.get(f"{DASH}/webhooks"))
    assert f'href="{DASH}/webhooks/{webhook_id}"' in listing

    page = html(client.get(f"{DASH}/webhooks/{webhook_id}"))
    payload = page.split('id="webhook-payload"')[1].split("</section>")[0]
    assert "&#34;n&#34;: &#34;d9&#34;" in payload or '"n": "d9"' in payload
    assert "hunter2-not-shown" not in page and SECRET not in page  # redact keys, and the credential
    headers = page.split('id="webhook-headers"')[1].split("</section>")[0]
    assert "X-Trace" in headers and "abc" in headers
    attempts = page.split('id="webhook-attempts"')[1].split("</section>")[0]
    assert attempts.count("data-log-id=") == 1 and "status-success" in attempts
    duplicates = page.split('id="webhook-duplicates"')[1].split("</section>")[0]
    assert duplicates.count("webhook #") == 1
    duplicate_id = int(re.search(r"webhook #(\d+)", duplicates).group(1))
    duplicate_page = html(client.get(f"{DASH}/webhooks/{duplicate_id}"))
    assert f'id="original" href="{DASH}/webhooks/{webhook_id}"' in duplicate_page
    assert "Replay" not in duplicate_page.split('class="actions"')[1].split("</div>")[0]
    assert re.search(r'<button type="submit" class="button primary">Replay</button>', page)
    assert client.get(f"{DASH}/webhooks/987654").status_code == 404


# -- a sync run's own page ------------------------------------------------------------------------------


def test_a_run_page_shows_progress_cursors_and_items_and_retries_or_skips_its_failed_items(client, ext, ctx):
    feed = ext.create("feed", "Feed", {})
    FEED["count"], FEED["failing"] = 4, {2, 3}
    first = run_feed_sync(feed)
    run_queued_jobs(include_delayed=True)  # spend every try: items 2 and 3 fail
    integration_page = html(client.get(f"{DASH}/integrations/{feed.id}"))
    assert f'href="{DASH}/sync-runs/{first.id}">#{first.id}</a>' in integration_page

    page = html(client.get(f"{DASH}/sync-runs/{first.id}"))
    progress = page.split('id="run-progress"')[1].split("</dd>")[0]
    assert "4 items" in progress and "2 failed" in progress and "2 success" in progress
    assert 'class="bar status-failed" style="width: 50.00%"' in progress
    assert page.split('id="cursor-before"')[1].startswith(">none<")
    assert "unchanged until the run succeeds" in page
    failed_only = html(client.get(f"{DASH}/sync-runs/{first.id}?status=failed"))
    items = failed_only.split('id="run-items"')[1]
    assert items.count("data-item-id=") == 2 and "entry 2 is malformed" in items
    assert "Ignored" not in failed_only
    assert "Ignored status=&#39;bogus&#39;" in html(client.get(f"{DASH}/sync-runs/{first.id}?status=bogus"))

    token = csrf(client, feed.id)
    FEED["failing"] = {3}
    response = post(client, f"{DASH}/sync-runs/{first.id}/retry-failed", csrf_token=token)
    assert response.headers["Location"] == f"{DASH}/sync-runs/{first.id}"
    assert flashed(client, "success", f"2 failed item(s) of run #{first.id} sent back to a worker.")
    run_queued_jobs(include_delayed=True)
    post(client, f"{DASH}/sync-runs/{first.id}/skip-failed", csrf_token=token)
    assert flashed(client, "success", f"1 failed item(s) of run #{first.id} skipped. The run is now success.")
    done = html(client.get(f"{DASH}/sync-runs/{first.id}"))
    assert "status-success" in done.split('class="subtitle"')[1].split("</p>")[0]
    assert done.split('id="cursor-after"')[1].startswith(">4<")
    assert client.get(f"{DASH}/sync-runs/987654").status_code == 404
    assert post(client, f"{DASH}/sync-runs/{first.id}/retry-failed").status_code == 400  # no CSRF token


# -- queues -------------------------------------------------------------------------------------------


def test_the_queues_page_in_embedded_mode_counts_what_waits_for_a_sweep(client, hooks):
    for delivery in ("q1", "q2"):
        set_status("webhooks", deliver(client, hooks, delivery), "pending")  # as if its job was lost
    page = html(client.get(f"{DASH}/queues"))
    assert "Embedded mode" in page
    assert f'<dt>Pending webhooks</dt><dd><a href="{DASH}/webhooks?status=pending">2</a></dd>' in page
    assert f'<dt>Pending sync items</dt><dd><a href="{DASH}/sync-items?status=pending">0</a></dd>' in page
    assert 'aria-current="page">Queues' in page


@pytest.mark.slow
@pytest.mark.redis
def test_the_queues_page_reads_rq_queues_and_workers(app_factory, redis_url, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    import uuid

    import redis

    redis.Redis.from_url(redis_url).flushdb()
    app = app_factory(INTEGRATIONS_REDIS_URL=redis_url, INTEGRATIONS_PROVIDERS={"feed": DashFeed})
    client = app.test_client()
    with app.app_context():
        from flask_integrations.queue import rq_queue
        from flask_integrations.state import current_state

        queue = rq_queue(current_state(), "integrations")
        queue.enqueue("flask_integrations.clock.utcnow")
        queue.enqueue("flask_integrations.clock.utcnow")
    page = html(client.get(f"{DASH}/queues"))
    row = row_of(page, "data-queue", "integrations")
    assert cell(row, "queued") == "2" and "waiting" in cell(row, "oldest")
    assert "No worker is listening on these queues" in page
    name = f"page-test-worker-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "rq.cli", "worker", "integrations", "--url", redis_url, "--name", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90  # a loaded machine starts a worker slowly
        while time.monotonic() < deadline:
            page = html(client.get(f"{DASH}/queues"))
            if (
                f'data-worker="{name}"' in page
                and cell(row_of(page, "data-queue", "integrations"), "queued") == "0"
            ):
                break
            time.sleep(0.3)
        worker_row = row_of(page, "data-worker", name)
        assert cell(worker_row, "state") in ("idle", "busy")
        assert cell(row_of(page, "data-queue", "integrations"), "queued") == "0"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # its registration expires with it; the db is flushed below
        worker.wait(timeout=30)
        redis.Redis.from_url(redis_url).flushdb()


def test_refused_webhooks_are_counted_on_the_webhooks_page(app, client, hooks):
    assert "None refused." in html(client.get(f"{DASH}/webhooks"))
    big = "x" * (app.config.get("INTEGRATIONS_WEBHOOK", {}).get("max_payload_bytes", 1024 * 1024) + 10)
    for _ in range(2):
        assert client.post(f"/integrations/hooks/{hooks.id}/webhook", data=b"\xff\xfe").status_code == 400
    assert client.post(f"/integrations/hooks/{hooks.id}/webhook", data=big).status_code == 413
    assert client.post("/integrations/nobody/webhook", data=b"{}").status_code == 404  # not counted
    page = html(client.get(f"{DASH}/webhooks"))

    def refused(status: int) -> str:
        return cell(page.split(f'data-refused="hooks|{hooks.id}|{status}">')[1].split("</tr>")[0], "count")

    assert refused(400) == "2" and refused(413) == "1"
    assert "nobody" not in page.split('id="refused"')[1].split("</section>")[0]
