"""The provider kit (SPEC 13), each declaration through the real pipeline against a loopback API:
auth on the wire and never in a row, templated base_url, every pagination style, the webhook
verifiers on the real route, handler methods, health_check_endpoint, and the testing helpers."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import sqlalchemy as sa

import flask_integrations as fi
from flask_integrations import auth, pagination, webhooks
from flask_integrations.db.models import IntegrationRequest
from flask_integrations.errors import ConfigurationError, IntegrationsError
from flask_integrations.health.checks import check_and_record
from flask_integrations.providers import check_provider_class
from flask_integrations.state import current_state
from flask_integrations.testing import ResponseSequence, run_queued_jobs, send_webhook
from flask_integrations.webhooks import verifiers
from tests.helpers.app import db
from tests.helpers.secrets import dump_tables, spellings
from tests.helpers.servers import free_port

API_KEY = "tk-live-7f3a9c1e55d0"
SIGNING_KEY = "whk-5be0c2a9d17f"
HANDLED: list[Any] = []


@dataclasses.dataclass
class TasksCredentials:
    api_key: str
    webhook_secret: str
    workspace: str


@dataclasses.dataclass
class LocalPort:
    port: int


class Tasks(fi.Provider, fi.IncrementalSync, fi.HandlesWebhooks, fi.HasHealthCheck):
    """The provider of SPEC 13, pointed at the loopback API (its port comes from metadata)."""

    credential_class = TasksCredentials
    metadata_class = LocalPort
    base_url = "http://127.0.0.1:{port}/{workspace}/v1"
    auth = auth.Bearer("api_key")
    health_check_endpoint = "/me"
    webhook_verifier = webhooks.Hmac("X-Tasks-Signature", secret="webhook_secret", prefix="sha256=")
    webhook_event_key = "type"
    webhook_delivery_key = "id"

    def sync_incremental(self, integration, session):
        tasks = integration.at("tasks.list").with_data({"updated_since": session.cursor})
        for task in tasks.paginate("/tasks", items="tasks", pages=pagination.Cursor("next", param="after")):
            session.dispatch("task", task, checkpoint=task["updated_at"], external_id=task["id"])

    @fi.on_sync_item("task")
    def store(self, integration, task):
        if task.get("fail_once") and ("failed", task["id"]) not in HANDLED:
            HANDLED.append(("failed", task["id"]))
            raise RuntimeError("the app's table is locked")
        HANDLED.append(("stored", task["id"]))

    @fi.on_webhook("task.created", "task.updated")
    def changed(self, integration, webhook):
        self.store(integration, webhook.json()["data"])


@dataclasses.dataclass
class KeyCredentials:
    key: str
    user: str = "acme"


def _keyed(scheme: auth.AuthScheme) -> type:
    return type(
        "Keyed",
        (fi.Provider,),
        {
            "credential_class": KeyCredentials,
            "metadata_class": LocalPort,
            "auth": scheme,
            "base_url": "http://127.0.0.1:{port}",
        },
    )


SCHEMES = {
    "bearer": auth.Bearer("key"),
    "header": auth.Header("X-Api-Key", "key"),
    "template": auth.Header("Authorization", "key", template="Token {}"),
    "basic": auth.Basic("user", "key"),
    "query": auth.Query("api_key", "key"),
}


@pytest.fixture
def kit_app(app_factory):
    HANDLED.clear()
    providers = {"tasks": Tasks, **{f"keyed-{name}": _keyed(s) for name, s in SCHEMES.items()}}
    return app_factory(INTEGRATIONS_PROVIDERS=providers, INTEGRATIONS_RETRY_AFTER_MAX=0.01)


@pytest.fixture
def kit(kit_app, upstream):
    with kit_app.app_context():
        yield kit_app.extensions["integrations"]
        db.session.remove()


def _tasks(kit, upstream, workspace="acme") -> Any:
    return kit.create(
        "tasks",
        "Tasks",
        {"api_key": API_KEY, "webhook_secret": SIGNING_KEY, "workspace": workspace},
        metadata={"port": upstream.server_address[1]},
    )


def _pages(upstream, path: str, *bodies: Any, headers: list[dict] | None = None) -> None:
    headers = headers or [{}] * len(bodies)
    upstream.script(path, [(200, body, h) for body, h in zip(bodies, headers, strict=True)])


# -- auth and base_url ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_auth_goes_on_the_wire_and_never_into_a_row(kit, upstream, name, caplog):
    integration = kit.create(
        f"keyed-{name}", "Keyed", {"key": API_KEY}, metadata={"port": upstream.server_address[1]}
    )
    caplog.set_level("DEBUG")
    answer = integration.at("echo").get("/json")
    sent = upstream.requests[-1]
    expected = {
        "bearer": ("authorization", f"Bearer {API_KEY}"),
        "header": ("x-api-key", API_KEY),
        "template": ("authorization", f"Token {API_KEY}"),
        "basic": ("authorization", "Basic " + base64.b64encode(f"acme:{API_KEY}".encode()).decode()),
    }
    if name == "query":
        assert sent["query"] == {"api_key": API_KEY}
    else:
        header, value = expected[name]
        assert sent["headers"][header] == value
    assert answer["path"] == "/json"
    secret_forms = spellings(API_KEY) | spellings(base64.b64encode(f"acme:{API_KEY}".encode()).decode())
    texts = [text for _, text in dump_tables()] + [caplog.text]
    assert not [form for form in secret_forms for text in texts if form in text]


def test_auth_leaves_a_header_the_caller_set_and_names_a_missing_credential(kit, upstream):
    integration = kit.create(
        "keyed-bearer", "Keyed", {"key": API_KEY}, metadata={"port": upstream.server_address[1]}
    )
    integration.at("echo").with_headers({"Authorization": "Bearer other"}).get("/json")
    assert upstream.requests[-1]["headers"]["authorization"] == "Bearer other"
    integration.update(credentials={"key": ""})
    with pytest.raises(IntegrationsError, match=r"no credential 'key'.*Bearer"):
        integration.at("echo").get("/json")


def test_base_url_is_filled_from_credentials_then_metadata_url_quoted(kit, upstream):
    integration = _tasks(kit, upstream, workspace="acme/../admin?x=1")
    answer = integration.at("me").get("/me")
    assert answer["path"] == "/acme%2F..%2Fadmin%3Fx%3D1/v1/me"
    assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {API_KEY}"


def test_a_missing_placeholder_value_is_named(kit, upstream):
    integration = _tasks(kit, upstream, workspace="")
    with pytest.raises(IntegrationsError, match=r"no 'workspace' for the provider's base_url"):
        integration.at("me").get("/me")
    assert upstream.requests == []


# -- registration --------------------------------------------------------------------------------


def _provider(**attrs: Any) -> type:
    bases = attrs.pop("bases", (fi.Provider,))
    return type("Made", bases, {"credential_class": TasksCredentials, **attrs})


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"base_url": "https://{tenant}.tasks.example/v1"}, r"base_url names \{tenant\}, which is no field"),
        ({"auth": auth.Bearer("token")}, r"auth reads credential 'token', which is no field"),
        ({"auth": "Bearer"}, r"auth must be a scheme of flask_integrations.auth"),
        (
            {
                "bases": (fi.Provider, fi.HandlesWebhooks),
                "webhook_verifier": webhooks.Hmac("X-S", secret="nope"),
            },
            r"webhook_verifier reads credential 'nope'",
        ),
        (
            {"bases": (fi.Provider, fi.HandlesWebhooks)},
            r"declares HandlesWebhooks but does not define verify_webhook\(\) "
            r"\(or declare webhook_verifier\)",
        ),
        (
            {"bases": (fi.Provider, fi.HasHealthCheck)},
            r"does not define health_check\(\) \(or declare health_check_endpoint\)",
        ),
        (
            {
                "bases": (fi.Provider, fi.ScheduledSync),
                "sync": lambda self, integration, session: None,
                "one": fi.on_sync_item("task")(lambda self, i, p: None),
                "two": fi.on_sync_item("task")(lambda self, i, p: None),
            },
            r"Made.one\(\) and Made.two\(\) both handle sync item event 'task'",
        ),
    ],
)
def test_registration_refuses_a_declaration_that_cannot_work(attrs, message):
    with pytest.raises(ConfigurationError, match=message):
        check_provider_class("made", _provider(**attrs))


def test_the_verifiers_refuse_bad_settings():
    with pytest.raises(ConfigurationError, match="encoding='hex64'"):
        webhooks.Hmac("X-S", secret="s", encoding="hex64")
    with pytest.raises(ConfigurationError, match="algorithm='sha999'"):
        webhooks.Hmac("X-S", secret="s", algorithm="sha999")
    with pytest.raises(ConfigurationError, match="no timestamp_header"):
        webhooks.Hmac("X-S", secret="s", signed="{timestamp}.{body}")
    with pytest.raises(ConfigurationError, match="one or more event names"):
        fi.on_webhook()


# -- pagination ----------------------------------------------------------------------------------


def _listing(kit, upstream, pages: pagination.Pagination, items: str | None = "items", **kw: Any) -> list:
    integration = _tasks(kit, upstream)
    return list(integration.at("items.list").paginate("/items", items=items, pages=pages, **kw))


def _request_rows() -> list[tuple[str, int]]:
    db.session.expire_all()
    query = sa.select(IntegrationRequest.endpoint, IntegrationRequest.status_code).order_by(
        IntegrationRequest.id
    )
    return [tuple(row) for row in db.session.execute(query)]


def _queries(upstream) -> list[dict]:
    return [r["query"] for r in upstream.requests if r["path"].endswith("/items")]


def test_cursor_pages_until_the_cursor_is_empty(kit, upstream):
    _pages(
        upstream,
        "/acme/v1/items",
        {"items": [1, 2], "meta": {"next": "c2"}},
        {"items": [3], "meta": {"next": "c3"}},
        {"items": [], "meta": {"next": None}},
    )
    found = _listing(kit, upstream, pagination.Cursor("meta.next", param="after"))
    assert found == [1, 2, 3]
    assert _queries(upstream) == [{}, {"after": "c2"}, {"after": "c3"}]


def test_cursor_stops_at_max_pages_and_on_a_cursor_that_does_not_move(kit, upstream):
    _pages(upstream, "/acme/v1/items", *[{"items": [n], "meta": {"next": f"c{n}"}} for n in range(5)])
    assert _listing(kit, upstream, pagination.Cursor("meta.next", "after"), max_pages=2) == [0, 1]
    upstream.reset()
    _pages(
        upstream,
        "/acme/v1/items",
        {"items": [1], "meta": {"next": "same"}},
        {"items": [2], "meta": {"next": "same"}},
    )
    assert _listing(kit, upstream, pagination.Cursor("meta.next", "after")) == [1, 2]


def test_page_numbers_stop_on_an_empty_or_short_page(kit, upstream):
    _pages(upstream, "/acme/v1/items", {"items": [1, 2]}, {"items": [3, 4]}, {"items": []})
    assert _listing(kit, upstream, pagination.PageNumber()) == [1, 2, 3, 4]
    assert _queries(upstream) == [{"page": "1"}, {"page": "2"}, {"page": "3"}]
    upstream.reset()
    _pages(upstream, "/acme/v1/items", {"items": [1, 2]}, {"items": [3]})
    assert _listing(kit, upstream, pagination.PageNumber("p", start=0)) == [1, 2, 3]
    assert _queries(upstream) == [{"p": "0"}, {"p": "1"}]


def test_offsets_stop_on_a_short_page_and_on_an_empty_last_page(kit, upstream):
    _pages(upstream, "/acme/v1/items", [1, 2], [3, 4], [])
    assert _listing(kit, upstream, pagination.Offset(limit=2), items=None) == [1, 2, 3, 4]
    assert _queries(upstream) == [
        {"offset": "0", "limit": "2"},
        {"offset": "2", "limit": "2"},
        {"offset": "4", "limit": "2"},
    ]
    upstream.reset()
    _pages(upstream, "/acme/v1/items", [1, 2], [3], [9])
    assert _listing(kit, upstream, pagination.Offset("skip", "take", limit=2), items=None, max_pages=5) == [
        1,
        2,
        3,
    ]


def test_link_header_follows_rel_next(kit, upstream):
    base = f"{upstream.url}/acme/v1/items"
    _pages(
        upstream,
        "/acme/v1/items",
        {"items": [1]},
        {"items": [2]},
        {"items": []},
        headers=[
            {"Link": f'<{base}?page=2>; rel="next"'},
            {"Link": f'<{base}?page=3>; rel="next", <{base}>; rel="first"'},
            {},
        ],
    )
    assert _listing(kit, upstream, pagination.LinkHeader()) == [1, 2]
    assert _queries(upstream) == [{}, {"page": "2"}, {"page": "3"}]


def test_each_page_is_one_logged_call_with_the_builders_settings(kit, upstream):
    upstream.script(
        "/acme/v1/items", [(200, {"items": [1], "meta": {"next": "c2"}}), (503, {}), (200, {"items": [2]})]
    )
    integration = _tasks(kit, upstream)
    listing = integration.at("items.list").with_data({"since": "2026"}).with_attempts(2)
    found = list(listing.paginate("/items", items="items", pages=pagination.Cursor("meta.next", "after")))
    assert found == [1, 2]
    assert _queries(upstream) == [
        {"since": "2026"},
        {"since": "2026", "after": "c2"},
        {"since": "2026", "after": "c2"},
    ]
    assert _request_rows() == [("items.list", 200), ("items.list", 503), ("items.list", 200)]


def test_a_body_that_is_not_a_list_is_named(kit, upstream):
    _pages(upstream, "/acme/v1/items", {"items": {"not": "a list"}})
    with pytest.raises(ValueError, match=r"'items' in the body of page 1 of 'items.list' is not a list"):
        _listing(kit, upstream, pagination.PageNumber())


# -- health check --------------------------------------------------------------------------------


def test_health_check_endpoint_goes_through_the_pipeline_once(kit, upstream):
    integration = _tasks(kit, upstream)
    upstream.script("/acme/v1/me", [(200, {"id": 1}), (500, {}), (500, {})])
    provider = integration.provider_instance
    assert provider.health_check(integration) is True
    assert provider.health_check(integration) is False
    assert upstream.hits("/acme/v1/me") == 2  # one attempt each, no cache
    assert _request_rows() == [("/me", 200), ("/me", 500)]


@pytest.mark.parametrize("status", [500, 401])
def test_a_failed_endpoint_check_counts_once_where_it_is_recorded(kit, upstream, status):
    integration = _tasks(kit, upstream)
    upstream.script("/acme/v1/me", [(status, {})] * 2)
    passed, detail = check_and_record(current_state(), integration.provider_instance, integration)
    assert (passed, detail) == (False, "health check returned False")
    db.session.expire_all()
    assert db.session.get(fi.Integration, integration.id).consecutive_failures == 1
    integration.provider_instance.health_check(integration)  # run by the app itself: not counted
    db.session.expire_all()
    assert db.session.get(fi.Integration, integration.id).consecutive_failures == 1


def test_an_endpoint_check_that_gets_no_answer_raises_for_the_caller_to_show(kit, upstream):
    integration = _tasks(kit, upstream)
    integration.update(metadata={"port": free_port()})
    passed, detail = check_and_record(current_state(), integration.provider_instance, integration)
    assert not passed and detail.startswith("ConnectError")


# -- webhooks ------------------------------------------------------------------------------------


def _hmac(message: bytes, encoding: str = "hex") -> str:
    digest = hmac.new(SIGNING_KEY.encode(), message, hashlib.sha256).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def _verifier_app(app_factory, verifier: verifiers.Verifier, **attrs: Any):
    received: list[Any] = []

    class Hooks(fi.Provider, fi.HandlesWebhooks):
        credential_class = TasksCredentials
        webhook_verifier = verifier
        webhook_event_key = attrs.get("event_key", "type")
        webhook_delivery_key = attrs.get("delivery_key")

        @fi.on_webhook("task.created")
        def created(self, integration, webhook):
            received.append((integration.id, webhook.json()["data"]))

    app = app_factory(INTEGRATIONS_PROVIDERS={"hooks": Hooks})
    with app.app_context():
        integration = app.extensions["integrations"].create(
            "hooks", "Hooks", {"api_key": API_KEY, "webhook_secret": SIGNING_KEY, "workspace": "w"}
        )
        integration_id = integration.id
    return app, integration_id, received


BODY = json.dumps({"id": "evt_1", "type": "task.created", "data": {"id": 7}}).encode()


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_hmac_of_the_body_in_hex_or_base64(app_factory, encoding):
    verifier = webhooks.Hmac("X-Sig", secret="webhook_secret", encoding=encoding, prefix="sha256=")
    app, integration_id, received = _verifier_app(app_factory, verifier)
    client = app.test_client()
    good = {"X-Sig": "sha256=" + _hmac(BODY, encoding)}
    assert send_webhook(client, "hooks", BODY, integration=integration_id, headers=good).status_code == 202
    assert received == [(integration_id, {"id": 7})]
    for bad in ({"X-Sig": _hmac(BODY, encoding)}, {"X-Sig": "sha256=" + _hmac(BODY + b" ", encoding)}, {}):
        assert send_webhook(client, "hooks", BODY, integration=integration_id, headers=bad).status_code == 401
    assert send_webhook(client, "hooks", BODY, headers=good).status_code == 401  # no integration: no secret


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_hmac_with_a_timestamp_refuses_an_old_or_future_one(app_factory, monkeypatch, encoding):
    verifier = webhooks.Hmac("X-Sig", secret="webhook_secret", encoding=encoding, timestamp_header="X-Time")
    app, integration_id, received = _verifier_app(app_factory, verifier)
    client = app.test_client()
    now = int(time.time())
    monkeypatch.setattr(verifiers, "clock", lambda: now)

    def headers(at: int) -> dict[str, str]:
        return {"X-Time": str(at), "X-Sig": _hmac(f"{at}.".encode() + BODY, encoding)}

    assert (
        send_webhook(
            client, "hooks", BODY, integration=integration_id, headers=headers(now - 299)
        ).status_code
        == 202
    )
    for at in (now - 301, now + 301):
        assert (
            send_webhook(client, "hooks", BODY, integration=integration_id, headers=headers(at)).status_code
            == 401
        )
    wrong_time = {**headers(now), "X-Time": str(now - 1)}  # the signature covers the timestamp
    assert (
        send_webhook(client, "hooks", BODY, integration=integration_id, headers=wrong_time).status_code == 401
    )
    assert (
        send_webhook(
            client, "hooks", BODY, integration=integration_id, headers={**headers(now), "X-Time": "١٢"}
        ).status_code
        == 401
    )
    assert len(received) == 1


def test_standard_webhooks_signs_its_id_and_refuses_a_replay_later(app_factory, monkeypatch):
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    verifier = webhooks.StandardWebhooks(secret="webhook_secret")
    app, integration_id, received = _verifier_app(app_factory, verifier, delivery_key=None)
    with app.app_context():
        app.extensions["integrations"].get(integration_id).update(credentials={"webhook_secret": secret})
    client = app.test_client()
    now = int(time.time())
    monkeypatch.setattr(verifiers, "clock", lambda: now)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signature = base64.b64encode(
        hmac.new(key, f"msg_1.{now}.".encode() + BODY, hashlib.sha256).digest()
    ).decode()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": f"v1,other v1,{signature}",
    }
    assert send_webhook(client, "hooks", BODY, integration=integration_id, headers=headers).status_code == 202
    assert (
        send_webhook(client, "hooks", BODY, integration=integration_id, headers=headers).json["status"]
        == "duplicate"
    )
    replayed = {**headers, "webhook-id": "msg_2"}  # a new id under the old signature
    assert (
        send_webhook(client, "hooks", BODY, integration=integration_id, headers=replayed).status_code == 401
    )
    monkeypatch.setattr(verifiers, "clock", lambda: now + 301)
    assert send_webhook(client, "hooks", BODY, integration=integration_id, headers=headers).status_code == 401
    assert len(received) == 1


def test_signatures_are_compared_in_constant_time(app_factory, monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest
    monkeypatch.setattr(verifiers.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    app, integration_id, _ = _verifier_app(app_factory, webhooks.Hmac("X-Sig", secret="webhook_secret"))
    send_webhook(app.test_client(), "hooks", BODY, integration=integration_id, headers={"X-Sig": "00"})
    assert compared and compared[-1][1] == b"00"


def test_event_and_delivery_keys_read_dotted_paths_and_headers(app_factory):
    verifier = webhooks.Hmac("X-Sig", secret="webhook_secret")
    app, integration_id, received = _verifier_app(
        app_factory, verifier, event_key="header:X-Event", delivery_key="meta.delivery"
    )
    client = app.test_client()
    body = json.dumps({"meta": {"delivery": 42}, "data": {"id": 1}}).encode()
    headers = {"X-Event": "task.created"}
    assert (
        send_webhook(
            client, "hooks", body, integration=integration_id, headers=headers, sign=True
        ).status_code
        == 202
    )
    again = send_webhook(client, "hooks", body, integration=integration_id, headers=headers, sign=True)
    assert again.json["status"] == "duplicate"
    with app.app_context():
        row = (
            db.session.execute(sa.select(fi.IntegrationWebhook).order_by(fi.IntegrationWebhook.id))
            .scalars()
            .first()
        )
        assert (row.event_type, row.delivery_id) == ("task.created", "42")
    assert received == [(integration_id, {"id": 1})]


def test_send_webhook_sign_names_what_is_missing(app_factory):
    app, integration_id, _ = _verifier_app(app_factory, webhooks.Hmac("X-Sig", secret="webhook_secret"))
    with pytest.raises(ConfigurationError, match="needs the integration whose secret signs"):
        send_webhook(app.test_client(), "hooks", BODY, sign=True)
    plain = app_factory()
    with pytest.raises(ConfigurationError, match="provider 'tickets' declares no webhook_verifier"):
        send_webhook(plain.test_client(), "tickets", BODY, integration=1, sign=True)


# -- the Tasks provider of SPEC 13, whole ---------------------------------------------------------


def test_the_tasks_provider_syncs_pages_into_its_handler_and_takes_signed_webhooks(kit_app, upstream):
    with kit_app.app_context():
        integration = _tasks(kit_app.extensions["integrations"], upstream)
        integration_id = integration.id
        upstream.script(
            "/acme/v1/tasks",
            [
                (200, {"tasks": [{"id": "t1", "updated_at": "2026-12-01"}], "next": "p2"}),
                (200, {"tasks": [{"id": "t2", "updated_at": "2026-12-02"}], "next": None}),
            ],
        )
        run = integration.sync_now()
        db.session.expire_all()
        assert db.session.get(fi.IntegrationLog, run.id).status == "success"
        assert HANDLED == [("stored", "t1"), ("stored", "t2")]
        assert [r["query"] for r in upstream.requests] == [{}, {"after": "p2"}]
        assert all(r["headers"]["authorization"] == f"Bearer {API_KEY}" for r in upstream.requests)
        assert db.session.get(fi.Integration, integration_id).sync_cursor == "2026-12-02"
    payload = {"id": "evt_9", "type": "task.updated", "data": {"id": "t3"}}
    client = kit_app.test_client()
    assert send_webhook(client, "tasks", payload, integration=integration_id, sign=True).status_code == 202
    assert (
        send_webhook(client, "tasks", payload, integration=integration_id, sign=True).json["status"]
        == "duplicate"
    )
    assert send_webhook(client, "tasks", payload, integration=integration_id).status_code == 401
    assert HANDLED[-1] == ("stored", "t3") and len(HANDLED) == 3


def test_a_provider_item_handler_comes_before_the_apps(kit_app, upstream):
    ext = kit_app.extensions["integrations"]
    app_handled: list[Any] = []
    ext.sync_handler("task")(lambda integration, payload: app_handled.append(payload))
    ext.sync_handler("comment")(lambda integration, payload: app_handled.append(payload))

    class Other(Tasks):
        def sync_incremental(self, integration, session):
            session.dispatch("task", {"id": "t1", "updated_at": "x"})
            session.dispatch("comment", {"id": "c1"})

    ext.register("other", Other)
    with kit_app.app_context():
        integration = ext.create(
            "other",
            "Other",
            {"api_key": API_KEY, "webhook_secret": SIGNING_KEY, "workspace": "w"},
            metadata={"port": 1},
        )
        integration.sync_now()
    assert HANDLED == [("stored", "t1")]
    assert app_handled == [{"id": "c1"}]


def test_run_queued_jobs_runs_a_delayed_item_retry_at_once(kit_app, upstream):
    with kit_app.app_context():
        integration = _tasks(kit_app.extensions["integrations"], upstream)
        upstream.script(
            "/acme/v1/tasks", [(200, {"tasks": [{"id": "t1", "updated_at": "u", "fail_once": True}]})]
        )
        run = integration.sync_now()
        assert HANDLED == [("failed", "t1")]
        db.session.expire_all()
        assert db.session.get(fi.IntegrationLog, run.id).status == "processing"
        assert run_queued_jobs() == 0  # the retry is delayed
        assert run_queued_jobs(include_delayed=True) == 1
        db.session.expire_all()
        assert HANDLED == [("failed", "t1"), ("stored", "t1")]
        assert db.session.get(fi.IntegrationLog, run.id).status == "success"


def test_run_queued_jobs_runs_webhook_retries_until_out_of_tries(app_factory):
    calls: list[int] = []

    class Flaky(fi.Provider, fi.HandlesWebhooks):
        credential_class = TasksCredentials
        webhook_verifier = webhooks.Hmac("X-Sig", secret="webhook_secret")
        webhook_event_key = "type"

        @fi.on_webhook("task.created")
        def created(self, integration, webhook):
            calls.append(webhook.id)
            raise RuntimeError("the app is down")

    app = app_factory(INTEGRATIONS_PROVIDERS={"flaky": Flaky})
    with app.app_context():
        integration = app.extensions["integrations"].create(
            "flaky", "Flaky", {"api_key": "k", "webhook_secret": SIGNING_KEY, "workspace": "w"}
        )
        send_webhook(app.test_client(), "flaky", BODY, integration=integration, sign=True)
        assert len(calls) == 1
        run_queued_jobs(include_delayed=True)
        assert len(calls) == 3  # INTEGRATIONS_WEBHOOK["max_attempts"]
        db.session.expire_all()
        assert db.session.execute(sa.select(fi.IntegrationWebhook.status)).scalar_one() == "failed"


# -- fakes ---------------------------------------------------------------------------------------


def test_fakes_record_the_headers_auth_and_prepare_request_put_on_the_wire(kit_app):
    class Signed(_keyed(auth.Header("X-Api-Key", "key"))):
        def prepare_request(self, integration, request):
            request.headers["X-Account"] = integration.credentials_dict()["user"]

    ext = kit_app.extensions["integrations"]
    ext.register("signed", Signed)
    with kit_app.app_context():
        tasks = ext.create(
            "tasks", "T", {"api_key": API_KEY, "webhook_secret": "s", "workspace": "w"}, metadata={"port": 1}
        )
        signed = ext.create("signed", "S", {"key": API_KEY}, metadata={"port": 1})
        with ext.fake(
            {"tasks.list": {"tasks": []}, "me": {"ok": True}, "*": fi.ResponseSequence([1], [])}
        ) as fake:
            tasks.at("tasks.list").get("/tasks")
            signed.at("me").get()
            assert list(signed.at("pages").paginate(pages=pagination.PageNumber(), items=None)) == [1]
        assert fake.calls[0].headers["Authorization"] == f"Bearer {API_KEY}"
        assert fake.calls[1].headers["x-api-key"] == API_KEY
        assert fake.calls[1].headers["X-Account"] == "acme"
        fake.assert_requested_with("pages", lambda call: call.data == {"page": 2})


def test_fakes_retry_what_the_pipeline_would_retry_without_waiting(kit_app):
    ext = kit_app.extensions["integrations"]
    with kit_app.app_context():
        tasks = ext.create(
            "tasks", "T", {"api_key": API_KEY, "webhook_secret": "s", "workspace": "w"}, metadata={"port": 1}
        )
        answers = {
            "GET:flaky": ResponseSequence(
                fi.testing.Fake.response(503, headers={"Retry-After": "3600"}), {"ok": 1}
            ),
            "POST:flaky": fi.testing.Fake.response(503),
            "GET:missing": fi.testing.Fake.response(404),
        }
        with ext.fake(answers) as fake:
            started = time.monotonic()
            assert tasks.at("flaky").get() == {"ok": 1}
            assert time.monotonic() - started < 1
            with pytest.raises(fi.IntegrationHTTPError):
                tasks.at("flaky").post()
            with pytest.raises(fi.IntegrationHTTPError):
                tasks.at("missing").get()
        assert [(c.method, c.endpoint, c.attempt) for c in fake.calls] == [
            ("GET", "flaky", 1),
            ("GET", "flaky", 2),
            ("POST", "flaky", 1),
            ("GET", "missing", 1),
        ]


def test_validation_error_reads_well_however_it_is_built():
    error = fi.ValidationError("credentials for provider 'tasks'", {"api_key": "must start with tk_"})
    assert str(error) == "Invalid credentials for provider 'tasks': api_key: must start with tk_"
    assert error.errors == {"api_key": "must start with tk_"}
    assert str(fi.ValidationError("Invalid credentials: the key was revoked")) == (
        "Invalid credentials: the key was revoked."
    )
    assert fi.ValidationError("metadata").errors == {}
