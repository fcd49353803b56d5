"""Secrets (SPEC 2): no planted secret is ever stored in clear, printed, rendered or logged.

Known marker values are planted in an integration's credentials (OAuth tokens
included), in request data under redact keys and provider paths, in response
data, in webhook headers (Authorization, a token header), and in exception
messages of provider code that quote the credentials. Then every path runs:
outbound calls (success, 4xx, 5xx with retries, an exception, an idempotency
conflict, a form body), webhooks (receipt, a failing handler, an unverified
delivery), a sync whose items fail quoting the secret, operation logs, the
OAuth flow against a loopback server (authorize, callback, refresh, a failed
refresh, a bearer call, revoke), every dashboard page, the CLI (list, health,
stats, test, list-failed-items, replay-webhook, install --credential), logging
at DEBUG (root and SQL), `repr()` of every model object and of the extension
and its state, and the package's exception texts. Finally every column of every
integration table is dumped as text and everything collected is grepped for the
markers, in their plain, URL-encoded and JSON-escaped spellings.

Not covered on purpose: an exception raised by the caller's own callable is
re-raised to the caller unchanged (it is the caller's object); its stored copy
(the request row's `error`) is scrubbed and checked here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlparse

import httpx
import pytest
import sqlalchemy as sa

from flask_integrations import (
    HandlesWebhooks,
    HasHealthCheck,
    IncrementalSync,
    Integration,
    IntegrationsError,
    Provider,
    RedactsRequestData,
)
from flask_integrations.state import current_state
from flask_integrations.testing import run_queued_jobs
from tests.helpers.app import Loose, db
from tests.helpers.oauth import CLIENT_SECRET, AuthServer, Connect, create_connect
from tests.helpers.secrets import Collected, dump_tables, leaks
from tests.helpers.upstream import UpstreamServer

MARK = uuid.uuid4().hex[:10]
#: credential values
API_KEY = f"sk-live-APIKEY-{MARK}"
SIGNING = f"whsec-SIGNING-{MARK}"
PASSWORD = f"pw/+=&PASSWORD {MARK}"  # URL-special characters: its encoded spellings are grepped too
LOOSE_TOKEN = f"loose-TOKEN-{MARK}"
#: values under redact keys or provider paths (not credentials)
REQ_PASSWORD = f"REQPASS-{MARK}"
REQ_TOKEN = f"REQTOKEN-{MARK}"
CARD = f"4242CARD{MARK}"
SSN = f"SSN-{MARK}"
RESP_TOKEN = f"RESPTOKEN-{MARK}"
PIN = f"PIN-{MARK}"
FORM_SECRET = f"FORMSECRET-{MARK}"
#: webhook headers
HOOK_AUTH = f"HOOKAUTH-{MARK}"
HOOK_TOKEN = f"HOOKTOKEN-{MARK}"

PLANTED = {
    "api_key": API_KEY,
    "signing_secret": SIGNING,
    "password": PASSWORD,
    "loose_token": LOOSE_TOKEN,
    "request.password": REQ_PASSWORD,
    "request.token": REQ_TOKEN,
    "request.card.number": CARD,
    "request.items.*.ssn": SSN,
    "response.access_token": RESP_TOKEN,
    "response.account.pin": PIN,
    "form.client_secret": FORM_SECRET,
    "webhook.authorization": HOOK_AUTH,
    "webhook.x-webhook-token": HOOK_TOKEN,
    "oauth.client_secret": CLIENT_SECRET,
}
PREFIX = "/integrations"


@dataclasses.dataclass
class VaultCredentials:
    api_key: str
    signing_secret: str
    password: str
    account: str = "acme"


def failing_item(integration: Any, payload: dict) -> None:
    raise ValueError(f"item {payload['n']} rejected: password {integration.credentials.password} refused")


def failing_hook(integration: Any, webhook: Any) -> None:
    credentials = integration.credentials
    raise RuntimeError(f"handler got 401 for key {credentials.api_key} / {credentials.signing_secret}")


class Vault(Provider, HasHealthCheck, RedactsRequestData, HandlesWebhooks, IncrementalSync):
    """A provider that puts its credentials everywhere it can."""

    credential_class = VaultCredentials
    sensitive_request_fields = ["card.number", "items.*.ssn"]
    sensitive_response_fields = ["account.pin", "body"]  # the echo server answers with the request body
    sync_interval = 10

    def prepare_request(self, integration: Any, request: httpx.Request) -> None:
        credentials = integration.credentials
        request.headers["Authorization"] = f"Bearer {credentials.api_key}"
        request.headers["X-Password"] = credentials.password

    def health_check(self, integration: Any) -> bool:
        raise RuntimeError(f"upstream rejected key {integration.credentials.api_key}")

    def verify_webhook(self, integration: Any, request: Any) -> bool:
        return request.headers.get("X-Webhook-Token") == HOOK_TOKEN

    def webhook_event(self, request: Any) -> str | None:
        return request.headers.get("X-Event")

    def webhook_handlers(self) -> dict:
        return {"fail": failing_hook, "ok": lambda integration, webhook: None}

    def sync_incremental(self, integration: Any, session: Any) -> None:
        for n in range(1, 4):
            session.dispatch("vault.item", {"n": n}, checkpoint=n, external_id=f"v{n}")


PROVIDERS = {"vault": Vault, "connect": Connect, "loose": Loose}


@pytest.fixture(scope="module")
def figures(figures_dir):
    result: dict[str, Any] = {"planted": sorted(PLANTED), "runs": {}}
    yield result
    (figures_dir / "secrets.json").write_text(json.dumps(result, indent=2, sort_keys=True))


def test_no_planted_secret_is_stored_printed_rendered_or_logged(
    app_factory, upstream_server, auth_server, figures, caplog, database_url
):
    app = app_factory(
        INTEGRATIONS_PROVIDERS=PROVIDERS,
        INTEGRATIONS_RETRY_AFTER_MAX=0.01,
        INTEGRATIONS_BREAKER={"enabled": False},
        INTEGRATIONS_SYNC={"item_tries": 1},
        INTEGRATIONS_WEBHOOK={"retry_delay": 0, "max_attempts": 2},
        INTEGRATIONS_REDACT_KEYS=[
            "password",
            "secret",
            "token",
            "api_key",
            "authorization",
            "access_token",
            "refresh_token",
            "client_secret",
        ],
    )
    ext = app.extensions["integrations"]
    ext.sync_handler("vault.item")(failing_item)
    upstream_server.reset()
    auth_server.reset()
    seen = Collected()
    secrets = dict(PLANTED)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="flask_integrations")
    sql_logger = logging.getLogger("sqlalchemy.engine")
    sql_logger.setLevel(logging.INFO)
    client = app.test_client()
    try:
        with app.app_context():
            vault = ext.create(
                "vault", "Vault", {"api_key": API_KEY, "signing_secret": SIGNING, "password": PASSWORD}
            )
            loose = ext.create("loose", "Loose", {"token": LOOSE_TOKEN, "region": "eu"})
            vault_id, loose_id = vault.id, loose.id
            exercise_calls(vault, upstream_server, seen)
            exercise_logs(vault, seen)
            log = vault.sync_now()
            run_queued_jobs()
            seen.add("sync:run", repr(log))
            db.session.remove()
        exercise_webhooks(app, client, vault_id, seen)
        connect_id = exercise_oauth(app, client, auth_server, seen, secrets)
        exercise_dashboard(app, client, seen)
        exercise_cli(app, vault_id, seen)
        with app.app_context():
            exercise_reprs(app, seen)
            dumped = dump_tables()
            db.session.remove()
    finally:
        sql_logger.setLevel(logging.WARNING)
    for record in caplog.records:
        seen.add(f"log:{record.name}:{record.levelname}", record.getMessage())
        if record.exc_info:
            seen.add(f"log-traceback:{record.name}", logging.Formatter().formatException(record.exc_info))
    seen.add("log:caplog.text", caplog.text)
    stored = Collected()
    for where, text in dumped:
        stored.add(where, text)

    assert any("db:" in w and "integration_requests" in w for w, _ in stored.texts)
    assert "INSERT INTO" in caplog.text  # the SQL log was captured
    found = leaks(seen, secrets) + leaks(stored, secrets)
    dialect = database_url.split(":")[0].split("+")[0]
    figures["runs"][dialect] = {
        "secrets_planted": len(secrets),
        "paths_exercised": sorted(seen.paths),
        "distinct_sources": len({where for where, _ in seen.texts}),
        "texts_grepped": len(seen.texts) + len(stored.texts),
        "bytes_grepped_output": seen.bytes(),
        "bytes_grepped_stored": stored.bytes(),
        "stored_cells": len(stored.texts),
        "leaks": sorted({f"{name} in {where}" for where, name in found}),
        "integrations": [vault_id, loose_id, connect_id],
    }
    assert not found, sorted(set(found))


# -- the paths ----------------------------------------------------------------------------------


def exercise_calls(vault: Integration, upstream: UpstreamServer, seen: Collected) -> None:
    url = upstream.url
    request_data = {
        "password": REQ_PASSWORD,
        "Token": REQ_TOKEN,
        "card": {"number": CARD, "exp": "12/30"},
        "items": [{"ssn": SSN, "name": "a"}, {"ssn": SSN}],
        "note": f"signed with {API_KEY}",
    }
    # success: the echo answers with our headers (Authorization, X-Password) and body
    answer = vault.at("echo").with_data(request_data).post(f"{url}/json")
    seen.add("call:success-value-keys", sorted(answer))
    vault.at("echo-get").with_data({"password": REQ_PASSWORD, "q": "x"}).get(f"{url}/json")
    upstream.script(
        "/account",
        [(200, {"account": {"pin": PIN, "id": 1}, "access_token": RESP_TOKEN, "echo": f"key {API_KEY}"})],
    )
    vault.at("account").with_cache(60).get(f"{url}/account")
    vault.at("account").with_cache(60).get(f"{url}/account")  # a cache hit
    # an upstream answer holding JSON and form text in string values (keys redacted inside them too)
    nested = {"request": json.dumps({"password": REQ_PASSWORD, "items": [{"token": REQ_TOKEN}]})}
    nested["form"] = f"client_secret={quote_plus(FORM_SECRET)}&grant=x"
    upstream.script("/nested", [(200, nested)])
    vault.at("nested").get(f"{url}/nested")
    vault.at("form").with_form({"client_secret": FORM_SECRET, "grant": "x"}).post(f"{url}/json")
    # 4xx: the upstream quotes the key and the password back
    upstream.script("/bad", [(400, {"error": f"invalid key {API_KEY}", "password": REQ_PASSWORD})])
    with pytest.raises(IntegrationsError) as info:
        vault.at("bad").with_data(request_data).post(f"{url}/bad")
    seen.add("exception:4xx", f"{info.value!s} {info.value!r}")
    # 5xx with retries
    with pytest.raises(IntegrationsError) as info:
        vault.at("down").with_attempts(3).get(f"{url}/status/503")
    seen.add("exception:5xx", f"{info.value!s} {info.value!r}")

    # an SDK exception quoting the credentials, retried (RetryableError) then given up
    def sdk_call() -> Any:
        from flask_integrations import RetryableError

        raise RetryableError(f"SDK: key={API_KEY} password={PASSWORD}", max_attempts=2)

    with pytest.raises(IntegrationsError):
        vault.at("sdk").with_attempts(2).execute("POST", sdk_call)

    def broken_sdk() -> Any:
        raise RuntimeError(f"connection reset while sending {API_KEY}")

    with pytest.raises(RuntimeError):
        vault.at("sdk-broken").execute("POST", broken_sdk)
    # idempotency: a second call with the key is a conflict
    key = f"create-{MARK}"
    vault.at("create").with_idempotency_key(key).with_data(request_data).post(f"{url}/json")
    with pytest.raises(IntegrationsError) as info:
        vault.at("create").with_idempotency_key(key).with_data(request_data).post(f"{url}/json")
    seen.add("exception:idempotency", f"{info.value!s} {info.value!r}")
    # a dropped connection
    with pytest.raises(Exception) as info:
        vault.at("drop").with_attempts(1).get(f"{url}/drop")
    seen.add("exception:connection", f"{info.value!s}")
    assert any(r["headers"].get("authorization") == f"Bearer {API_KEY}" for r in upstream.requests)


def exercise_logs(vault: Integration, seen: Collected) -> None:
    parent = vault.log_operation(
        "import",
        "outbound",
        "processing",
        summary=f"import with key {API_KEY}",
        metadata={"token": REQ_TOKEN, "note": f"password is {PASSWORD}", "nested": {"api_key": API_KEY}},
    )
    child = vault.log_operation(
        "import.page",
        "outbound",
        "failed",
        parent=parent,
        result_data={"access_token": RESP_TOKEN, "password": REQ_PASSWORD, "text": f"saw {SIGNING}"},
        error=RuntimeError(f"page refused: {API_KEY}"),
    )
    parent.finish("failed", summary=f"failed with {PASSWORD}", error=f"key {API_KEY} revoked")
    seen.add("repr:log", f"{parent!r} {child!r}")


def exercise_webhooks(app: Any, client: Any, vault_id: int, seen: Collected) -> None:
    headers = {"Authorization": f"Bearer {HOOK_AUTH}", "X-Webhook-Token": HOOK_TOKEN}
    for event in ("fail", "ok"):
        response = client.post(
            f"{PREFIX}/vault/{vault_id}/webhook",
            json={"event": event},
            headers={**headers, "X-Event": event},
            buffered=True,
        )
        assert response.status_code == 202, response.data
        seen.add("webhook:response", response.get_data(as_text=True))
    # unverified: 401 and a warning, without the headers
    response = client.post(
        f"{PREFIX}/vault/{vault_id}/webhook",
        json={},
        headers={"Authorization": f"Bearer {HOOK_AUTH}", "X-Webhook-Token": f"{HOOK_TOKEN}-wrong"},
    )
    assert response.status_code == 401
    seen.add("webhook:401", response.get_data(as_text=True))
    with app.app_context():
        run_queued_jobs()  # the failed delivery's retry
        db.session.remove()


def exercise_oauth(app: Any, client: Any, auth: AuthServer, seen: Collected, secrets: dict[str, str]) -> int:
    connect_id = create_connect(app, auth)
    start = client.get(f"{PREFIX}/{connect_id}/oauth/authorize")
    assert start.status_code == 302
    seen.add("oauth:authorize", start.get_data(as_text=True))
    logging.disable(logging.CRITICAL)  # the browser's visit to the provider is not the package's log
    try:
        consent = httpx.get(start.headers["Location"] + "&decision=allow")
    finally:
        logging.disable(logging.NOTSET)
    callback = urlparse(consent.headers["Location"])
    code = parse_qs(callback.query)["code"][0]
    secrets["oauth.code"] = code
    response = client.get(f"{callback.path}?{callback.query}")
    assert response.status_code == 302
    seen.add("oauth:callback", response.get_data(as_text=True))
    replay = client.get(f"{callback.path}?{callback.query}")
    assert replay.status_code == 400
    seen.add("oauth:callback-replay", replay.get_data(as_text=True))
    with app.app_context():
        integration = db.session.get(Integration, connect_id)
        first = integration.credentials_dict()
        secrets["oauth.access_token"] = first["access_token"]
        secrets["oauth.refresh_token"] = first["refresh_token"]
        # an expiring token: refreshed before a bearer call
        integration.update(credentials={"token_expires_at": 0})
        answer = integration.at("me").get(f"{auth.url}/api/me")
        seen.add("oauth:api", json.dumps(answer))
        db.session.expire_all()
        refreshed = db.session.get(Integration, connect_id).credentials_dict()
        secrets["oauth.access_token.2"] = refreshed["access_token"]
        secrets["oauth.refresh_token.2"] = refreshed["refresh_token"]
        # a refresh the server refuses, quoting the token back
        auth.refresh_answers.append((400, {"error": "invalid_grant", "token": refreshed["refresh_token"]}))
        integration = db.session.get(Integration, connect_id)
        integration.update(credentials={"token_expires_at": 0})
        with pytest.raises(Exception) as info:
            integration.access_token()
        seen.add("exception:refresh", f"{info.value!s} {info.value!r}")
        db.session.remove()
    for verifier in auth.verifiers:
        secrets[f"oauth.verifier.{verifier[:6]}"] = verifier
    with client.session_transaction() as session:
        session["_integrations_csrf"] = "csrf-secrets"
    response = client.post(f"{PREFIX}/{connect_id}/oauth/revoke", data={"csrf_token": "csrf-secrets"})
    assert response.status_code == 303
    seen.add("oauth:revoke", response.get_data(as_text=True))
    with app.app_context():
        for token in [*auth.access, *auth.refresh, *auth.revoked]:
            secrets[f"oauth.issued.{token[:6]}"] = token
        db.session.remove()
    return connect_id


def exercise_dashboard(app: Any, client: Any, seen: Collected) -> None:
    with app.app_context():
        state = current_state()
        ids = db.session.scalars(sa.select(Integration.id)).all()
        requests = db.session.scalars(sa.select(state.tables["requests"].c.id)).all()
        db.session.remove()
    pages = [f"{PREFIX}/dashboard/", f"{PREFIX}/dashboard/webhooks", f"{PREFIX}/dashboard/sync-items"]
    pages += [f"{PREFIX}/dashboard/sync-items?status={s}" for s in ("all", "failed", "success")]
    pages += [f"{PREFIX}/dashboard/webhooks?status={s}" for s in ("failed", "processed", "pending")]
    pages += [f"{PREFIX}/dashboard/integrations/{i}" for i in ids]
    pages += [f"{PREFIX}/dashboard/integrations/{i}?failure=client" for i in ids]
    pages += [f"{PREFIX}/dashboard/requests/{r}" for r in requests]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        seen.add(f"dashboard:{page}", response.get_data(as_text=True))
    assert len(requests) >= 8


def exercise_cli(app: Any, vault_id: int, seen: Collected) -> None:
    runner = app.test_cli_runner()
    with app.app_context():
        webhook_id = db.session.scalar(sa.select(sa.func.min(current_state().tables["webhooks"].c.id)))
        db.session.remove()
    commands = [
        ["list"],
        ["list", "--iso"],
        ["health"],
        ["health", "--integration", str(vault_id)],
        ["stats"],
        ["test"],
        ["list-failed-items"],
        ["replay-webhook", str(webhook_id)],
        ["install", "vault", "--no-input", "--credential", f"api_key={API_KEY}",
         "--credential", f"signing_secret={SIGNING}", "--credential", f"password={PASSWORD}"],
        ["install", "loose", "--no-input", "--name", "Installed", "--credential", f"token={LOOSE_TOKEN}"],
        ["install", "vault", "--no-input", "--credential", f"api_key={API_KEY}", "--credential", "nope=1"],
        ["install", "vault", "--no-input", "--credential", f"api_key={API_KEY}"],
        ["list"],
    ]  # fmt: skip
    for args in commands:
        result = app.test_cli_runner().invoke(args=["integrations", *args])
        seen.add(f"cli:{args[0]}", result.output)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            seen.add(f"cli-exception:{args[0]}", repr(result.exception))
    assert runner is not None


def exercise_reprs(app: Any, seen: Collected) -> None:
    state = current_state()
    ext = app.extensions["integrations"]
    seen.add("repr:extension", f"{ext!r} {ext!s}")
    seen.add("repr:state", f"{state!r} {state.keyring!r}")
    from flask_integrations.db import models

    for model in models.MODELS.values():
        for obj in db.session.scalars(sa.select(model)).all():
            seen.add(f"repr:{model.__name__}", f"{obj!r} {obj!s}")
            if isinstance(obj, Integration):
                try:
                    seen.add("repr:credentials", f"{obj.credentials!r} {obj.credentials!s}")
                except Exception as exc:  # noqa: BLE001
                    seen.add("exception:credentials", repr(exc))
