"""The dashboard (SPEC 9) in headless Chromium, against a live server on loopback.

The data is made through the package's own code paths: outbound calls to a real loopback
upstream (tests/helpers/upstream.py), webhooks posted to the webhook route and processed by the embedded
runner, and sync runs whose handler fails one item; only the request history of the past day
(for the hourly chart) is inserted directly, as the clock cannot be moved for real calls.
Screenshots of every page go to `$INTEGRATIONS_TEST_ARTIFACTS/screenshots` (default
`test-artifacts/screenshots/`).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flask_integrations import (
    HandlesWebhooks,
    HasHealthCheck,
    IncrementalSync,
    IntegrationHTTPError,
    Provider,
)
from flask_integrations.clock import utcnow
from flask_integrations.testing import send_webhook
from tests.conftest import reset_tables
from tests.helpers.app import Loose, Tickets, db, make_app
from tests.helpers.browser import LiveServer, launch_chromium, require_browser, screenshot_dir
from tests.helpers.rows import add_requests, failure
from tests.helpers.upstream import UpstreamServer

try:
    from playwright.sync_api import expect
except ImportError:  # the tests skip (or fail under REQUIRE_SERVERS) in the browser fixture
    expect = None

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: what the shop's handlers do; tests flip these to let a replay or a retry succeed
BROKEN = {"webhook": True, "orders": {8}}
ORDERS_PER_RUN = 5


def on_order_paid(integration: Any, webhook: Any) -> None:
    if BROKEN["webhook"]:
        raise RuntimeError("warehouse refused the order")


class Shop(Provider, HandlesWebhooks, IncrementalSync, HasHealthCheck):
    """Webhooks signed by a shared header, an incremental sync of orders numbered 1, 2, 3..."""

    name = "Shop"
    sync_interval = 30

    def verify_webhook(self, integration: Any, request: Any) -> bool:
        return request.headers.get("X-Shop-Signature") == "valid"

    def webhook_event(self, request: Any) -> str | None:
        return request.headers.get("X-Shop-Event")

    def webhook_delivery_id(self, request: Any) -> str | None:
        return request.headers.get("X-Shop-Delivery")

    def webhook_handlers(self) -> dict[str, Any]:
        return {"order.paid": on_order_paid}

    def sync_incremental(self, integration: Any, session: Any) -> None:
        start = session.cursor or 0
        for n in range(start + 1, start + ORDERS_PER_RUN + 1):
            session.dispatch("shop.order", {"n": n}, checkpoint=n, external_id=f"order-{n}")

    def health_check(self, integration: Any) -> bool:
        return True


@dataclass
class Gate:
    """Holds the items of one integration's sync run in their handler until the test opens it."""

    integration_id: int | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)


GATE = Gate()
#: how long a held handler waits at most: only so that a failed test cannot hang the server
GATE_LIMIT = 60.0


def ingest_order(integration: Any, payload: dict) -> None:
    if integration.id == GATE.integration_id:
        GATE.entered.set()
        GATE.opened.wait(GATE_LIMIT)
    if payload["n"] in BROKEN["orders"]:
        raise ValueError(f"order {payload['n']} has no line items")


@dataclass
class Site:
    """The live dashboard and the ids of what was seeded."""

    backend: str
    url: str
    server: LiveServer
    app: Any
    shop: int  # healthy, breaker closed, requests of the past day, webhooks, two sync runs
    crm: int  # degraded, breaker open after upstream 503s
    legacy: int  # inactive (disabled by hand)
    billing: int  # breaker open, for the reset test
    hooli: int  # a shop that never synced, for the integration actions
    stark: int  # a shop whose second run failed an item, for the skip test
    wayne: int  # a shop whose second run failed an item, for the run page's "Retry all failed"
    oscorp: int  # a shop that never synced, for the run in flight
    failed_webhook: int
    processed_webhook: int
    secret_webhook: int  # failed, with a password in its payload, for the webhook page
    failed_item: int  # Acme shop's, left failed
    stark_failed_item: int  # Stark shop's, skipped by a test
    wayne_run: int  # Wayne shop's partial run
    not_found_request: int

    def page_url(self, path: str = "") -> str:
        return f"{self.url}/integrations/dashboard/{path.lstrip('/')}"


