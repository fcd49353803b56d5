"""Bad input (SPEC 12): hostile requests, invalid credentials, unreadable rows, bad CLI arguments.

Promise: bad input gets a clear error and loses nothing. No webhook, OAuth or
dashboard route answers 500 whatever it is sent; an unverified webhook is never
stored; a bad OAuth callback never changes credentials; invalid credentials are
refused naming every bad field with nothing written; credentials no key can
decrypt give a clear `CredentialsDecryptionError` (or page / `Error:` line)
naming the integration, never empty credentials; every CLI command given bad
arguments exits non-zero with one `Error:` line and no traceback.

The hypothesis tests run a fixed number of examples (no deadline); atheris runs
a coverage-guided fuzz of the webhook and callback routes in a subprocess for a
fixed time. Figures go to `bad_input.json` in the figures directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_integrations import (
    CredentialsDecryptionError,
    HandlesWebhooks,
    HasHealthCheck,
    IncrementalSync,
    Integration,
    IntegrationWebhook,
    Provider,
    ValidationError,
)
from flask_integrations.state import current_state
from tests.conftest import reset_tables
from tests.helpers.app import KEY, Loose, Tickets, db, make_app
from tests.helpers.oauth import CLIENT_ID, CLIENT_SECRET, Connect

ROOT = Path(__file__).resolve().parents[2]
FIGURES: dict[str, Any] = {"hypothesis_examples": {}, "paths": {}}
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
NO_FIXTURE_CHECK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


# -- providers --------------------------------------------------------------------------------------


class FuzzHooks(Provider, HandlesWebhooks):
    """Verifies one header; event, delivery id and integration come from headers."""

    def verify_webhook(self, integration: Any, request: Any) -> bool:
        return request.headers.get("X-Sig") == "good"

    def webhook_event(self, request: Any) -> str | None:
        return request.headers.get("X-Event")

    def webhook_delivery_id(self, request: Any) -> str | None:
        return request.headers.get("X-Delivery")

    def resolve_webhook_integration(self, request: Any) -> Any:
        value = request.headers.get("X-Integration")
        return db.session.get(Integration, int(value)) if value else None

    def webhook_handlers(self) -> dict:
        return {"ping": lambda integration, webhook: webhook.json()}

    def webhook_challenge(self, integration: Any, request: Any) -> str:
        return request.args.get("challenge", "")


class Feed(Provider, IncrementalSync):
    sync_interval = 10

    def sync_incremental(self, integration: Any, session: Any) -> None:
        integration.credentials_dict()


class Checked(Provider, HasHealthCheck):
    def health_check(self, integration: Any) -> bool:
        return bool(integration.credentials_dict())


PROVIDERS = {
    "fuzzhooks": FuzzHooks,
    "tickets": Tickets,
    "loose": Loose,
    "connect": Connect,
    "feed": Feed,
    "checked": Checked,
}
PREFIX = "/integrations"


@pytest.fixture(scope="module", autouse=True)
def _figures(figures_dir):
    started = time.monotonic()
    yield
    FIGURES["seconds"] = round(time.monotonic() - started, 1)
    (figures_dir / "bad_input.json").write_text(json.dumps(FIGURES, indent=2, sort_keys=True))


def count(name: str, n: int = 1) -> None:
    FIGURES["paths"][name] = FIGURES["paths"].get(name, 0) + n


def example(name: str) -> None:
    FIGURES["hypothesis_examples"][name] = FIGURES["hypothesis_examples"].get(name, 0) + 1


@pytest.fixture
def app(app_factory, auth_server):
    auth_server.reset()
    return app_factory(
        INTEGRATIONS_PROVIDERS=PROVIDERS,
        INTEGRATIONS_WEBHOOK={"max_payload_bytes": 512, "retry_delay": 0},
        INTEGRATIONS_RETRY_AFTER_MAX=0.01,
    )


def webhook_rows() -> int:
    db.session.rollback()
    return db.session.scalar(sa.select(sa.func.count()).select_from(IntegrationWebhook)) or 0


def raw_credentials(integration_id: int) -> str | None:
    db.session.rollback()
    table = current_state().tables["integrations"]
    return db.session.execute(sa.select(table.c.credentials).where(table.c.id == integration_id)).scalar()


def make_unreadable(integration_id: int, secret: str = "zzz-unreadable") -> str:
    """Overwrite the row's credentials with a token of a key nobody configured."""
    table = current_state().tables["integrations"]
    foreign = Fernet(Fernet.generate_key()).encrypt(json.dumps({"api_key": secret}).encode()).decode()
    db.session.execute(sa.update(table).where(table.c.id == integration_id).values(credentials=foreign))
    db.session.commit()
    db.session.expire_all()
    return foreign


