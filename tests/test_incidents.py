"""ClassifiesFailures, breaker signals and incidents (SPEC 15)."""

from __future__ import annotations

import multiprocessing
import re
import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from flask_integrations import (
    CircuitOpenError,
    ClassifiesFailures,
    ConfigurationError,
    IntegrationHTTPError,
    IntegrationLog,
    Provider,
    signals,
)
from flask_integrations.pipeline import writer
from tests.conftest import reset_tables
from tests.helpers.app import db, make_app
from tests.helpers.processes import results_of

FAST_BREAKER = {"threshold": 2, "cooldown": 1}
HEALTH = {"degraded_after": 2, "failing_after": 50, "disabled_after": None}


class ServiceDown(Exception):
    """What an SDK raises for an outage: no status anywhere in it."""


class BadInput(Exception):
    pass


class Sdk(ClassifiesFailures, Provider):
    def classify_failure(self, exc, response):
        if isinstance(exc, ServiceDown):
            return "upstream"
        if response is not None and response.status_code == 503:
            return "client"  # this upstream answers 503 for a bad request
        return None


class Broken(ClassifiesFailures, Provider):
    def classify_failure(self, exc, response):
        raise RuntimeError("the hook itself fails")


class Plain(Provider):
    pass


@pytest.fixture
def resilient_app(app_factory):
    return app_factory(
        INTEGRATIONS_PROVIDERS={"sdk": Sdk, "plain": Plain, "broken": Broken},
        INTEGRATIONS_BREAKER=FAST_BREAKER,
        INTEGRATIONS_HEALTH=HEALTH,
    )


@pytest.fixture
def received():
    seen: list[tuple[str, int]] = []

    def opened(_, integration, **__):
        seen.append(("opened", integration.id))

    def closed(_, integration, **__):
        seen.append(("closed", integration.id))

    with signals.breaker_opened.connected_to(opened), signals.breaker_closed.connected_to(closed):
        yield seen


def incidents(integration_id: int) -> list[IntegrationLog]:
    writer.wait_for_all_rows()
    db.session.expire_all()
    return db.session.scalars(
        sa.select(IntegrationLog)
        .where(IntegrationLog.integration_id == integration_id, IntegrationLog.operation == "incident")
        .order_by(IntegrationLog.id)
    ).all()


def fail_with(exc: BaseException):
    def target():
        raise exc

    return target


def test_a_provider_classifier_opens_the_breaker_degrades_health_and_retries(resilient_app, received):
    with resilient_app.app_context():
        sdk = resilient_app.extensions["integrations"].create("sdk", "SDK", {})
        calls = []

        def down():
            calls.append(1)
            raise ServiceDown("maintenance")

        with pytest.raises(ServiceDown):
            sdk.at("charge").with_attempts(2).post(down)
        assert len(calls) == 2  # retried: an upstream failure
        assert sdk.health_status == "degraded"
        assert received == [("opened", sdk.id)]
        with pytest.raises(CircuitOpenError):
            sdk.at("charge").post(lambda: "never sent")
        classes = (
            db.session.execute(sa.text("SELECT failure_class FROM integration_requests")).scalars().all()
        )
        assert classes == ["upstream", "upstream"]


def test_without_a_classifier_the_same_exception_is_unknown_and_harmless(resilient_app, received):
    with resilient_app.app_context():
        plain = resilient_app.extensions["integrations"].create("plain", "Plain", {})
        calls = []

        def down():
            calls.append(1)
            raise ServiceDown("maintenance")

        for _ in range(3):
            with pytest.raises(ServiceDown):
                plain.at("charge").with_attempts(2).post(down)
        assert len(calls) == 3 and plain.health_status == "healthy" and received == []


def test_a_provider_can_call_an_http_error_a_client_failure(resilient_app, upstream, received):
    with resilient_app.app_context():
        sdk = resilient_app.extensions["integrations"].create("sdk", "SDK", {})
        for _ in range(3):
            with pytest.raises(IntegrationHTTPError):
                sdk.at("x").get(upstream.url + "/status/503")
        assert upstream.hits("/status/503") == 3  # a GET's three attempts each, had it been upstream
        assert sdk.health_status == "healthy" and received == []


def test_a_classifier_that_raises_leaves_the_default_in_charge(resilient_app, upstream, received, caplog):
    with resilient_app.app_context():
        broken = resilient_app.extensions["integrations"].create("broken", "B", {})
        with pytest.raises(IntegrationHTTPError):
            broken.at("x").with_attempts(1).get(upstream.url + "/status/503")
        with pytest.raises(IntegrationHTTPError):
            broken.at("x").with_attempts(1).get(upstream.url + "/status/503")
        assert received == [("opened", broken.id)]
        assert "broken.classify_failure raised" in caplog.text


def test_a_classifier_is_required_by_the_mixin(app_factory):
    class Declares(ClassifiesFailures, Provider):
        pass

    with pytest.raises(
        ConfigurationError, match="declares ClassifiesFailures but does not define classify_failure"
    ):
        app_factory(INTEGRATIONS_PROVIDERS={"declares": Declares})