def _fail_upstream(integration: Any, upstream: UpstreamServer, times: int) -> None:
    for _ in range(times):
        with pytest.raises(IntegrationHTTPError):
            integration.at("contacts.create").post(f"{upstream.url}/status/503")


def seed(app: Any, upstream: UpstreamServer) -> dict[str, int]:
    ext = app.extensions["integrations"]
    with app.app_context():
        reset_tables()
        shop = ext.create("shop", "Acme shop", {"token": "shop-secret-token"}, metadata={"region": "eu"})
        crm = ext.create(
            "tickets", "Globex CRM", {"api_key": "sk-globex", "subdomain": "globex"}, {"team": "crm"}
        )
        legacy = ext.create("loose", "Initech legacy", {"token": "old"})
        billing = ext.create("loose", "Umbrella billing", {"token": "umb"})
        hooli = ext.create("shop", "Hooli shop", {"token": "hooli-token"})
        stark = ext.create("shop", "Stark shop", {"token": "stark-token"})
        wayne = ext.create("shop", "Wayne shop", {"token": "wayne-token"})
        oscorp = ext.create("shop", "Oscorp shop", {"token": "oscorp-token"})
        legacy.disable()

        for n in range(6):
            shop.at("orders").get(f"{upstream.url}/json?page={n}")
        with pytest.raises(IntegrationHTTPError):
            shop.at("orders/{id}").get(f"{upstream.url}/status/404")
        _fail_upstream(crm, upstream, 5)  # the breaker's threshold
        _fail_upstream(billing, upstream, 5)

        # the past day, for the hourly chart: two calls an hour, a failing one every sixth hour
        now = utcnow()
        history = []
        for hour in range(1, 24):
            for minute in (10, 40):
                row = {
                    "endpoint": "orders",
                    "duration_ms": 80 + (hour * 37 + minute) % 300,
                    "at": now - timedelta(hours=hour, minutes=minute),
                }
                failed = hour % 6 == 0 and minute == 40
                history.append(failure(502, "HTTP 502 Bad Gateway", **row) if failed else row)
        add_requests(shop.id, *history)

        client = app.test_client()
        headers = {"X-Shop-Signature": "valid", "X-Shop-Event": "order.paid"}
        BROKEN["webhook"] = False
        ok = send_webhook(client, "shop", {"order": 1}, shop, {**headers, "X-Shop-Delivery": "d-1"})
        BROKEN["webhook"] = True
        bad = send_webhook(client, "shop", {"order": 2}, shop, {**headers, "X-Shop-Delivery": "d-2"})
        customer = {"email": "ada@example.com", "password": "hunter2-in-the-payload"}
        secret = send_webhook(
            client, "shop", {"order": 3, "customer": customer}, shop, {**headers, "X-Shop-Delivery": "d-3"}
        )
        assert ok.status_code == bad.status_code == secret.status_code == 202, (ok.text, bad.text)

        for integration in (shop, stark, wayne):
            BROKEN["orders"] = set()
            assert integration.sync_now() is not None  # orders 1-5: the cursor moves to 5
            BROKEN["orders"] = {8}
            assert integration.sync_now() is not None  # orders 6-10: 8 fails, the cursor stays at 5

        webhooks = ext.state_for(app).tables["webhooks"]
        items = ext.state_for(app).tables["sync_items"]
        statuses = dict(db.session.execute(sa.select(webhooks.c.id, webhooks.c.status)).all())
        expected = {ok.json["id"]: "processed", bad.json["id"]: "failed", secret.json["id"]: "failed"}
        assert statuses == expected, statuses
        failed_items = dict(
            db.session.execute(
                sa.select(items.c.integration_id, items.c.id).where(items.c.status == "failed")
            ).all()
        )
        assert set(failed_items) == {shop.id, stark.id, wayne.id}, failed_items
        wayne_run = db.session.scalar(
            sa.select(items.c.sync_log_id).where(items.c.id == failed_items[wayne.id])
        )
        logs = ext.state_for(app).tables["logs"]
        assert db.session.scalar(sa.select(logs.c.status).where(logs.c.id == wayne_run)) == "partial"
        requests = ext.state_for(app).tables["requests"]
        not_found = db.session.scalar(
            sa.select(requests.c.id).where(
                requests.c.integration_id == shop.id, requests.c.status_code == 404
            )
        )
        db.session.expire_all()
        assert ext.get(shop.id).sync_cursor == ext.get(stark.id).sync_cursor == 5
        assert ext.get(crm.id).health_status == "degraded" and ext.get(crm.id).breaker_state() == "open"
        ids = {
            "shop": shop.id,
            "crm": crm.id,
            "legacy": legacy.id,
            "billing": billing.id,
            "hooli": hooli.id,
            "stark": stark.id,
            "wayne": wayne.id,
            "oscorp": oscorp.id,
            "failed_webhook": bad.json["id"],
            "processed_webhook": ok.json["id"],
            "secret_webhook": secret.json["id"],
            "failed_item": failed_items[shop.id],
            "stark_failed_item": failed_items[stark.id],
            "wayne_run": wayne_run,
            "not_found_request": not_found,
        }
        db.session.remove()
    return ids


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path_factory, upstream_server: UpstreamServer) -> Iterator[Site]:
    require_browser()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'app.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    app = make_app(
        url,
        INTEGRATIONS_PROVIDERS={"shop": Shop, "tickets": Tickets, "loose": Loose},
        INTEGRATIONS_WEBHOOK={"max_attempts": 1},
        INTEGRATIONS_SYNC={"item_tries": 1},
    )
    app.extensions["integrations"].sync_handler("shop.order")(ingest_order)
    ids = seed(app, upstream_server)
    server = LiveServer(app).start()
    yield Site(backend=request.param, url=server.url, server=server, app=app, **ids)
    server.stop()
    BROKEN.update(webhook=True, orders={8})


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@contextmanager
def new_page(browser: Any, site: Site, **options: Any) -> Iterator[Any]:
    """A page in a fresh context (own cookies); fails the test if the app or the page raised."""
    context = browser.new_context(**options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    site.server.errors.clear()
    try:
        yield page
    finally:
        context.close()
    assert not site.server.errors, f"the dashboard raised while serving: {site.server.errors!r}"
    assert not page_errors, f"JavaScript errors: {page_errors}"


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    with new_page(browser, site, viewport={"width": 1280, "height": 900}) as page:
        yield page


def shoot(page: Any, site: Site, name: str) -> Path:
    """A full-page screenshot in the artifacts; with `INTEGRATIONS_DOCS_SCREENSHOTS` set, also the
    window's view (what a reader sees first) as `<that folder>/dashboard-<name>.png` (SQLite run)."""
    path = screenshot_dir() / f"{name}-{site.backend}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    docs = os.environ.get("INTEGRATIONS_DOCS_SCREENSHOTS")
    if docs and site.backend == "sqlite":
        page.screenshot(path=str(Path(docs) / f"dashboard-{name}.png"))
    return path


def open_page(page: Any, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)


def submit(page: Any, button: Any, message: str, category: str = "success") -> None:
    """Click a form's submit button, wait for the POST-redirect-GET to land, check its flash message."""
    with page.expect_navigation():
        button.click()
    flash = page.locator(".flash")
    expect(flash).to_have_count(1)
    expect(flash).to_be_visible()
    expect(flash).to_contain_text(re.compile(message, re.I))
    expect(flash).to_have_class(re.compile(rf"\b{category}\b"))


def action_button(page: Any, integration_id: int, action: str) -> Any:
    form = page.locator(f'form[method="post"][action$="/integrations/{integration_id}/{action}"]')
    expect(form.locator('input[type="hidden"][name="csrf_token"]')).to_have_count(1)
    return form.locator('button[type="submit"]')


def reload_until(page: Any, locator: Any, text: str, timeout: float = 10.0) -> str:
    """Reload until `locator` reads `text` (embedded jobs run after the response).

    Returns the text seen before the first reload."""
    first = locator.inner_text().strip()
    deadline = time.monotonic() + timeout
    current = first
    while current != text and time.monotonic() < deadline:
        time.sleep(0.2)
        page.reload()
        current = locator.inner_text().strip()
    assert current == text, f"expected {text!r}, still {current!r}"
    return first


def follow(page: Any, link: Any, path: str) -> None:
    """Click `link` and wait for the dashboard page at `path` to load."""
    expect(link).to_have_count(1)
    with page.expect_navigation():
        link.click()
    assert page.url.split("?")[0].split("#")[0].endswith(f"/integrations/dashboard/{path}"), page.url


# -- pages --------------------------------------------------------------------------------------


def test_the_overview_lists_every_integration_with_its_badges(page, site):
    open_page(page, site.page_url())
    table = page.locator("table#integrations")
    expect(table).to_be_visible()
    expect(table.locator("tr[data-integration-id]")).to_have_count(8)

    shop = table.locator(f'tr[data-integration-id="{site.shop}"]')
    expect(shop.get_by_role("link", name="Acme shop")).to_be_visible()
    expect(shop).to_contain_text("shop")
    expect(shop.locator("span.badge.health-healthy")).to_be_visible()
    expect(shop.locator("span.badge.breaker-closed")).to_be_visible()
    # 24 h: 6 + 1 live calls and 46 of history; the 404 and three 502s are errors
    expect(shop.get_by_role("cell", name="53", exact=True)).to_be_visible()
    expect(shop.get_by_role("cell", name="7.5%", exact=True)).to_be_visible()

    crm = table.locator(f'tr[data-integration-id="{site.crm}"]')
    expect(crm.get_by_role("link", name="Globex CRM")).to_be_visible()
    expect(crm).to_contain_text("tickets")
    expect(crm.locator("span.badge.health-degraded")).to_have_text(re.compile("degraded", re.I))
    expect(crm.locator("span.badge.breaker-open")).to_have_text(re.compile("open", re.I))

    legacy = table.locator(f'tr[data-integration-id="{site.legacy}"]')
    expect(legacy.get_by_role("link", name="Initech legacy")).to_be_visible()
    expect(legacy.get_by_role("cell", name="no", exact=True)).to_be_visible()  # not active
    expect(shop.get_by_role("cell", name="yes", exact=True)).to_be_visible()
    shoot(page, site, "overview")


def test_the_overview_filters_by_provider_and_health(page, site):
    open_page(page, site.page_url("?provider=tickets"))
    rows = page.locator("table#integrations tr[data-integration-id]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-integration-id", str(site.crm))
    open_page(page, site.page_url("?health=degraded"))
    expect(rows).to_have_count(2)
    ids = {rows.nth(i).get_attribute("data-integration-id") for i in range(2)}
    assert ids == {str(site.crm), str(site.billing)}
    open_page(page, site.page_url("?provider=loose&health=degraded"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-integration-id", str(site.billing))


def test_an_integration_page_shows_its_chart_requests_and_runs(page, site):
    open_page(page, site.page_url())
    row = page.locator(f'table#integrations tr[data-integration-id="{site.shop}"]')
    with page.expect_navigation():
        row.get_by_role("link", name="Acme shop").click()
    assert page.url.rstrip("/").endswith(f"/integrations/dashboard/integrations/{site.shop}")
    expect(page.locator("h1")).to_contain_text("Acme shop")
    for section in ("#requests", "#operations", "#webhooks", "#sync-runs"):
        expect(page.locator(section)).to_be_visible()
    chart = page.locator("svg#activity-chart")
    expect(chart).to_be_visible()
    assert chart.locator("rect, path, polyline, line, circle").count() > 0, "the chart draws nothing"
    expect(page.locator("#requests")).to_contain_text("orders/{id}")
    expect(page.locator("#requests")).to_contain_text("404")
    expect(page.locator("#webhooks")).to_contain_text("order.paid")
    expect(page.locator("#sync-runs")).to_contain_text(re.compile("partial", re.I))
    expect(page.locator("#sync-cursor")).to_have_text("5")
    expect(page.get_by_text("shop-secret-token")).to_have_count(0)  # credentials are masked
    shoot(page, site, "integration")

    link = page.locator(f'#requests a[href$="/requests/{site.not_found_request}"]')
    expect(link).to_have_count(1)
    with page.expect_navigation():
        link.click()
    assert page.url.endswith(f"/integrations/dashboard/requests/{site.not_found_request}")
    body = page.locator("body")
    expect(body).to_contain_text("orders/{id}")
    expect(body).to_contain_text("404")
    expect(body).to_contain_text("GET")
    shoot(page, site, "request")


# -- actions ------------------------------------------------------------------------------------


def test_replay_of_a_failed_webhook_processes_it(page, site):
    open_page(page, site.page_url("webhooks"))
    row = page.locator(f'tr[data-webhook-id="{site.failed_webhook}"]')
    expect(row.locator("td.status")).to_have_text(re.compile(r"^\s*failed\s*$", re.I))
    expect(page.locator(f'tr[data-webhook-id="{site.processed_webhook}"] td.status')).to_contain_text(
        "processed"
    )
    BROKEN["webhook"] = False  # the warehouse accepts the order now
    submit(page, row.get_by_role("button", name="Replay"), rf"webhook #{site.failed_webhook} re-enqueued")
    assert "/integrations/dashboard/webhooks" in page.url
    first = reload_until(page, row.locator("td.status"), "processed")
    print(f"status shown right after the replay redirect: {first!r}")
    expect(row).not_to_contain_text("warehouse refused")
    shoot(page, site, "webhooks")


def test_skipping_the_failed_item_moves_the_cursor_forward(page, site):
    open_page(page, site.page_url(f"integrations/{site.stark}"))
    expect(page.locator("#sync-cursor")).to_have_text("5")

    open_page(page, site.page_url("sync-items"))
    rows = page.locator("tr[data-item-id]")
    expect(page.locator(f'tr[data-item-id="{site.failed_item}"]')).to_have_count(1)
    # failed items only, by default: Acme's, Stark's and Wayne's (unless its run's test retried it)
    assert {status.strip().lower() for status in rows.locator("td.status").all_inner_texts()} == {"failed"}
    row = page.locator(f'tr[data-item-id="{site.stark_failed_item}"]')
    expect(row.locator("td.status")).to_have_text(re.compile(r"^\s*failed\s*$", re.I))
    expect(row).to_contain_text("Stark shop")
    expect(row).to_contain_text("order-8")
    expect(row).to_contain_text("order 8 has no line items")
    expect(row.get_by_role("button", name="Retry")).to_be_visible()
    shoot(page, site, "sync-items")
    submit(
        page, row.get_by_role("button", name="Skip"), rf"item #{site.stark_failed_item} skipped.*now success"
    )
    assert "/integrations/dashboard/sync-items" in page.url
    expect(row).to_have_count(0)  # no longer failed
    expect(page.locator(f'tr[data-item-id="{site.failed_item}"]')).to_have_count(1)
    open_page(page, site.page_url("sync-items?status=skipped"))
    expect(row.locator("td.status")).to_have_text(re.compile(r"^\s*skipped\s*$", re.I))

    open_page(page, site.page_url(f"integrations/{site.stark}"))
    expect(page.locator("#sync-cursor")).to_have_text("10")
    expect(page.locator("#sync-runs tbody tr").first.locator(".badge")).to_have_text(
        re.compile("success", re.I)
    )


def test_reset_breaker_works_without_javascript_and_needs_the_csrf_token(browser, site):
    with new_page(browser, site, java_script_enabled=False) as page:
        open_page(page, site.page_url(f"integrations/{site.billing}"))  # the session gets its token
        expect(page.locator("span.badge.breaker-open").first).to_be_visible()
        action = site.page_url(f"integrations/{site.billing}/reset-breaker")
        for form in ({}, {"csrf_token": "forged"}):  # same session cookie, no or a wrong token
            refused = page.request.post(action, form=form, max_redirects=0)
            assert refused.status == 400, (form, refused.status)
            assert "CSRF" in refused.text()
        page.reload()
        expect(page.locator("span.badge.breaker-open").first).to_be_visible()  # nothing changed
        submit(page, action_button(page, site.billing, "reset-breaker"), "breaker .* reset")
        expect(page.locator("span.badge.breaker-closed").first).to_be_visible()
        expect(page.locator("span.badge.breaker-open")).to_have_count(0)


def test_sync_now_disable_enable_and_health_check_from_the_integration_page(page, site):
    open_page(page, site.page_url(f"integrations/{site.hooli}"))
    expect(page.locator("h1")).to_contain_text("Hooli shop")
    expect(page.locator("#sync-cursor")).to_have_text("none")

    submit(page, action_button(page, site.hooli, "sync-now"), r"sync run #\d+ of .Hooli shop. started")
    # the run goes on after the response, in the server's thread (a loaded CI machine is slow)
    reload_until(page, page.locator("#sync-cursor"), "5")
    expect(page.locator("#sync-runs")).to_contain_text("5 success")

    submit(page, action_button(page, site.hooli, "disable"), "disabled")
    submit(page, action_button(page, site.hooli, "sync-now"), "is disabled", category="error")
    open_page(page, site.page_url("?provider=shop"))
    row = page.locator(f'tr[data-integration-id="{site.hooli}"]')
    expect(row.get_by_role("cell", name="no", exact=True)).to_be_visible()

    open_page(page, site.page_url(f"integrations/{site.hooli}"))
    submit(page, action_button(page, site.hooli, "enable"), "enabled")
    submit(page, action_button(page, site.hooli, "health-check"), "health check .* passed")
    expect(page.locator("span.badge.health-healthy").first).to_be_visible()


def test_the_overview_fits_a_phone_screen(browser, site):
    with new_page(
        browser, site, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    ) as page:
        open_page(page, site.page_url())
        expect(page.locator("table#integrations")).to_be_attached()
        expect(page.get_by_role("link", name="Acme shop")).to_be_attached()
        widths = page.evaluate(
            """() => {
                const table = document.querySelector("table#integrations");
                const wrapper = table.parentElement;
                return {viewport: window.innerWidth, document: document.documentElement.scrollWidth,
                        body: document.body.scrollWidth, table: table.scrollWidth,
                        wrapper: wrapper.clientWidth, overflow: getComputedStyle(wrapper).overflowX};
            }"""
        )
        assert widths["viewport"] == 390, widths  # the page declares a device-width viewport
        assert widths["document"] <= widths["viewport"], widths
        assert widths["body"] <= widths["viewport"], widths
        # the wide table scrolls inside its wrapper instead of being cut off
        assert widths["table"] <= widths["wrapper"] or widths["overflow"] in ("auto", "scroll"), widths
        shoot(page, site, "overview-narrow")


def test_the_overview_updates_itself_without_a_reload(page, site):
    from flask_integrations import Integration

    open_page(page, site.page_url())
    page.evaluate("window.__notReloaded = true")
    row = page.locator(f'table#integrations tr[data-integration-id="{site.legacy}"]')
    expect(row.get_by_role("link", name="Initech legacy")).to_be_visible()
    with site.app.app_context():
        integration = db.session.get(Integration, site.legacy)
        integration.name = "Initech legacy (renamed)"
        db.session.commit()
    try:
        expect(row.get_by_role("link", name="Initech legacy (renamed)")).to_be_visible(timeout=15_000)
        assert page.evaluate("window.__notReloaded") is True  # the same document: updated, not reloaded
    finally:
        with site.app.app_context():
            integration = db.session.get(Integration, site.legacy)
            integration.name = "Initech legacy"
            db.session.commit()
            db.session.remove()


def test_pages_work_without_javascript(browser, site):
    with new_page(browser, site, java_script_enabled=False) as page:
        open_page(page, site.page_url())
        expect(page.locator("table#integrations tr[data-integration-id]")).to_have_count(8)
        open_page(page, site.page_url("queues"))
        expect(page.locator("#embedded")).to_contain_text("Embedded mode")


# -- click-through (SPEC 14) --------------------------------------------------------------------


def test_from_the_overview_to_a_failing_request(page, site):
    open_page(page, site.page_url())
    row = page.locator(f'table#integrations tr[data-integration-id="{site.crm}"]')
    follow(page, row.get_by_role("link", name="Globex CRM"), f"integrations/{site.crm}")
    requests = page.locator("#requests")
    requests.get_by_label("Status").fill("5xx")
    with page.expect_navigation():
        requests.get_by_role("button", name="Filter").click()
    rows = requests.locator("tr[data-request-id]")
    expect(rows.first).to_be_visible()
    assert set(rows.locator("td.status").all_inner_texts()) == {"503"}  # the calls that opened the breaker
    request_id = rows.first.get_attribute("data-request-id")

    follow(page, rows.first.locator("td.endpoint a"), f"requests/{request_id}")
    expect(page.locator("h1")).to_contain_text("contacts.create")
    summary = page.locator("#request-summary")
    expect(summary.locator("dd.status")).to_have_text("503")
    expect(summary.locator("dd.endpoint")).to_have_text("contacts.create")
    expect(summary.locator(".error-text")).to_contain_text("503")
    expect(summary).to_contain_text("upstream")  # the failure class
    shoot(page, site, "request-failed")


def test_from_the_overviews_error_rate_through_the_explorer_to_a_failing_request(page, site):
    open_page(page, site.page_url())
    row = page.locator(f'table#integrations tr[data-integration-id="{site.crm}"]')
    with page.expect_navigation():
        row.locator("td.error-rate a").click()
    assert "/integrations/dashboard/requests?" in page.url and "failure_class=any" in page.url
    expect(page.locator("#filter-failure_class")).to_have_value("any")
    expect(page.locator("#filter-integration")).to_have_value(str(site.crm))
    rows = page.locator("#explorer-rows tr[data-request-id]")
    expect(rows.first).to_be_visible()
    expect(page.locator("#figure-error-rate")).to_have_text("100.0%")  # only failed attempts listed
    shoot(page, site, "explorer")

    page.locator("#filter-status").fill("503")  # narrow further, keeping the other filters
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    assert set(rows.locator("td.status").all_inner_texts()) == {"503"}
    request_id = rows.first.get_attribute("data-request-id")
    follow(page, rows.first.locator("td.endpoint a"), f"requests/{request_id}")
    expect(page.locator("#request-summary dd.status")).to_have_text("503")


def test_from_the_webhooks_list_to_a_webhook_replayed_on_its_page(page, site):
    webhook = site.secret_webhook
    open_page(page, site.page_url("webhooks"))
    row = page.locator(f'tr[data-webhook-id="{webhook}"]')
    follow(page, row.get_by_role("link", name=f"#{webhook}", exact=True), f"webhooks/{webhook}")
    expect(page.locator("h1")).to_contain_text("order.paid")
    summary = page.locator("#webhook-summary")
    expect(summary.locator("dd.status")).to_have_text("failed")
    expect(summary).to_contain_text("d-3")
    expect(summary.locator(".error-text")).to_contain_text("warehouse refused the order")
    payload = page.locator("#webhook-payload pre")
    expect(payload).to_contain_text("ada@example.com")
    expect(payload).to_contain_text("[REDACTED]")
    expect(page.locator("body")).not_to_contain_text("hunter2-in-the-payload")
    headers = page.locator("#webhook-headers pre")
    expect(headers).to_contain_text(re.compile("X-Shop-Event", re.I))
    expect(headers).not_to_contain_text(re.compile("signature", re.I))  # never stored
    attempts = page.locator("#webhook-attempts tr[data-log-id]")
    expect(attempts).to_have_count(1)
    expect(attempts.first).to_contain_text("warehouse refused the order")
    shoot(page, site, "webhook")

    before = BROKEN["webhook"]
    BROKEN["webhook"] = False  # the warehouse accepts the order now
    try:
        replay = page.locator(".page-head").get_by_role("button", name="Replay")
        submit(page, replay, rf"webhook #{webhook} re-enqueued")
        assert page.url.endswith(f"/integrations/dashboard/webhooks/{webhook}"), page.url
        reload_until(page, summary.locator("dd.status"), "processed")
    finally:
        BROKEN["webhook"] = before
    expect(summary.locator(".error-text")).to_have_count(0)
    expect(attempts).to_have_count(2)
    expect(attempts.last.locator(".badge")).to_have_text(re.compile("success", re.I))


def test_from_a_run_number_to_its_page_where_retry_all_failed_fixes_the_items(page, site):
    run = site.wayne_run
    open_page(page, site.page_url(f"integrations/{site.wayne}"))
    number = page.locator(f'#sync-runs tr[data-run-id="{run}"]').get_by_role("link", name=f"#{run}")
    follow(page, number, f"sync-runs/{run}")
    expect(page.locator("h1")).to_have_text(f"Sync run #{run}")
    summary = page.locator("#run-summary")
    expect(summary.locator("dd.status")).to_have_text("partial")
    expect(page.locator("[data-live]")).to_have_count(0)  # a finished run does not refresh itself
    progress = summary.locator("#run-progress")
    expect(progress).to_contain_text("5 items")
    expect(progress).to_contain_text("4 success")
    expect(progress).to_contain_text("1 failed")
    expect(progress.locator(".progress .bar.status-success")).to_be_visible()
    expect(progress.locator(".progress .bar.status-failed")).to_be_visible()
    failed = page.locator("#run-items tr[data-item-id]").filter(has_text="order-8")
    expect(failed.locator("td.status")).to_have_text(re.compile(r"^\s*failed\s*$", re.I))
    expect(failed).to_contain_text("order 8 has no line items")
    shoot(page, site, "sync-run")

    before = BROKEN["orders"]
    BROKEN["orders"] = set()  # order 8 has its line items now
    try:
        submit(
            page,
            page.get_by_role("button", name="Retry all failed"),
            rf"1 failed item\(s\) of run #{run} sent back",
        )
        assert page.url.endswith(f"/integrations/dashboard/sync-runs/{run}"), page.url
        # the run is finalised once its retried item is done (a finished run's page is not live)
        reload_until(page, summary.locator("dd.status"), "success")
    finally:
        BROKEN["orders"] = before
    expect(failed.locator("td.status")).to_have_text(re.compile(r"^\s*success\s*$", re.I))
    expect(failed).not_to_contain_text("no line items")
    expect(progress).to_contain_text("5 success")
    expect(progress.locator(".progress .bar.status-failed")).to_have_count(0)
    expect(page.locator("#cursor-after")).to_have_text("10")  # the run succeeded: its checkpoints count
    expect(page.get_by_role("button", name="Retry all failed")).to_have_count(0)


def test_a_run_in_flight_updates_its_page_without_a_reload(page, site):
    GATE.integration_id = site.oscorp
    GATE.entered.clear()
    GATE.opened.clear()
    try:
        open_page(page, site.page_url(f"integrations/{site.oscorp}"))
        submit(page, action_button(page, site.oscorp, "sync-now"), r"sync run #\d+ of .Oscorp shop. started")
        run = int(re.search(r"#(\d+)", page.locator(".flash").inner_text())[1])
        assert GATE.entered.wait(10), "the run's items never reached their handler"
        number = page.locator(f'#sync-runs tr[data-run-id="{run}"]').get_by_role("link", name=f"#{run}")
        follow(page, number, f"sync-runs/{run}")

        summary = page.locator("#run-summary")
        expect(page.locator("#run-summary[data-live], #run-items[data-live]")).to_have_count(2)
        expect(summary.locator("dd.status")).to_have_text("processing")
        expect(summary).to_contain_text("in flight")
        expect(summary.locator("#run-progress")).to_contain_text("5 processing")
        page.evaluate("window.__notReloaded = true")

        GATE.opened.set()  # the handler lets the items through
        expect(summary.locator("dd.status")).to_have_text("success", timeout=15_000)
        expect(summary.locator("#run-progress")).to_contain_text("5 success")
        expect(summary).not_to_contain_text("in flight")
        statuses = page.locator("#run-items tr[data-item-id] td.status")
        expect(statuses).to_have_text(["success"] * ORDERS_PER_RUN)
        assert page.evaluate("window.__notReloaded") is True  # the same document: updated, not reloaded
    finally:
        GATE.opened.set()
        GATE.integration_id = None