def assert_no_traceback(text: str) -> None:
    assert "Traceback (most recent call last)" not in text, text[-3000:]


# -- webhooks: hypothesis ---------------------------------------------------------------------------

segments = st.one_of(
    st.sampled_from(["fuzzhooks", "loose", "nope", "dashboard", "oauth", "", "..", "%00"]),
    st.text(max_size=30),
)
id_segments = st.one_of(
    st.none(),
    st.sampled_from(["{id}", "0", "-1", "99999999999999999999999", "9223372036854775808", "abc", "1.5"]),
    st.text(max_size=20),
)
header_names = st.sampled_from(
    ["X-Event", "X-Delivery", "X-Integration", "Content-Encoding", "Transfer-Encoding", "X-Other", "Cookie"]
)
header_values = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40
)


@SQLITE_ONLY
@settings(max_examples=120, deadline=None, suppress_health_check=NO_FIXTURE_CHECK)
@given(
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS"]),
    provider=segments,
    integration=id_segments,
    body=st.one_of(
        st.binary(max_size=700),
        st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    headers=st.dictionaries(header_names, header_values, max_size=4),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]
    ),
    signed=st.booleans(),
    query=st.dictionaries(st.sampled_from(["challenge", "x", "\x00"]), st.text(max_size=20), max_size=2),
)
def test_fuzzed_webhook_requests_never_500_and_never_store_unverified_bodies(
    app, ctx, method, provider, integration, body, headers, content_type, signed, query
):
    client = app.test_client()
    hooked = db.session.scalar(sa.select(Integration).where(Integration.provider == "fuzzhooks"))
    if hooked is None:
        hooked = app.extensions["integrations"].create("fuzzhooks", "Hooks", {"signing_secret": "whsec-1"})
    headers = {k: v for k, v in headers.items() if k.lower() != "transfer-encoding"}
    headers["X-Sig"] = "good" if signed else "bad"
    if content_type:
        headers["Content-Type"] = content_type
    path = f"{PREFIX}/{quote(provider, safe='')}"
    if integration is not None:
        path += "/" + quote(integration.replace("{id}", str(hooked.id)), safe="")
    path += "/webhook"
    before = webhook_rows()
    response = client.open(path, method=method, data=body, headers=headers, query_string=query, buffered=True)
    example("webhooks")
    assert response.status_code < 500, (path, response.status_code, response.get_data()[:300])
    after = webhook_rows()
    if not signed or method != "POST" or response.status_code not in (200, 202):
        assert after == before, (path, method, response.status_code)
    else:
        assert after == before + 1


# -- OAuth: hypothesis ------------------------------------------------------------------------------


def oauth_integration(app, auth_server, **tokens) -> int:
    integration = db.session.scalar(sa.select(Integration).where(Integration.provider == "connect"))
    if integration is None:
        integration = app.extensions["integrations"].create(
            "connect",
            "Connect",
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **tokens},
            metadata={"server": auth_server.url},
        )
    return integration.id


params = st.one_of(
    st.none(), st.text(max_size=60), st.sampled_from(["", "x" * 5000, "\x00", "%", "access_denied"])
)


