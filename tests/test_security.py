"""Security and correctness, second round: each finding of the outside review, reproduced.

Each test fails if its finding comes back; the classes they belong to are swept in
tests/reliability/test_secrets.py, test_bad_input.py and test_id_reuse.py.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import textwrap
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import sqlalchemy as sa

from flask_integrations import IntegrationHTTPError, IntegrationRequest, OAuth2, Provider, signals
from flask_integrations.pipeline import breaker, cache, ratelimit
from flask_integrations.state import current_state
from tests.helpers.app import KEY, ROOT, db

KEY_VALUE = "sk-live-SECRET-4242"


@dataclasses.dataclass
class ApiCredentials:
    api_key: str


class Api(Provider):
    credential_class = ApiCredentials


class QueryKeyApi(Provider):
    """Puts its key in the path and under a query name no redaction list knows (`appid`)."""

    credential_class = ApiCredentials

    def prepare_request(self, integration, request):
        key = integration.credentials.api_key
        request.url = request.url.copy_with(path=f"/json/{key}").copy_merge_params({"appid": key})


@pytest.fixture
def app(app_factory, upstream):
    app = app_factory(INTEGRATIONS_RETRY_AFTER_MAX=0.01)
    Api.base_url = QueryKeyApi.base_url = upstream.url
    app.extensions["integrations"].register("api", Api)
    app.extensions["integrations"].register("querykey", QueryKeyApi)
    return app


@pytest.fixture
def api(app, ctx):
    return app.extensions["integrations"].create("api", "API", {"api_key": KEY_VALUE})


def stored_text() -> str:
    """Every request row's columns, as text."""
    rows = db.session.execute(sa.select(IntegrationRequest.__table__)).mappings().all()
    return repr([dict(row) for row in rows])


# -- 1. credentials in endpoint labels --------------------------------------------------------


def test_a_credential_in_an_endpoint_label_is_never_stored_shown_or_signalled(app, api, upstream):
    seen = []

    def on_request(sender, **extra):
        seen.append(extra["endpoint"])

    with signals.request_completed.connected_to(on_request), signals.request_failed.connected_to(on_request):
        api.at(f"/json?echo={KEY_VALUE}").get()  # no target: the label is the path
        api.at("/json?api_key=not-a-credential-but-a-redact-key").get()
        with pytest.raises(IntegrationHTTPError) as raised:
            api.at(f"/status/404?for={KEY_VALUE}").get()
    db.session.commit()

    assert upstream.requests[0]["query"] == {"echo": KEY_VALUE}  # the call itself went out as asked
    endpoints = db.session.scalars(sa.select(IntegrationRequest.endpoint).order_by(IntegrationRequest.id))
    assert list(endpoints) == [
        "/json?echo=[REDACTED]",
        "/json?api_key=[REDACTED]",
        "/status/404?for=[REDACTED]",
    ]
    assert KEY_VALUE not in stored_text() and "not-a-credential" not in stored_text()
    assert KEY_VALUE not in str(raised.value) and "[REDACTED]" in str(raised.value)
    assert seen and not [label for label in seen if KEY_VALUE in label]
    client = app.test_client()
    pages = [f"/integrations/dashboard/integrations/{api.id}"] + [
        f"/integrations/dashboard/requests/{row_id}"
        for row_id in db.session.scalars(sa.select(IntegrationRequest.id))
    ]
    for page in pages:
        html = client.get(page).get_data(as_text=True)
        assert KEY_VALUE not in html, page


# -- 2. a deleted integration's state ----------------------------------------------------------


def test_a_deleted_integrations_state_never_reaches_the_next_one(app, ext, ctx, upstream):
    state = current_state()
    first = ext.create("api", "Tenant A", {"api_key": KEY_VALUE})
    first.at("cached").with_cache(3600).get("/json")
    breaker.after_attempt(
        state.store, first.id, "upstream", {**state.setting("BREAKER"), "threshold": 1}, False
    )
    ratelimit.report(state.store, first.id, retry_after=60)
    assert first.breaker_state() == "open"
    gone = first.id

    ext.delete(first)

    assert state.store.get_many(breaker.read_keys(gone) + ratelimit.read_keys(gone)) == [None, None, None]
    assert state.store.delete_prefix(f"cache:{gone}:") == 0
    second = ext.create("api", "Tenant B", {"api_key": "sk-live-OTHER-0001"})
    assert second.id != gone  # never reused, SQLite included
    again = ext.create("api", "Tenant C", {"api_key": "sk-live-OTHER-0002"}, id=gone + 1000)
    assert again.breaker_state() == "closed"
    calls = len(upstream.requests)
    second.at("cached").with_cache(3600).get("/json")
    assert len(upstream.requests) == calls + 1  # a miss: nothing cached under the new id


# -- 3. httpx's own log lines ---------------------------------------------------------------------


def test_httpx_log_lines_never_carry_the_integrations_credentials(app, ext, ctx, upstream, caplog):
    integration = ext.create("querykey", "Q", {"api_key": KEY_VALUE})
    with caplog.at_level(logging.INFO, logger="httpx"):
        integration.at("weather").get("/anything")
    assert upstream.requests[-1]["query"] == {"appid": KEY_VALUE}  # prepare_request's key went out
    lines = [record.getMessage() for record in caplog.records if record.name == "httpx"]
    assert lines and all(KEY_VALUE not in line for line in lines), lines
    assert "appid=[REDACTED]" in lines[-1] and "/json/[REDACTED]" in lines[-1]


