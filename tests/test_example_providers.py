"""examples/providers/ does what each module says, against real loopback servers: the API-key
provider (auth on the wire, paginated sync into the app's table, signed webhooks), the OAuth2
provider (connect, token on every call, refresh, revoke) and the SDK provider (callables through
the pipeline, retried with one idempotency key)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask, render_template_string

import flask_integrations as fi
from examples.providers import api_key_webhooks, oauth2, sdk_callable
from flask_integrations.testing import send_webhook
from tests.helpers.app import KEY, db
from tests.helpers.oauth import CLIENT_ID, CLIENT_SECRET
from tests.helpers.secrets import dump_tables

# -- API key, webhooks, paginated sync -------------------------------------------------------------

PARCELS_KEY = "pk_live_5d1c9a7e03f4"
PARCELS_SECRET = "whsec-parcels-8b2f61"
SHIPMENTS = "/acme/api/v2/shipments"


@pytest.fixture
def parcels_app(tmp_path, upstream) -> Iterator[Flask]:
    """The example's own app, its provider pointed at the loopback API (two shipments a page)."""
    local = type(
        "Parcels",
        (api_key_webhooks.Parcels,),
        {"base_url": f"{upstream.url}/{{account}}/api/v2", "page_size": 2},
    )
    app = api_key_webhooks.create_app(
        TESTING=True,
        SECRET_KEY="test",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'parcels.db'}",
        INTEGRATIONS_ENCRYPTION_KEYS=[KEY],
        INTEGRATIONS_PROVIDERS={"parcels": local},
    )
    yield app
    with app.app_context():
        api_key_webhooks.db.session.remove()
        api_key_webhooks.db.engine.dispose()


def _parcels(app: Flask) -> int:
    with app.app_context():
        credentials = {"api_key": PARCELS_KEY, "webhook_secret": PARCELS_SECRET, "account": "acme"}
        return app.extensions["integrations"].create("parcels", "Acme parcels", credentials).id


def _shipment(number: int, updated_at: str, status: str = "in_transit") -> dict[str, Any]:
    return {
        "id": f"shp_{number}",
        "tracking_number": f"1Z{number:03d}",
        "status": status,
        "updated_at": updated_at,
    }