@SQLITE_ONLY
@settings(max_examples=80, deadline=None, suppress_health_check=NO_FIXTURE_CHECK)
@given(
    real_state=st.booleans(),
    state=params,
    code=params,
    error=params,
    extra=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
    cookie=st.one_of(st.none(), st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=200)),
    authorize_id=st.one_of(
        st.sampled_from(["{id}", "0", "-5", "99999999999999999999999", "abc"]), st.text(max_size=10)
    ),
)
def test_fuzzed_oauth_authorize_and_callback_never_500_nor_change_credentials(
    app, ctx, auth_server, real_state, state, code, error, extra, cookie, authorize_id
):
    integration_id = oauth_integration(app, auth_server, access_token="at-keep", refresh_token="rt-keep")
    before = raw_credentials(integration_id)
    exchanges = auth_server.count("exchange")
    client = app.test_client()
    path = f"{PREFIX}/{quote(authorize_id.replace('{id}', str(integration_id)), safe='')}/oauth/authorize"
    response = client.get(path)
    assert response.status_code < 500, (path, response.get_data()[:300])
    if real_state:
        started = client.get(f"{PREFIX}/{integration_id}/oauth/authorize")
        assert started.status_code == 302
        query = dict(pair.split("=", 1) for pair in urlparse(started.headers["Location"]).query.split("&"))
        state = query["state"]
    if cookie is not None:
        client.set_cookie("session", cookie)
    args = {**extra}
    for name, value in (("state", state), ("code", code), ("error", error)):
        if value is not None:
            args[name] = value
    response = client.get(f"{PREFIX}/oauth/callback", query_string=args)
    example("oauth_callback")
    page = response.get_data(as_text=True)
    assert response.status_code in (400, 404, 502), (args, response.status_code, page[:300])
    assert_no_traceback(page)
    if code and len(code) >= 8 and code not in (error or "") and code not in (state or ""):
        assert code not in page  # an authorization code is never echoed
    assert raw_credentials(integration_id) == before
    if not real_state:
        assert auth_server.count("exchange") == exchanges  # no code is exchanged without a valid state


@SQLITE_ONLY
@settings(max_examples=60, deadline=None, suppress_health_check=NO_FIXTURE_CHECK)
@given(
    form=st.dictionaries(
        st.sampled_from(["csrf_token", "next", "x", "token"]),
        st.one_of(st.text(max_size=40), st.sampled_from(["//evil.example", "/\\x", "javascript:x", "/ok"])),
        max_size=4,
    ),
    with_csrf=st.booleans(),
    csrf_header=st.one_of(
        st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=20)
    ),
    target=st.sampled_from(["{id}", "0", "99999999999999999999999", "abc"]),
)
def test_fuzzed_oauth_revoke_never_500_and_redirects_only_locally(
    app, ctx, auth_server, form, with_csrf, csrf_header, target
):
    integration_id = oauth_integration(app, auth_server)
    client = app.test_client()
    if with_csrf:
        with client.session_transaction() as session:
            session["_integrations_csrf"] = "csrf-" + uuid.uuid4().hex
            form = {**form, "csrf_token": session["_integrations_csrf"]}
    headers = {"X-CSRF-Token": csrf_header.replace("\r", "").replace("\n", "")} if csrf_header else {}
    before = raw_credentials(integration_id)
    path = f"{PREFIX}/{quote(target.replace('{id}', str(integration_id)), safe='')}/oauth/revoke"
    response = client.post(path, data=form, headers=headers)
    example("oauth_revoke")
    assert response.status_code in (303, 400, 404, 405), (form, response.status_code, response.data[:300])
    if response.status_code == 303:
        location = response.headers["Location"]
        assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    else:
        assert raw_credentials(integration_id) == before