def test_an_incident_opens_once_and_closes_with_the_episode_figures(resilient_app, upstream, received):
    with resilient_app.app_context():
        plain = resilient_app.extensions["integrations"].create("plain", "Plain", {})
        plain.at("x").get(upstream.url + "/json")
        with pytest.raises(IntegrationHTTPError):
            plain.at("x").with_attempts(1).get(upstream.url + "/status/404")  # counted in neither
        assert incidents(plain.id) == []
        time.sleep(0.01)
        for _ in range(2):  # health degraded and breaker opened by the same failures: one incident
            with pytest.raises(IntegrationHTTPError):
                plain.at("x").with_attempts(1).get(upstream.url + "/status/502")
        [incident] = incidents(plain.id)
        assert incident.status == "open" and incident.summary.startswith("Incident: ")
        time.sleep(1.1)  # the cooldown: the next call is the half-open probe
        plain.at("x").get(upstream.url + "/json")
        assert received == [("opened", plain.id), ("closed", plain.id)]
        [incident] = incidents(plain.id)
        assert incident.status == "closed"
        assert incident.metadata["failures"] == {"client": 1, "upstream": 2}  # since the last success
        assert "404" in incident.metadata["first_error"] and "502" in incident.metadata["last_error"]
        assert incident.duration_ms >= 1000
        for _ in range(2):  # a new episode, a new incident
            with pytest.raises(IntegrationHTTPError):
                plain.at("x").with_attempts(1).get(upstream.url + "/status/500")
        assert [i.status for i in incidents(plain.id)] == ["closed", "open"]


def test_an_operators_reset_closes_the_breaker_once(resilient_app, upstream, received):
    with resilient_app.app_context():
        plain = resilient_app.extensions["integrations"].create("plain", "Plain", {})
        for _ in range(2):
            with pytest.raises(IntegrationHTTPError):
                plain.at("x").with_attempts(1).get(upstream.url + "/status/500")
        plain.reset_breaker()
        plain.reset_breaker()
        assert received == [("opened", plain.id), ("closed", plain.id)]
        assert incidents(plain.id)[0].status == "open"  # health is still degraded
        plain.at("x").get(upstream.url + "/json")
        assert incidents(plain.id)[0].status == "closed"


# -- a flapping upstream called by several processes ----------------------------------------------


def _flapping_worker(
    database_url: str, redis_url: str, prefix: str, integration_id: int, base: str, out: Any
) -> None:
    app = make_app(
        database_url,
        INTEGRATIONS_REDIS_URL=redis_url,
        INTEGRATIONS_REDIS_PREFIX=prefix,
        INTEGRATIONS_PROVIDERS={"plain": Plain},
        INTEGRATIONS_BREAKER=FAST_BREAKER,
        INTEGRATIONS_HEALTH=HEALTH,
    )
    seen = {"opened": 0, "closed": 0}
    signals.breaker_opened.connect(
        lambda *_, **__: seen.__setitem__("opened", seen["opened"] + 1), weak=False
    )
    signals.breaker_closed.connect(
        lambda *_, **__: seen.__setitem__("closed", seen["closed"] + 1), weak=False
    )
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:  # the upstream is down
            try:
                integration.at("x").with_attempts(1).get(base + "/status/503")
            except Exception:  # noqa: BLE001 - failures and open-breaker refusals alike
                time.sleep(0.01)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # and back
            try:
                integration.at("x").get(base + "/json")
            except CircuitOpenError:
                time.sleep(0.05)
        writer.wait_for_all_rows()
    out.put(seen)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_each_transition_is_signalled_once_across_processes(postgres_url, redis_url, upstream):
    app = make_app(postgres_url, INTEGRATIONS_PROVIDERS={"plain": Plain})
    with app.app_context():
        reset_tables()
        integration = app.extensions["integrations"].create("plain", "Flapping", {})
        integration_id = integration.id
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [
        context.Process(
            target=_flapping_worker,
            args=(postgres_url, redis_url, prefix, integration_id, upstream.url, out),
        )
        for _ in range(4)
    ]
    seen = results_of(processes, out, 90)
    assert sum(s["opened"] for s in seen) == 1
    assert sum(s["closed"] for s in seen) == 1
    with app.app_context():
        found = incidents(integration_id)
        assert [i.status for i in found] == ["closed"]
        assert found[0].metadata["failures"]["upstream"] >= 2
        db.engine.dispose()


def test_the_integration_page_lists_incidents(resilient_app, upstream):
    with resilient_app.app_context():
        plain = resilient_app.extensions["integrations"].create("plain", "Plain", {})
        client = resilient_app.test_client()
        assert "No incidents." in client.get(f"/integrations/dashboard/integrations/{plain.id}").text
        for _ in range(2):
            with pytest.raises(IntegrationHTTPError):
                plain.at("x").with_attempts(1).get(upstream.url + "/status/503")
        plain.reset_breaker()
        plain.at("x").get(upstream.url + "/json")
        [incident] = incidents(plain.id)
        page = client.get(f"/integrations/dashboard/integrations/{plain.id}").text
        row = page.split(f'data-incident-id="{incident.id}"')[1].split("</tr>")[0]
        assert "status-closed" in row and "circuit breaker opened" in row and "2 upstream" in row
        assert "HTTP 503" in row


def test_the_integration_page_shows_the_failure_summary(resilient_app, upstream):
    with resilient_app.app_context():
        plain = resilient_app.extensions["integrations"].create("plain", "Plain", {})
        client = resilient_app.test_client()
        assert (
            "No failed attempts in the last 24 h."
            in client.get(f"/integrations/dashboard/integrations/{plain.id}").text
        )
        plain.at("x").get(upstream.url + "/json")
        with pytest.raises(IntegrationHTTPError):
            plain.at("x").with_attempts(1).get(upstream.url + "/status/503")
        page = client.get(f"/integrations/dashboard/integrations/{plain.id}").text
        summary = page.split('id="failure-summary"')[1].split("</section>")[0]
        text = re.sub(r"<[^>]+>", "", summary)  # the counts are links to the explorer
        assert "1 failed of 2:" in text and "1 upstream" in text and "HTTP 503" in text