def _shipments(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        query = sa.select(api_key_webhooks.Shipment.tracking_number, api_key_webhooks.Shipment.status)
        return [tuple(row) for row in api_key_webhooks.db.session.execute(query.order_by("tracking_number"))]


def _stored_texts(app: Flask) -> str:
    """Every row of every table of the app's database, as text."""
    with app.app_context():
        engine = api_key_webhooks.db.engine
        with engine.connect() as connection:
            return "\n".join(
                str(tuple(row))
                for name in sa.inspect(engine).get_table_names()
                for row in connection.execute(sa.text(f'SELECT * FROM "{name}"'))
            )


def test_api_key_calls_go_to_the_accounts_host_with_the_key_and_no_row_keeps_it(parcels_app, upstream):
    integration_id = _parcels(parcels_app)
    with parcels_app.app_context():
        integration = parcels_app.extensions["integrations"].get(integration_id)
        assert integration.provider_instance.health_check(integration) is True
    sent = upstream.requests[-1]
    assert (sent["path"], sent["headers"]["x-api-key"]) == ("/acme/api/v2/account", PARCELS_KEY)
    upstream.script("/acme/api/v2/account", [(401, {"error": "bad key"})])
    with parcels_app.app_context():
        integration = parcels_app.extensions["integrations"].get(integration_id)
        assert integration.provider_instance.health_check(integration) is False
    texts = _stored_texts(parcels_app)
    assert "/account" in texts  # the request rows are there ...
    assert PARCELS_KEY not in texts and PARCELS_SECRET not in texts  # ... and the key is not


def test_api_key_sync_reads_every_page_into_the_app_table_and_moves_the_cursor(parcels_app, upstream):
    integration_id = _parcels(parcels_app)
    upstream.script(
        SHIPMENTS,
        [
            (200, {"data": [_shipment(1, "2026-03-01T10:00:00Z"), _shipment(2, "2026-03-02T10:00:00Z")]}),
            (200, {"data": [_shipment(3, "2026-03-03T10:00:00Z")]}),  # short: the last page
            (200, {"data": [_shipment(2, "2026-03-04T08:00:00Z", status="delivered")]}),
        ],
    )
    with parcels_app.app_context():
        parcels_app.extensions["integrations"].get(integration_id).sync_now()
    assert _shipments(parcels_app) == [
        ("1Z001", "in_transit"),
        ("1Z002", "in_transit"),
        ("1Z003", "in_transit"),
    ]
    with parcels_app.app_context():
        integration = parcels_app.extensions["integrations"].get(integration_id)
        assert integration.sync_cursor == "2026-03-03T10:00:00Z"
        integration.sync_now()
        assert (
            parcels_app.extensions["integrations"].get(integration_id).sync_cursor == "2026-03-04T08:00:00Z"
        )
    assert _shipments(parcels_app)[1] == ("1Z002", "delivered")  # updated, not added
    assert [r["query"] for r in upstream.requests] == [
        {"per_page": "2", "page": "1"},  # no cursor yet: no updated_since
        {"per_page": "2", "page": "2"},
        {"updated_since": "2026-03-03T10:00:00Z", "per_page": "2", "page": "1"},
    ]
    assert {r["headers"]["x-api-key"] for r in upstream.requests} == {PARCELS_KEY}


def _signed_by_hand(body: bytes, at: int) -> dict[str, str]:
    """What the docstring says Parcels sends: HMAC-SHA256 (hex) of "<timestamp>.<body>"."""
    digest = hmac.new(PARCELS_SECRET.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Parcels-Timestamp": str(at), "X-Parcels-Signature": digest}


def test_api_key_webhooks_signed_are_handled_once_unsigned_or_stale_are_refused(parcels_app):
    integration_id = _parcels(parcels_app)
    client = parcels_app.test_client()
    delivery = {"id": "evt_1", "event": "shipment.created", "data": _shipment(7, "2026-03-05")}

    assert send_webhook(client, "parcels", delivery, integration=integration_id, sign=True).status_code == 202
    again = send_webhook(client, "parcels", delivery, integration=integration_id, sign=True)
    assert again.json["status"] == "duplicate"
    assert _shipments(parcels_app) == [("1Z007", "in_transit")]

    update = json.dumps(
        {**delivery, "id": "evt_2", "event": "shipment.updated", "data": _shipment(7, "x", "lost")}
    )
    body, now = update.encode(), int(time.time())
    for refused in (
        {},
        _signed_by_hand(body, now - 301),
        {**_signed_by_hand(body, now), "X-Parcels-Timestamp": str(now - 1)},
    ):
        assert (
            send_webhook(client, "parcels", body, integration=integration_id, headers=refused).status_code
            == 401
        )
    assert (
        send_webhook(client, "parcels", body, headers=_signed_by_hand(body, now)).status_code == 401
    )  # no secret
    assert _shipments(parcels_app) == [("1Z007", "in_transit")]
    signed = _signed_by_hand(body, now)
    assert (
        send_webhook(client, "parcels", body, integration=integration_id, headers=signed).status_code == 202
    )
    assert _shipments(parcels_app) == [("1Z007", "lost")]


# -- OAuth2 ---------------------------------------------------------------------------------------


@pytest.fixture
def oauth_server(auth_server):
    """The module's fake authorization server (tests/helpers/oauth.py), emptied for this test."""
    auth_server.reset()
    return auth_server


def _calendar_app(app_factory, oauth_server, api_url: str) -> Flask:
    """The example's provider with its authorization server on `oauth_server` and its API at `api_url`."""
    local = type("Calendar", (oauth2.Calendar,), {"oauth_url": oauth_server.url, "base_url": api_url})
    app = app_factory(INTEGRATIONS_PROVIDERS={"calendar": local})
    app.add_url_rule(
        "/settings", "settings", lambda: render_template_string("{{ integrations_csrf_token() }}")
    )
    return app


def _calendar(app: Flask, **tokens: Any) -> int:
    with app.app_context():
        credentials = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **tokens}
        integration_id = app.extensions["integrations"].create("calendar", "Ada's calendar", credentials).id
        db.session.remove()
    return integration_id


def _credentials(app: Flask, integration_id: int) -> dict[str, Any]:
    with app.app_context():
        credentials = app.extensions["integrations"].get(integration_id).credentials_dict()
        db.session.remove()
    return credentials


def test_oauth2_connect_stores_the_tokens_encrypted_and_calls_carry_the_access_token(
    app_factory, oauth_server
):
    app = _calendar_app(app_factory, oauth_server, f"{oauth_server.url}/api")  # /api/me checks the token
    integration_id = _calendar(app)
    client = app.test_client()

    to_provider = client.get(f"/integrations/{integration_id}/oauth/authorize")
    assert to_provider.status_code == 302
    location = to_provider.headers["Location"]
    assert location.startswith(f"{oauth_server.url}/authorize?") and "scope=events.read" in location
    consent = httpx.get(location)  # the user allows; the server checks client id and PKCE challenge
    callback = urlparse(consent.headers["Location"])
    assert client.get(f"{callback.path}?{callback.query}").status_code == 302

    credentials = _credentials(app, integration_id)
    assert credentials["access_token"].startswith("at-") and credentials["refresh_token"].startswith("rt-")
    assert not [text for _, text in _dump(app) if credentials["access_token"] in text]
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        assert integration.provider_instance.health_check(integration) is True
        db.session.remove()
    assert (oauth_server.count("exchange"), oauth_server.count("api"), oauth_server.count("refresh")) == (
        1,
        1,
        0,
    )


def _dump(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        dumped = dump_tables()
        db.session.remove()
    return dumped


def test_oauth2_refreshes_a_token_about_to_expire_and_once_after_a_401(app_factory, oauth_server):
    app = _calendar_app(app_factory, oauth_server, f"{oauth_server.url}/api")
    tokens = oauth_server.tokens(access_ttl=60)  # within refresh_threshold (300 s)
    integration_id = _calendar(
        app,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        token_expires_at=time.time() + 60,
    )
    with app.app_context():
        assert app.extensions["integrations"].get(integration_id).at("me").get("/me")["token_seen"]
        db.session.remove()
    assert oauth_server.count("refresh") == 1
    fresh = _credentials(app, integration_id)
    assert fresh["access_token"] != tokens["access_token"]

    with oauth_server.lock:
        oauth_server.access.pop(fresh["access_token"])  # the provider forgot it: the API answers 401
    with app.app_context():
        assert app.extensions["integrations"].get(integration_id).at("me").get("/me")["token_seen"]
        db.session.remove()
    assert oauth_server.count("refresh") == 2


def test_oauth2_disconnect_revokes_at_the_provider_and_forgets_the_tokens(app_factory, oauth_server):
    app = _calendar_app(app_factory, oauth_server, f"{oauth_server.url}/api")
    tokens = oauth_server.tokens()
    integration_id = _calendar(
        app, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
    )
    client = app.test_client()
    csrf_token = client.get("/settings").get_data(as_text=True)

    gone = client.post(f"/integrations/{integration_id}/oauth/revoke", data={"csrf_token": csrf_token})

    assert gone.status_code == 303
    assert oauth_server.revoked == [tokens["refresh_token"]]
    assert set(_credentials(app, integration_id)) == {"client_id", "client_secret"}


def test_oauth2_events_are_read_page_by_page_each_with_the_bearer_token(app_factory, oauth_server, upstream):
    app = _calendar_app(app_factory, oauth_server, upstream.url)
    tokens = oauth_server.tokens()
    integration_id = _calendar(
        app, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
    )
    upstream.script(
        "/events",
        [
            (200, {"items": [{"id": "e1"}, {"id": "e2"}], "next_page_token": "p2"}),
            (200, {"items": [{"id": "e3"}]}),
        ],
    )
    with app.app_context():
        events = oauth2.upcoming_events(app.extensions["integrations"].get(integration_id), days=3)
        db.session.remove()
    assert [event["id"] for event in events] == ["e1", "e2", "e3"]
    assert [r["query"] for r in upstream.requests] == [{"days": "3"}, {"days": "3", "page_token": "p2"}]
    assert {r["headers"]["authorization"] for r in upstream.requests} == {f"Bearer {tokens['access_token']}"}


# -- an SDK's client, as callables ----------------------------------------------------------------

MAILER_KEY = "ml_live_0c7e19a44b"


@pytest.fixture
def mailer(app_factory, upstream) -> Iterator[Any]:
    local = type("Mailer", (sdk_callable.Mailer,), {"base_url": f"{upstream.url}/v3"})
    app = app_factory(INTEGRATIONS_PROVIDERS={"mailer": local}, INTEGRATIONS_RETRY_AFTER_MAX=0.01)
    with app.app_context():
        yield app.extensions["integrations"].create("mailer", "Mailer", {"api_key": MAILER_KEY})
        db.session.remove()


def _request_rows() -> list[tuple[str, int | None, str | None]]:
    db.session.expire_all()
    query = sa.select(
        fi.IntegrationRequest.endpoint,
        fi.IntegrationRequest.status_code,
        fi.IntegrationRequest.provider_request_id,
    )
    return [tuple(row) for row in db.session.execute(query.order_by(fi.IntegrationRequest.id))]


def test_sdk_calls_are_logged_under_their_label_and_the_sdk_holds_the_key(mailer, upstream):
    upstream.script("/v3/account", [(200, {"plan": "pro"}), (401, {"error": "bad key"})])
    provider = mailer.provider_instance

    assert provider.health_check(mailer) is True
    assert provider.health_check(mailer) is False

    sent = upstream.requests[0]
    assert (sent["method"], sent["path"]) == ("GET", "/v3/account")
    assert sent["headers"]["authorization"] == f"Bearer {MAILER_KEY}"
    assert sent["headers"]["user-agent"] == "mailer-python/2.1"
    assert [(endpoint, status) for endpoint, status, _ in _request_rows()] == [
        ("account.get", None),
        ("account.get", 401),
    ]
    assert not [text for _, text in dump_tables() if MAILER_KEY in text]


def test_sdk_send_is_retried_with_one_idempotency_key_and_made_once_per_key(mailer, upstream):
    upstream.script(
        "/v3/messages", [(503, {"error": "busy"}), (200, {"id": "msg_1"}, {"X-Request-Id": "req-77"})]
    )

    message_id = sdk_callable.send_message(mailer, "ada@example.com", "Hello", "Hi Ada", key="welcome-ada")

    assert message_id == "msg_1"
    posts = [r for r in upstream.requests if r["path"] == "/v3/messages"]
    assert [r["headers"]["idempotency-key"] for r in posts] == ["welcome-ada", "welcome-ada"]
    assert json.loads(posts[0]["body"]) == {"to": "ada@example.com", "subject": "Hello", "text": "Hi Ada"}
    assert _request_rows() == [("messages.send", 503, None), ("messages.send", None, "req-77")]
    with pytest.raises(fi.IdempotencyConflict):
        sdk_callable.send_message(mailer, "ada@example.com", "Hello", "Hi Ada", key="welcome-ada")
    assert len(upstream.requests) == 2  # the second call sent nothing


def test_sdk_errors_are_judged_by_their_status_a_4xx_is_not_retried(mailer, upstream):
    upstream.script("/v3/messages", [(422, {"error": "bad address"}), (200, {"id": "msg_2"})])

    with pytest.raises(sdk_callable.MailerError) as raised:
        sdk_callable.send_message(mailer, "not-an-address", "Hello", "Hi", key="k-1")

    assert raised.value.http_status == 422 and len(upstream.requests) == 1
    # The upstream provably did not act on a 422: the key is free for a corrected call.
    assert sdk_callable.send_message(mailer, "ada@example.com", "Hello", "Hi", key="k-1") == "msg_2"