def test_a_non_ascii_csrf_token_is_400_not_500(app, ctx, auth_server):
    """Regression: `hmac.compare_digest` raises TypeError on non-ASCII str; it was a 500."""
    integration_id = oauth_integration(app, auth_server)
    client = app.test_client()
    with client.session_transaction() as session:
        session["_integrations_csrf"] = "csrf-token"
    response = client.post(f"{PREFIX}/{integration_id}/oauth/revoke", data={"csrf_token": "é"})
    assert response.status_code == 400
    response = client.post(
        f"{PREFIX}/dashboard/integrations/{integration_id}/disable", data={"csrf_token": "ü"}
    )
    assert response.status_code == 400
    count("csrf_non_ascii")


# -- dashboard: hostile query strings ---------------------------------------------------------------

HOSTILE = [
    "-1",
    "0",
    str(10**30),
    "abc",
    "1e3",
    "<script>alert(1)</script>",
    "'; DROP TABLE integrations; --",
    '"><img src=x onerror=alert(1)>',
    "ünïcødé ☃ 💥",
    "\x00",
    "a\x00b",
    "%00",
    "x" * 10_000,
    "../../etc/passwd",
    "5xx",
    "none",
    "4XX",
    "\u202e",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
]
DASHBOARD_ARGS = ["page", "provider", "health", "status", "integration", "endpoint", "failure", "next"]
#: The arguments each page reads (every page also gets all of them at once, and the fuzz below).
PAGE_ARGS = [
    ["page", "provider", "health"],
    ["page", "endpoint", "status", "failure"],
    ["page", "next"],
    ["page", "status", "provider", "integration"],
    ["page", "status", "integration"],
]


def dashboard_paths(ids: dict[str, int]) -> list[str]:
    return [
        f"{PREFIX}/dashboard/",
        f"{PREFIX}/dashboard/integrations/{ids['tickets']}",
        f"{PREFIX}/dashboard/requests/{ids['request']}",
        f"{PREFIX}/dashboard/webhooks",
        f"{PREFIX}/dashboard/sync-items",
    ]


def seed_dashboard(app) -> dict[str, int]:
    ext = app.extensions["integrations"]
    tickets = ext.create(
        "tickets", "T", {"api_key": "sk-dash-1", "subdomain": "acme"}, metadata={"team": "t"}
    )
    table = current_state().tables["requests"]
    from flask_integrations.clock import utcnow

    now = utcnow()
    db.session.execute(
        sa.insert(table).values(
            integration_id=tickets.id,
            endpoint="tickets",
            method="GET",
            status_code=503,
            duration_ms=5,
            failure_class="upstream",
            error="HTTP 503",
            cache_hits=0,
            stale_hits=0,
            created_at=now,
            updated_at=now,
        )
    )
    db.session.commit()
    request_id = db.session.scalar(sa.select(sa.func.max(table.c.id)))
    return {"tickets": tickets.id, "request": request_id}


def check_dashboard_answer(response: Any, injected: str) -> None:
    page = response.get_data(as_text=True)
    assert response.status_code in (200, 400, 404), (response.status_code, page[:500])
    assert_no_traceback(page)
    for marker in ("<script>alert", "<img src=x", "<x-inj"):
        if marker in injected:
            assert marker not in page, f"unescaped {marker!r}"


def test_hostile_dashboard_query_strings_are_never_500_and_always_escaped(app, ctx):
    ids = seed_dashboard(app)
    client = app.test_client()
    answered = 0
    for path, names in zip(dashboard_paths(ids), PAGE_ARGS, strict=True):
        for name in names:
            for value in HOSTILE:
                response = client.get(path, query_string={name: value})
                check_dashboard_answer(response, value)
                answered += 1
        for value in HOSTILE:  # every argument at once
            response = client.get(path, query_string={name: value for name in DASHBOARD_ARGS})
            check_dashboard_answer(response, value)
            answered += 1
    for raw in ["page=%ff%fe", "provider=%00", "a=%zz", "page=1&page=abc", "&&&==", "health=%3Cscript%3E"]:
        for path in dashboard_paths(ids):
            response = client.get(f"{path}?{raw}")
            check_dashboard_answer(response, raw)
            answered += 1
    for suffix in ["integrations/-1", "integrations/99999999999999999999999", "requests/abc", "nope"]:
        assert client.get(f"{PREFIX}/dashboard/{suffix}").status_code == 404
        answered += 1
    count(f"dashboard_hostile_requests_{db.engine.dialect.name}", answered)


