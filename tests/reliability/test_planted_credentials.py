"""Credential values planted in every string a caller or a provider controls (security round 2).

Promise: an integration's credential values are never stored, rendered, signalled or logged in
clear, wherever the code that uses the package puts them (RELIABILITY.md, "Secrets").

How: hypothesis draws a credential value (the alphabet of API keys and tokens: letters, digits,
``-_.~+/=``) and plants it, on one integration, in every string the pipeline, the webhook route
and operation logs accept from their callers or from an upstream:

- outbound calls: the endpoint label (as a path, in its query under an unknown name), the
  target's path and query, a GET query and a JSON and a form body (as a value and as a key),
  a request header, an SDK exception's message, the provider request id a callable reports and
  one an upstream echoes in `X-Request-Id`, a 404 and a 503 on a label carrying the value;
- webhooks: a header's value, the event type and the delivery id;
- operation logs: operation name, summary, external id, metadata, result data and error.

Then every column of every table (but the documented exceptions: webhook and sync item
payloads, stored as received for their handlers, and idempotency keys, the calls' identity),
every dashboard page of the integration and of each request, the signals' arguments, every log
record at DEBUG (httpx and SQL included) and the CLI's `list`, `health`, `stats` and
`list-failed-items` are searched for the value, plain, URL-encoded and JSON-escaped. Figures go
to `planted_credentials.json`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import string
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_integrations import HandlesWebhooks, IntegrationHTTPError, IntegrationRequest, Provider, signals
from tests.helpers.app import db
from tests.helpers.secrets import Collected, dump_tables, leaks

EXAMPLES = 40
CREDENTIAL = st.text(alphabet=string.ascii_letters + string.digits + "-_.~+/=", min_size=12, max_size=40).map(
    lambda text: f"K{text}"
)
FIGURES: dict[str, Any] = {"examples": 0, "places planted": 0, "texts searched": 0, "leaks": []}

#: Stored on purpose as given (RELIABILITY.md): the handlers' input, and the calls' identity.
NOT_SEARCHED = {"payload", "idempotency_key", "key"}


@dataclasses.dataclass
class Creds:
    api_key: str


class Api(Provider, HandlesWebhooks):
    credential_class = Creds

    def prepare_request(self, integration, request):
        request.headers["X-Api-Key"] = integration.credentials.api_key

    def verify_webhook(self, integration, request):
        return True

    def webhook_event(self, request):
        return request.headers.get("X-Event")

    def webhook_delivery_id(self, request):
        return request.headers.get("X-Delivery")


@pytest.fixture(scope="module", autouse=True)
def _figures(figures_dir):
    yield
    (figures_dir / "planted_credentials.json").write_text(json.dumps(FIGURES, indent=2, sort_keys=True))


@pytest.fixture
def app(app_factory, upstream_server):
    upstream_server.reset()
    Api.base_url = upstream_server.url
    app = app_factory(
        INTEGRATIONS_PROVIDERS={"api": Api},
        INTEGRATIONS_RETRY_AFTER_MAX=0.01,
        INTEGRATIONS_BREAKER={"enabled": False},
    )
    with app.app_context():
        yield app
        db.session.remove()


def plant_in_calls(integration: Any, secret: str, server: Any) -> int:
    """Every outbound call carrying `secret` somewhere a caller or the upstream controls."""
    places = 0

    def sdk(ctx):
        ctx.report(provider_request_id=f"req-{secret}")
        return {"echo": "fine"}

    def failing_sdk():
        raise RuntimeError(f"the SDK refused key {secret}")

    integration.at(f"/json/{secret}/detail").get()  # a label used as the path
    integration.at(f"/json?lookup={secret}").get()  # ... and its query under an unknown name
    integration.at("items").get(f"/json/{secret}?also={secret}")  # the target's path and query
    integration.at("search").with_data({"q": secret, secret: "as a key"}).get("/json")
    integration.at("create").with_data({"note": secret, "nested": {"deep": [secret]}}).post("/json")
    integration.at("form").with_form({"field": secret}).post("/json")
    integration.at("headers").with_headers({"X-Trace": secret}).get("/json")
    integration.at("sdk").get(sdk)
    with pytest.raises(RuntimeError):
        integration.at("sdk.fail").get(failing_sdk)
    server.script("/echo-id", [(200, {"ok": True}, {"X-Request-Id": f"id-{secret}"})])
    integration.at("echo-id").get("/echo-id")
    for status in (404, 503):
        with pytest.raises(IntegrationHTTPError):
            integration.at(f"/status/{status}?for={secret}").with_attempts(1).get()
    places += 14
    return places


def plant_in_webhook(app: Any, integration: Any, secret: str) -> int:
    client = app.test_client()
    headers = {"X-Event": f"event-{secret}", "X-Delivery": f"delivery-{secret}", "X-Echo": f"echo {secret}"}
    response = client.post(f"/integrations/api/{integration.id}/webhook", json={}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    return 3


def plant_in_logs(integration: Any, secret: str) -> int:
    integration.log_operation(
        f"import-{secret}",
        "inbound",
        "failed",
        summary=f"import of {secret}",
        external_id=f"ext-{secret}",
        metadata={"why": secret},
        result_data={"rows": [secret]},
        error=f"refused {secret}",
    )
    return 6


def read_everything(app: Any, integration: Any, seen: Collected) -> None:
    client = app.test_client()
    seen.add("page:integration", client.get(f"/integrations/dashboard/integrations/{integration.id}").text)
    seen.add("page:webhooks", client.get("/integrations/dashboard/webhooks").text)
    for request_id in db.session.scalars(
        sa.select(IntegrationRequest.id).where(IntegrationRequest.integration_id == integration.id)
    ):
        seen.add(
            f"page:request:{request_id}", client.get(f"/integrations/dashboard/requests/{request_id}").text
        )
    runner = app.test_cli_runner()
    for command in (["list"], ["health"], ["stats"], ["list-failed-items"]):
        seen.add(f"cli:{command[0]}", runner.invoke(args=["integrations", *command]).output)
    for where, text in dump_tables():
        if where.rsplit(".", 1)[1] not in NOT_SEARCHED:
            seen.add(where, text)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secret=CREDENTIAL)
def test_a_credential_planted_anywhere_is_never_stored_shown_signalled_or_logged(
    app, upstream_server, caplog, secret
):
    seen = Collected()

    def on_signal(sender, **extra):
        seen.add("signal", repr(extra.get("endpoint")) + repr(extra.get("error")))

    integration = app.extensions["integrations"].create("api", "API", {"api_key": secret})
    caplog.clear()
    with (
        caplog.at_level(logging.DEBUG),
        signals.request_completed.connected_to(on_signal),
        signals.request_failed.connected_to(on_signal),
    ):
        places = plant_in_calls(integration, secret, upstream_server)
        places += plant_in_webhook(app, integration, secret)
        places += plant_in_logs(integration, secret)
        db.session.commit()
        read_everything(app, integration, seen)
    for record in caplog.records:
        seen.add(f"log:{record.name}", record.getMessage())
    found = leaks(seen, {"credential": secret})
    FIGURES["examples"] += 1
    FIGURES["places planted"] = places
    FIGURES["texts searched"] += len(seen.texts)
    FIGURES["leaks"] += found
    assert found == []