# -- 4. Unicode digits ----------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["status=1²3", "status=²xx", "page=²", "page=١٢", "failure=²"])
def test_unicode_digits_in_a_dashboard_filter_are_refused_not_a_500(app, api, query):
    response = app.test_client().get(f"/integrations/dashboard/integrations/{api.id}?{query}")
    assert response.status_code == 200


@pytest.mark.parametrize("header", ["X-RateLimit-Reset", "Retry-After"])
def test_unicode_digits_in_an_upstreams_limit_headers_do_not_break_the_call(app, api, upstream, header):
    answer = {"X-RateLimit-Remaining": "0", header: "²"}
    upstream.script("/limited", [(429, {"error": "slow down"}, answer)])
    with pytest.raises(IntegrationHTTPError) as raised:
        api.at("limited").with_attempts(1).get("/limited")
    assert raised.value.status_code == 429
    db.session.commit()
    assert db.session.scalars(sa.select(IntegrationRequest.status_code)).all() == [429]


def test_unicode_digits_reported_by_a_callable_do_not_break_the_call(app, api):
    def sdk(ctx):
        ctx.report(rate_limit_remaining="０", rate_limit_reset_at="²", retry_after="١")
        return {"ok": True}

    assert api.at("sdk").get(sdk) == {"ok": True}
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(IntegrationRequest)) == 1


# -- 6. cache hits ---------------------------------------------------------------------------------

HITS_SCRIPT = textwrap.dedent(
    f"""
    import sys

    sys.path.insert(0, {str(ROOT)!r})
    from tests.helpers.app import db, make_app
    from tests.test_security import Api

    app = make_app(sys.argv[1], INTEGRATIONS_ENCRYPTION_KEYS=[{KEY!r}])
    Api.base_url = sys.argv[2]
    app.extensions["integrations"].register("api", Api)
    with app.app_context():
        db.create_all()
        api = app.extensions["integrations"].create("api", "API", {{"api_key": "sk-live-HITS-0001"}})
        for _ in range(4):  # one miss, three hits
            api.at("cached").with_cache(3600).get("/json")
    """
)


@pytest.mark.slow
def test_a_process_that_exits_after_a_few_cache_hits_counts_them(tmp_path, upstream):
    url = f"sqlite:///{tmp_path / 'hits.db'}"
    (tmp_path / "hits.py").write_text(HITS_SCRIPT)
    done = subprocess.run(
        [sys.executable, "hits.py", url, upstream.url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        hits = connection.scalar(sa.text("SELECT sum(cache_hits) FROM integration_requests"))
    engine.dispose()
    assert hits == 3


def test_the_end_of_an_app_context_outside_a_request_writes_its_cache_hits(app, upstream):
    with app.app_context():
        api = app.extensions["integrations"].create("api", "API", {"api_key": KEY_VALUE})
        for _ in range(3):
            api.at("cached").with_cache(3600).get("/json")
        assert cache.hits_unflushed(current_state().store)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.sum(IntegrationRequest.cache_hits))) == 2
        assert not cache.hits_unflushed(current_state().store)


# -- 4 and 7: OAuth -------------------------------------------------------------------------------


def oauth_app(app_factory, auth_server, **config):
    from tests.helpers.oauth import PROVIDERS, create_connect

    auth_server.reset()
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, **config)
    return app, create_connect(app, auth_server)


class UnicodeExpiry(Provider, OAuth2):
    """An OAuth2 provider whose token endpoint answers `expires_in` in superscript digits."""

    def authorization_url(self, integration, redirect_uri, state, code_challenge):
        return f"https://auth.invalid/authorize?{urlencode({'state': state})}"

    def exchange_code(self, integration, code, redirect_uri, code_verifier):
        return {"access_token": "at-UNICODE-EXPIRY", "expires_in": "²"}

    def refresh_token(self, integration):
        raise NotImplementedError

    def revoke_token(self, integration):
        raise NotImplementedError


def test_an_expires_in_of_unicode_digits_is_no_expiry_not_a_500(app_factory):
    app = app_factory(INTEGRATIONS_PROVIDERS={"unicode": UnicodeExpiry})
    client = app.test_client()
    with app.app_context():
        integration_id = app.extensions["integrations"].create("unicode", "U", {}).id
        db.session.remove()
    location = client.get(f"/integrations/{integration_id}/oauth/authorize").headers["Location"]
    state = parse_qs(urlparse(location).query)["state"][0]
    response = client.get(f"/integrations/oauth/callback?{urlencode({'state': state, 'code': 'c'})}")
    assert response.status_code == 302, response.get_data(as_text=True)
    with app.app_context():
        credentials = app.extensions["integrations"].get(integration_id).credentials_dict()
        assert credentials["access_token"] == "at-UNICODE-EXPIRY" and credentials["token_expires_at"] is None
        db.session.remove()


@pytest.mark.parametrize("allowed", [True, False])
def test_authorize_answers_an_unknown_id_like_a_refused_one(app_factory, auth_server, allowed):
    app, integration_id = oauth_app(
        app_factory, auth_server, INTEGRATIONS_OAUTH_AUTH=lambda request, integration: allowed
    )
    client = app.test_client()
    known = client.get(f"/integrations/{integration_id}/oauth/authorize").status_code
    unknown = client.get(f"/integrations/{integration_id + 1000}/oauth/authorize").status_code
    assert (known, unknown) == ((302, 403) if allowed else (403, 403))


# -- 4: CLI ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["١٢", "²", "１"])
def test_a_cli_id_in_other_digits_is_one_usage_error(app, ctx, value):
    result = app.test_cli_runner().invoke(args=["integrations", "replay-webhook", value])
    assert result.exit_code != 0 and "is not a valid integer" in result.output
    assert "Traceback" not in result.output