@SQLITE_ONLY
@settings(max_examples=80, deadline=None, suppress_health_check=NO_FIXTURE_CHECK)
@given(
    page=st.integers(),
    args=st.dictionaries(
        st.sampled_from(DASHBOARD_ARGS),
        st.one_of(st.text(max_size=50), st.sampled_from(HOSTILE)).map(lambda v: v + "<x-inj>"),
        max_size=4,
    ),
    which=st.integers(0, 4),
)
def test_fuzzed_dashboard_query_strings(app, ctx, page, args, which):
    ids = {"tickets": 1, "request": 1}
    if db.session.get(Integration, 1) is None:
        ids = seed_dashboard(app)
    path = dashboard_paths(ids)[which]
    response = app.test_client().get(path, query_string={"page": str(page), **args})
    example("dashboard")
    check_dashboard_answer(response, "<x-inj>")


# -- invalid credentials ------------------------------------------------------------------------

wrong_values = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)
)


@SQLITE_ONLY
@settings(max_examples=60, deadline=None, suppress_health_check=NO_FIXTURE_CHECK)
@given(
    api_key=st.one_of(st.text(min_size=1, max_size=20), wrong_values),
    subdomain=st.one_of(st.just(None), st.text(min_size=1, max_size=10), wrong_values),
    timeout=st.one_of(st.integers(), st.text(max_size=3), st.booleans(), st.floats(allow_nan=False)),
    verify=st.one_of(st.booleans(), st.integers(), st.text(max_size=3)),
    unknown=st.dictionaries(st.sampled_from(["region", "apikey", "x"]), wrong_values, max_size=2),
)
def test_invalid_credentials_name_every_bad_field_and_write_nothing(
    app, ctx, api_key, subdomain, timeout, verify, unknown
):
    ext = app.extensions["integrations"]
    existing = db.session.scalar(sa.select(Integration).where(Integration.provider == "tickets"))
    if existing is None:
        existing = ext.create(
            "tickets", "Kept", {"api_key": "sk-keep", "subdomain": "s"}, metadata={"team": "t"}
        )
    credentials: dict[str, Any] = {"api_key": api_key, "timeout": timeout, "verify": verify, **unknown}
    if subdomain is not None:
        credentials["subdomain"] = subdomain
    expected = set()
    if not isinstance(api_key, str):
        expected.add("api_key")
    if not isinstance(subdomain, str):
        expected.add("subdomain")
    if not isinstance(timeout, int) or isinstance(timeout, bool):
        expected.add("timeout")
    if not isinstance(verify, bool):
        expected.add("verify")
    expected |= set(unknown)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Integration))
    raw = raw_credentials(existing.id)
    example("invalid_credentials")
    if not expected:
        return
    with pytest.raises(ValidationError) as create_error:
        ext.create("tickets", "Bad", credentials, metadata={"team": "t"})
    assert set(create_error.value.errors) == expected
    db.session.rollback()
    with pytest.raises(ValidationError) as update_error:
        existing.update(credentials=credentials, replace=True)
    assert set(update_error.value.errors) == expected
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Integration)) == total
    assert raw_credentials(existing.id) == raw
    for text in (str(create_error.value), str(update_error.value)):
        for value in credentials.values():
            if isinstance(value, str) and len(value) >= 6:
                assert value not in text


def test_invalid_metadata_and_columns_are_refused_and_write_nothing(app, ctx):
    ext = app.extensions["integrations"]
    with pytest.raises(ValidationError) as error:
        ext.create("tickets", "Bad", {"api_key": "k", "subdomain": "s"}, metadata={"team": 5, "tags": "x"})
    assert set(error.value.errors) == {"team", "tags"}
    integration = ext.create("tickets", "Ok", {"api_key": "k", "subdomain": "s"}, metadata={"team": "t"})
    with pytest.raises(ValidationError, match="credentials_token|id|not an updatable column"):
        integration.update(id=99)
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Integration)) == 1
    count("invalid_metadata_and_columns")


# -- undecryptable rows -----------------------------------------------------------------------------


def test_undecryptable_rows_give_a_clear_error_on_every_path(app, ctx, auth_server):
    ext = app.extensions["integrations"]
    tickets = ext.create(
        "tickets", "T", {"api_key": "sk-und-1", "subdomain": "acme"}, metadata={"team": "t"}
    ).id
    connect = oauth_integration(app, auth_server, access_token="at-und", refresh_token="rt-und")
    feed = ext.create("feed", "F", {"k": "v"}).id
    checked = ext.create("checked", "C", {"k": "v"}).id
    hooked = ext.create("fuzzhooks", "H", {"signing_secret": "whsec-und"}).id
    for integration_id in (tickets, connect, feed, checked, hooked):
        make_unreadable(integration_id)
    paths = 0

    def clear(exc: BaseException, integration_id: int) -> None:
        assert isinstance(exc, CredentialsDecryptionError), repr(exc)
        assert exc.integration_id == integration_id and f"integration {integration_id}" in str(exc)

    # the model and the pipeline
    for integration_id in (tickets, connect, feed, checked):
        for read in ("credentials_dict", "credentials"):
            with pytest.raises(CredentialsDecryptionError) as info:
                value = getattr(ext.get(integration_id), read)
                value() if callable(value) else value
            clear(info.value, integration_id)
            paths += 1
    with pytest.raises(CredentialsDecryptionError) as info:
        ext.get(tickets).at("tickets").get(f"{auth_server.url}/api/me")
    clear(info.value, tickets)
    with pytest.raises(CredentialsDecryptionError) as info:
        ext.get(connect).at("me").get(f"{auth_server.url}/api/me")
    clear(info.value, connect)
    with pytest.raises(CredentialsDecryptionError) as info:
        ext.get(connect).access_token()
    clear(info.value, connect)
    assert auth_server.count("api") == 0  # nothing was sent without its credentials
    paths += 3
    requests = current_state().tables["requests"]
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(requests)) == 0

    # dashboard pages
    client = app.test_client()
    for path in ["", f"integrations/{tickets}", f"integrations/{connect}", "webhooks", "sync-items"]:
        response = client.get(f"{PREFIX}/dashboard/{path}")
        page = response.get_data(as_text=True)
        assert response.status_code == 200, page[:500]
        assert_no_traceback(page)
        if path.startswith("integrations/"):
            assert "cannot be decrypted" in page
        paths += 1

    # OAuth authorize, callback and revoke
    response = client.get(f"{PREFIX}/{connect}/oauth/authorize")
    page = response.get_data(as_text=True)
    assert response.status_code < 500 and "cannot be decrypted" in page, page[:500]
    with client.session_transaction() as session:
        session["_integrations_csrf"] = "csrf-1"
    response = client.post(f"{PREFIX}/{connect}/oauth/revoke", data={"csrf_token": "csrf-1"})
    page = response.get_data(as_text=True)
    assert response.status_code < 500 and "cannot be decrypted" in page, page[:500]
    paths += 2

    # webhooks still arrive (the integration's credentials are not needed to store one)
    response = client.post(f"{PREFIX}/fuzzhooks/{hooked}/webhook", json={}, headers={"X-Sig": "good"})
    assert response.status_code == 202
    paths += 1

    # CLI
    runner = app.test_cli_runner()
    db.session.remove()
    for args, code in [
        (["list"], 0),
        (["health"], 0),
        (["stats"], 0),
        (["test", "--integration", str(checked)], 1),
        (["test"], 1),
        (["sync", "--integration", str(feed)], 0),
    ]:
        result = runner.invoke(args=["integrations", *args])
        assert result.exit_code == code, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert_no_traceback(result.output)
        if args[0] == "test":
            assert f"integration {checked} cannot be decrypted" in result.output
        paths += 1
    result = runner.invoke(args=["integrations", "rotate-key"])
    assert result.exit_code == 1 and "cannot be decrypted with any configured key" in result.output
    paths += 1
    count(f"undecryptable_paths_{db.engine.dialect.name}", paths)


def test_wrong_keys_after_rotation(database_url):
    """Rotate to a new first key, then drop the old key: rotated rows read, a straggler names its id."""
    old_app = make_app(database_url)
    with old_app.app_context():
        reset_tables()
        ext = old_app.extensions["integrations"]
        rotated = [
            ext.create(
                "tickets", f"T{n}", {"api_key": f"sk-rot-{n}", "subdomain": "s"}, metadata={"team": "t"}
            ).id
            for n in range(4)
        ]
        db.session.remove()
    new_key = Fernet.generate_key().decode()
    both = make_app(database_url, INTEGRATIONS_ENCRYPTION_KEYS=[new_key, KEY])
    result = both.test_cli_runner().invoke(args=["integrations", "rotate-key", "--batch-size", "3"])
    assert result.exit_code == 0 and "Re-encrypted 4 integration(s)" in result.output, result.output
    with old_app.app_context():  # an old process still running writes one more row with the old key
        straggler = (
            old_app.extensions["integrations"]
            .create("tickets", "Late", {"api_key": "sk-rot-late", "subdomain": "s"}, metadata={"team": "t"})
            .id
        )
        db.session.remove()
    new_only = make_app(database_url, INTEGRATIONS_ENCRYPTION_KEYS=[new_key])
    with new_only.app_context():
        for n, integration_id in enumerate(rotated):
            assert db.session.get(Integration, integration_id).credentials.api_key == f"sk-rot-{n}"
        with pytest.raises(CredentialsDecryptionError) as info:
            db.session.get(Integration, straggler).credentials_dict()
        assert info.value.integration_id == straggler and f"integration {straggler}" in str(info.value)
        assert "sk-rot-late" not in str(info.value)
        db.session.remove()
    result = new_only.test_cli_runner().invoke(args=["integrations", "rotate-key"])
    assert result.exit_code == 1
    assert f"cannot be decrypted with any configured key: {straggler}" in result.output
    assert_no_traceback(result.output)
    # with the old key back (second), the straggler is rotated and the run is clean
    result = both.test_cli_runner().invoke(args=["integrations", "rotate-key"])
    assert result.exit_code == 0, result.output
    with new_only.app_context():
        assert db.session.get(Integration, straggler).credentials.api_key == "sk-rot-late"
        db.session.remove()
    count(f"rotation_{database_url.split(':')[0].split('+')[0]}")


# -- malformed CLI input ----------------------------------------------------------------------------

CLI_CASES = [
    ["list", "--provider", "nope"],
    ["list", "--bogus"],
    ["list", "extra"],
    ["health", "--hours", "abc"],
    ["health", "--hours", "0"],
    ["health", "--hours", "-5"],
    ["health", "--integration", "abc"],
    ["health", "--integration", "999999"],
    ["health", "--integration", "99999999999999999999999"],
    ["stats", "--hours", "1.5"],
    ["stats", "--integration", "-1"],
    ["test", "--integration", "x"],
    ["test", "--integration", "424242"],
    ["sync", "--integration", "abc"],
    ["sync", "--integration", "424242"],
    ["sync", "--integration", "99999999999999999999999"],
    ["replay-webhook"],
    ["replay-webhook", "abc"],
    ["replay-webhook", "424242"],
    ["replay-webhook", "99999999999999999999999"],
    ["replay-webhook", "--", "-1"],
    ["list-failed-items", "--since", "yesterday"],
    ["list-failed-items", "--since", "2024-13-45"],
    ["list-failed-items", "--since", "\x00"],
    ["list-failed-items", "--integration", "abc"],
    ["list-failed-items", "--integration", "424242"],
    ["skip-sync-item"],
    ["skip-sync-item", "abc"],
    ["skip-sync-item", "424242"],
    ["retry-sync-item", "1e3"],
    ["retry-sync-item", "424242"],
    ["advance-cursor", "abc"],
    ["advance-cursor", "424242"],
    ["advance-cursor", "99999999999999999999999"],
    ["install"],
    ["install", "nope", "--no-input"],
    ["install", "tickets", "--no-input"],
    ["install", "tickets", "--credential", "api_key", "--no-input"],
    ["install", "tickets", "--credential", "=x", "--no-input"],
    ["install", "tickets", "--credential", "nope=1", "--credential", "api_key=k", "--no-input"],
    [
        "install",
        "tickets",
        "--credential",
        "api_key=k",
        "--credential",
        "subdomain=s",
        "--credential",
        "timeout=abc",
        "--metadata",
        "team=t",
        "--no-input",
    ],
    [
        "install",
        "tickets",
        "--credential",
        "api_key=k",
        "--credential",
        "subdomain=s",
        "--metadata",
        "team",
        "--no-input",
    ],
    [
        "install",
        "tickets",
        "--credential",
        "api_key=k",
        "--credential",
        "subdomain=s",
        "--metadata",
        "tags=[",
        "--metadata",
        "team=t",
        "--no-input",
    ],
    ["prune", "--table", "nope"],
    ["prune", "--bogus"],
    ["rotate-key", "--batch-size", "0"],
    ["rotate-key", "--batch-size", "abc"],
    ["worker"],  # needs INTEGRATIONS_REDIS_URL
    ["make-provider"],
    ["make-provider", "Bad Name!"],
    ["make-provider", "../evil"],
    ["nope-command"],
]


@SQLITE_ONLY
def test_every_command_with_bad_arguments_prints_one_error_line(app, ctx, tmp_path, monkeypatch):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    ext = app.extensions["integrations"]
    ext.create("tickets", "T", {"api_key": "sk-cli-1", "subdomain": "s"}, metadata={"team": "t"})
    db.session.remove()
    runner = app.test_cli_runner()
    for args in CLI_CASES:
        result = runner.invoke(args=["integrations", *args])
        text = result.output
        assert result.exit_code != 0, (args, text)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert_no_traceback(text)
        lines = [line for line in text.strip().splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("Error:")]
        assert len(errors) == 1 and lines[-1] == errors[0] and len(lines) == 1, (args, text)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Integration)) == 1
    assert not list(workdir.iterdir())  # no make-provider leftovers
    count("cli_bad_arguments", len(CLI_CASES))


# -- atheris ----------------------------------------------------------------------------------------


def test_atheris_coverage_guided_fuzz_of_webhook_and_callback(tmp_path):
    try:
        import atheris  # noqa: F401
    except ImportError as exc:  # pragma: no cover - atheris has wheels for cp311 manylinux
        pytest.skip(f"atheris is not installed: {exc}")
    seconds = int(os.environ.get("INTEGRATIONS_ATHERIS_SECONDS", "20"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FUZZ_DATABASE": str(tmp_path / "fuzz.db"),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.helpers.fuzz_webhooks",
            f"-max_total_time={seconds}",
            "-print_final_stats=1",
            "-rss_limit_mb=1536",
            "-timeout=20",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
    coverage = re.findall(r"cov: (\d+)", output)
    FIGURES["atheris"] = {
        "seconds": seconds,
        "executions": int(runs.group(1)) if runs else None,
        "coverage_edges": int(coverage[-1]) if coverage else None,
    }
    assert runs and int(runs.group(1)) > 0, output[-2000:]
