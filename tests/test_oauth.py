"""OAuth2: the authorize/callback/revoke routes, token refresh and its lock, the 401 retry.

Everything runs against `tests.helpers.oauth.AuthServer`, a real HTTP server on
127.0.0.1 that checks PKCE, rotates refresh tokens and counts refreshes.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import sqlalchemy as sa
from flask import Response

from flask_integrations import Integration, IntegrationRequest, IntegrationsError, signals
from flask_integrations.clock import utcnow
from flask_integrations.oauth import flow, locks, tokens
from tests.conftest import reset_tables
from tests.helpers.app import db, make_app
from tests.helpers.oauth import CLIENT_ID, CLIENT_SECRET, PROVIDERS, create_connect, s256

PREFIX = "/integrations"


@pytest.fixture
def auth(auth_server):
    auth_server.reset()
    return auth_server


@pytest.fixture
def app(app_factory, auth):
    return app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_RETRY_AFTER_MAX=0.01)


@pytest.fixture
def integration_id(app, auth):
    return create_connect(app, auth)


def stored(app, integration_id):
    """(decrypted credentials, raw column) read fresh from the database."""
    with app.app_context():
        table = app.extensions["integrations"].state_for(app).tables["integrations"]
        with db.engine.connect() as connection:
            raw = connection.execute(
                sa.select(table.c.credentials).where(table.c.id == integration_id)
            ).scalar()
        credentials = db.session.get(Integration, integration_id).credentials_dict()
        db.session.remove()
    return credentials, raw


def start(client, integration_id):
    response = client.get(f"{PREFIX}/{integration_id}/oauth/authorize")
    assert response.status_code == 302, response.get_data(as_text=True)
    return response.headers["Location"]


def consent(location, decision="allow"):
    """The user's answer on the provider's consent page: the callback path and query."""
    answer = httpx.get(location + f"&decision={decision}")
    assert answer.status_code == 302
    callback = urlparse(answer.headers["Location"])
    return f"{callback.path}?{callback.query}"


def connect(client, integration_id):
    return client.get(consent(start(client, integration_id)))


# -- authorize --------------------------------------------------------------------------------------


def test_authorize_redirects_with_state_and_s256_challenge(app, auth, integration_id):
    location = start(app.test_client(), integration_id)
    assert location.startswith(f"{auth.url}/authorize?")
    query = {k: v[-1] for k, v in parse_qs(urlparse(location).query).items()}
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 32
    assert len(query["code_challenge"]) == 43 and "=" not in query["code_challenge"]
    assert query["redirect_uri"] == f"http://localhost{PREFIX}/oauth/callback"


def test_pkce_helpers():
    verifier = flow.code_verifier()
    assert 43 <= len(verifier) <= 128 and verifier != flow.code_verifier()
    assert flow.code_challenge(verifier) == s256(verifier)
    # RFC 7636, appendix B
    assert (
        flow.code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_configured_redirect_uri_is_used(app_factory, auth):
    app = app_factory(
        INTEGRATIONS_PROVIDERS=PROVIDERS,
        INTEGRATIONS_OAUTH={"redirect_uri": "https://app.example.com/integrations/oauth/callback"},
    )
    location = start(app.test_client(), create_connect(app, auth))
    assert parse_qs(urlparse(location).query)["redirect_uri"] == [
        "https://app.example.com/integrations/oauth/callback"
    ]


def test_unknown_or_non_oauth_integration_is_404(app, auth):
    with app.app_context():
        loose_id = app.extensions["integrations"].create("loose", "Loose", {"k": "v"}).id
    client = app.test_client()
    assert client.get(f"{PREFIX}/999999/oauth/authorize").status_code == 404
    assert client.get(f"{PREFIX}/{2**70}/oauth/authorize").status_code == 404
    assert client.get(f"{PREFIX}/{loose_id}/oauth/authorize").status_code == 404


def test_blueprint_can_be_turned_off(app_factory, auth):
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_BLUEPRINTS={"oauth": False})
    assert app.test_client().get(f"{PREFIX}/1/oauth/authorize").status_code == 404
    assert app.test_client().get(f"{PREFIX}/oauth/callback").status_code == 404


# -- callback ---------------------------------------------------------------------------------------


def test_full_flow_stores_tokens_encrypted_and_signals(app, auth, integration_id):
    completed = []
    signals.oauth_completed.connect(lambda sender, integration: completed.append(integration.id), weak=False)
    try:
        response = connect(app.test_client(), integration_id)
    finally:
        signals.oauth_completed.receivers.clear()
    assert response.status_code == 302 and response.headers["Location"] == "/"
    credentials, raw = stored(app, integration_id)
    assert credentials["access_token"].startswith("at-") and credentials["refresh_token"].startswith("rt-")
    assert isinstance(credentials["token_expires_at"], int)
    assert abs(credentials["token_expires_at"] - (time.time() + 3600)) < 10
    assert credentials["client_secret"] == CLIENT_SECRET
    for secret in (credentials["access_token"], credentials["refresh_token"], CLIENT_SECRET):
        assert secret not in raw
    assert completed == [integration_id]
    assert auth.count("exchange") == 1 and s256(auth.verifiers[0])  # the server checked the verifier


def test_success_redirect_is_configurable(app_factory, auth):
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_OAUTH={"success_redirect": "/done"})
    assert connect(app.test_client(), create_connect(app, auth)).headers["Location"] == "/done"


def test_replayed_state_is_400_and_changes_nothing(app, auth, integration_id):
    client = app.test_client()
    callback = consent(start(client, integration_id))
    assert client.get(callback).status_code == 302
    before = stored(app, integration_id)
    again = client.get(callback)
    assert again.status_code == 400
    assert stored(app, integration_id) == before
    assert auth.count("exchange") == 1


def test_replay_with_an_old_copy_of_the_session_is_400(app, auth, integration_id):
    """The single-use ticket is on the server: restoring the cookie does not bring the state back."""
    client = app.test_client()
    callback = consent(start(client, integration_id))
    cookie = client.get_cookie("session").value
    assert client.get(callback).status_code == 302
    client.set_cookie("session", cookie)
    assert client.get(callback).status_code == 400
    assert auth.count("exchange") == 1


def test_expired_state_is_400(app, auth, integration_id, monkeypatch):
    client = app.test_client()
    callback = consent(start(client, integration_id))
    monkeypatch.setattr(tokens, "clock", lambda: time.time() + 601)
    response = client.get(callback)
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)
    assert "access_token" not in stored(app, integration_id)[0]
    assert auth.count("exchange") == 0


@pytest.mark.slow
def test_expired_ticket_is_400_even_with_a_valid_session(app_factory, auth):
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_OAUTH={"state_ttl": 1})
    integration_id = create_connect(app, auth)
    client = app.test_client()
    callback = consent(start(client, integration_id))
    time.sleep(1.2)
    assert client.get(callback).status_code == 400
    assert auth.count("exchange") == 0


@pytest.mark.parametrize("mangle", ["tamper", "missing", "empty"])
def test_tampered_or_missing_state_is_400(app, auth, integration_id, mangle):
    client = app.test_client()
    callback = consent(start(client, integration_id))
    path, query = callback.split("?")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    if mangle == "tamper":
        params["state"] = params["state"][:-2] + ("AA" if not params["state"].endswith("AA") else "BB")
    elif mangle == "missing":
        del params["state"]
    else:
        params["state"] = ""
    response = client.get(path, query_string=params)
    assert response.status_code == 400
    assert params.get("code", "") not in response.get_data(as_text=True) or not params.get("code")
    assert auth.count("exchange") == 0
    assert client.get(callback).status_code == 302  # the real state still works


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def two_web_processes(request, app_factory, auth):
    """Two apps on one database (and one Redis in Redis mode), as two web processes would be."""
    config = {"INTEGRATIONS_PROVIDERS": PROVIDERS}
    if request.param == "redis":
        config.update(
            INTEGRATIONS_REDIS_URL=request.getfixturevalue("redis_url"),
            INTEGRATIONS_REDIS_PREFIX=f"test-{uuid.uuid4().hex[:8]}:",
        )
    return app_factory(**config), app_factory(**config)


def test_state_works_across_web_processes_and_stays_single_use(two_web_processes, auth):
    first, second = two_web_processes
    integration_id = create_connect(first, auth)
    browser = first.test_client()
    callback = consent(start(browser, integration_id))
    cookie = browser.get_cookie("session").value
    elsewhere = second.test_client()  # the callback lands on the other process
    elsewhere.set_cookie("session", cookie)
    assert elsewhere.get(callback).status_code == 302
    assert browser.get(callback).status_code == 400  # its cookie still holds the state: the ticket is gone
    assert auth.count("exchange") == 1


def test_concurrent_callbacks_with_one_state_exchange_once(app, auth, integration_id):
    browser = app.test_client()
    callback = consent(start(browser, integration_id))
    cookie = browser.get_cookie("session").value
    barrier, statuses = threading.Barrier(6), []

    def replay():
        client = app.test_client()
        client.set_cookie("session", cookie)
        barrier.wait(10)
        statuses.append(client.get(callback).status_code)

    threads = [threading.Thread(target=replay) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [302] + [400] * 5
    assert auth.count("exchange") == 1


def test_state_from_another_browser_session_is_400(app, auth, integration_id):
    victim, attacker = app.test_client(), app.test_client()
    callback = consent(start(victim, integration_id))
    assert attacker.get(callback).status_code == 400
    assert "access_token" not in stored(app, integration_id)[0]
    assert victim.get(callback).status_code == 302  # untouched for its own session


def test_provider_error_is_400_with_a_clear_message(app, auth, integration_id):
    client = app.test_client()
    response = client.get(consent(start(client, integration_id), decision="deny"))
    assert response.status_code == 400
    assert "did not authorize the connection (access_denied)" in response.get_data(as_text=True)
    assert "access_token" not in stored(app, integration_id)[0]


def test_failed_exchange_is_502_stores_nothing_and_shows_no_secret(app, auth, integration_id):
    client = app.test_client()
    callback = consent(start(client, integration_id))
    auth.codes.clear()  # the server no longer knows the code: invalid_grant
    response = client.get(callback)
    page = response.get_data(as_text=True)
    assert response.status_code == 502
    assert "HTTPStatusError, HTTP 400" in page and "nothing was stored" in page
    code = parse_qs(urlparse(callback).query)["code"][0]
    assert code not in page and CLIENT_SECRET not in page
    assert "access_token" not in stored(app, integration_id)[0]


def test_exchange_answer_without_access_token_is_502(app, auth, integration_id, monkeypatch):
    from tests.helpers.oauth import Connect

    monkeypatch.setattr(Connect, "exchange_code", lambda self, *args: {"token_type": "Bearer"})
    response = connect(app.test_client(), integration_id)
    assert response.status_code == 502 and "no access token" in response.get_data(as_text=True)
    assert "access_token" not in stored(app, integration_id)[0]


# -- access -----------------------------------------------------------------------------------------


def test_403_outside_debug_and_testing_without_a_rule(app, auth, integration_id):
    app.testing = False
    client = app.test_client()
    assert client.get(f"{PREFIX}/{integration_id}/oauth/authorize").status_code == 403
    assert client.post(f"{PREFIX}/{integration_id}/oauth/revoke").status_code == 403


def test_oauth_auth_receives_the_integration(app_factory, auth):
    seen = []

    def rule(request, integration):
        seen.append(integration.id)
        return integration.name == "Connect"

    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_OAUTH_AUTH=rule)
    app.testing = False
    integration_id = create_connect(app, auth)
    assert app.test_client().get(f"{PREFIX}/{integration_id}/oauth/authorize").status_code == 302
    assert seen == [integration_id]


@pytest.mark.parametrize("answer", [False, None])
def test_oauth_auth_refusing_is_403(app_factory, auth, answer):
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_OAUTH_AUTH=lambda r, i: answer)
    integration_id = create_connect(app, auth)
    client = app.test_client()
    assert client.get(f"{PREFIX}/{integration_id}/oauth/authorize").status_code == 403
    assert client.post(f"{PREFIX}/{integration_id}/oauth/revoke").status_code == 403


def test_oauth_auth_response_is_sent_as_is(app_factory, auth):
    login = Response("log in first", status=302, headers={"Location": "/login"})
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_OAUTH_AUTH=lambda r, i: login)
    response = app.test_client().get(f"{PREFIX}/{create_connect(app, auth)}/oauth/authorize")
    assert response.status_code == 302 and response.headers["Location"] == "/login"


def test_dashboard_rule_applies_without_an_oauth_rule(app_factory, auth):
    calls = []
    app = app_factory(
        INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_DASHBOARD_AUTH=lambda r: calls.append(1) or False
    )
    response = app.test_client().get(f"{PREFIX}/{create_connect(app, auth)}/oauth/authorize")
    assert response.status_code == 403 and calls == [1]


# -- revoke -----------------------------------------------------------------------------------------


def csrf(client, app):
    with client.session_transaction() as session:
        session.setdefault("_integrations_csrf", "csrf-" + uuid.uuid4().hex)
        return session["_integrations_csrf"]


def test_revoke_without_csrf_is_400_and_changes_nothing(app, auth, integration_id):
    client = app.test_client()
    connect(client, integration_id)
    before = stored(app, integration_id)
    assert client.post(f"{PREFIX}/{integration_id}/oauth/revoke").status_code == 400
    csrf(client, app)
    response = client.post(f"{PREFIX}/{integration_id}/oauth/revoke", data={"csrf_token": "wrong"})
    assert response.status_code == 400
    assert stored(app, integration_id) == before and auth.count("revoke") == 0


def test_revoke_calls_the_provider_removes_tokens_and_signals(app, auth, integration_id):
    client = app.test_client()
    connect(client, integration_id)
    refresh = stored(app, integration_id)[0]["refresh_token"]
    revoked = []
    signals.oauth_revoked.connect(lambda sender, integration: revoked.append(integration.id), weak=False)
    try:
        response = client.post(
            f"{PREFIX}/{integration_id}/oauth/revoke",
            data={"csrf_token": csrf(client, app), "next": "/settings?tab=apps"},
        )
    finally:
        signals.oauth_revoked.receivers.clear()
    assert response.status_code == 303 and response.headers["Location"] == "/settings?tab=apps"
    assert auth.revoked == [refresh]
    credentials, _ = stored(app, integration_id)
    assert credentials == {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert revoked == [integration_id]


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:x"]
)
def test_revoke_ignores_an_unsafe_next(app, auth, integration_id, target):
    client = app.test_client()
    response = client.post(
        f"{PREFIX}/{integration_id}/oauth/revoke", data={"csrf_token": csrf(client, app), "next": target}
    )
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_revoke_failing_upstream_is_502_and_keeps_tokens(app, auth, integration_id, monkeypatch):
    from tests.helpers.oauth import Connect

    client = app.test_client()
    connect(client, integration_id)
    before = stored(app, integration_id)

    def fail(self, integration):
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(Connect, "revoke_token", fail)
    response = client.post(f"{PREFIX}/{integration_id}/oauth/revoke", data={"csrf_token": csrf(client, app)})
    assert response.status_code == 502
    assert stored(app, integration_id) == before


# -- tokens -----------------------------------------------------------------------------------------


def with_tokens(app, auth, access_ttl):
    answer = auth.tokens(access_ttl)
    return create_connect(
        app,
        auth,
        access_token=answer["access_token"],
        refresh_token=answer["refresh_token"],
        token_expires_at=int(time.time()) + access_ttl,
    )


def test_token_expires_soon(app, auth):
    fresh, soon = with_tokens(app, auth, 3600), with_tokens(app, auth, 30)
    gone = create_connect(app, auth, access_token="x", token_expires_at=int(time.time()) - 5)
    unknown = create_connect(app, auth, access_token="x")
    iso = create_connect(app, auth, access_token="x", token_expires_at="2001-01-01T00:00:00Z")
    with app.app_context():
        get = app.extensions["integrations"].get
        assert get(fresh).token_expires_soon() is False
        assert get(soon).token_expires_soon() is True  # refresh_threshold is 60
        assert get(gone).token_expires_soon() is True
        assert get(unknown).token_expires_soon() is False
        assert get(iso).token_expires_soon() is True


def test_access_token_returns_the_token_without_refreshing_a_fresh_one(app, auth):
    integration_id = with_tokens(app, auth, 3600)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        assert integration.access_token() == integration.credentials_dict()["access_token"]
        assert integration.refresh_token_if_needed() is False
    assert auth.count("refresh") == 0


def test_access_token_refreshes_an_expiring_token(app, auth):
    integration_id = with_tokens(app, auth, 10)
    old = stored(app, integration_id)[0]
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        token = integration.access_token()
        assert token != old["access_token"] and token in auth.access
        assert integration.credentials_dict()["refresh_token"] != old["refresh_token"]  # rotated
        assert integration.refresh_token_if_needed() is False
        assert not db.session.dirty
    credentials, raw = stored(app, integration_id)
    assert credentials["access_token"] == token and token not in raw
    assert credentials["token_expires_at"] > time.time() + 3000
    assert auth.count("refresh") == 1


def test_refresh_token_if_needed_and_the_kept_refresh_token(app, auth):
    auth.rotate = False  # the answer has no refresh_token: the old one is kept
    integration_id = with_tokens(app, auth, 5)
    old = stored(app, integration_id)[0]
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        assert integration.refresh_token_if_needed() is True
    credentials = stored(app, integration_id)[0]
    assert credentials["refresh_token"] == old["refresh_token"]
    assert credentials["access_token"] != old["access_token"]


def test_merge_tokens_reads_expires_at_and_expires_in():
    base = {"client_id": "c", "refresh_token": "old", "token_expires_at": 1}
    merged = tokens.merge_tokens(base, {"access_token": "a", "expires_at": 2000000000}, 1)
    assert merged == {
        "client_id": "c",
        "access_token": "a",
        "refresh_token": "old",
        "token_expires_at": 2000000000,
    }
    merged = tokens.merge_tokens(base, {"access_token": "a", "refresh_token": "new", "expires_in": "60"}, 1)
    assert merged["refresh_token"] == "new" and abs(merged["token_expires_at"] - (time.time() + 60)) < 2
    assert tokens.merge_tokens(base, {"access_token": "a"}, 1)["token_expires_at"] is None


def test_refresh_commits_on_its_own_connection(app_factory, auth, database_url):
    """The new tokens survive the caller's rollback (a rotated refresh token is never lost)."""
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS)
    integration_id = with_tokens(app, auth, 5)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        if database_url.startswith("postgresql"):  # the caller's transaction holds writes of its own
            db.session.add(Integration(provider="loose", name="uncommitted", credentials={"k": "v"}))
            db.session.flush()
        token = integration.access_token()
        db.session.rollback()
        assert integration.credentials_dict()["access_token"] == token  # reloaded from the database
        db.session.remove()
    assert stored(app, integration_id)[0]["access_token"] == token


def test_refresh_refused_while_sqlite_holds_uncommitted_writes(app, auth, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's single write lock only")
    integration_id = with_tokens(app, auth, 5)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        db.session.add(Integration(provider="loose", name="uncommitted", credentials={"k": "v"}))
        db.session.flush()
        with pytest.raises(IntegrationsError, match="commit .or roll back. the session first"):
            integration.access_token()
        db.session.rollback()
    assert auth.count("refresh") == 0


@pytest.mark.parametrize(
    "answer", [(400, {"error": "invalid_grant"}), (500, {"error": "oops"}), (200, {"token_type": "Bearer"})]
)
def test_failed_refresh_keeps_the_credentials_and_raises_clearly(app, auth, answer):
    integration_id = with_tokens(app, auth, 5)
    before = stored(app, integration_id)
    auth.refresh_answers.append(answer)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        with pytest.raises(IntegrationsError) as info:
            integration.access_token()
        message = str(info.value)
        assert f"integration {integration_id}" in message and "unchanged" in message
        for secret in before[0]["access_token"], before[0]["refresh_token"], CLIENT_SECRET:
            assert secret not in message
        assert integration.credentials_dict() == before[0]
    assert stored(app, integration_id) == before


def _hold_refresh_lock(database_url: str, integration_id: int, held) -> None:
    app = make_app(database_url, INTEGRATIONS_PROVIDERS=PROVIDERS)
    state = app.extensions["integrations"].state_for(app)
    with app.app_context(), locks.refresh_lock(state, integration_id):
        held.set()
        time.sleep(60)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", [pytest.param("mariadb", marks=pytest.mark.mysql)], indirect=True)
def test_mysql_refresh_lock_dies_with_its_process(app_factory, auth, database_url):
    oauth = {"refresh_lock_wait": 1, "refresh_lock_ttl": 600}
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_OAUTH=oauth)
    integration_id = with_tokens(app, auth, 5)
    state = app.extensions["integrations"].state_for(app)
    spawn = multiprocessing.get_context("spawn")
    held = spawn.Event()
    holder = spawn.Process(target=_hold_refresh_lock, args=(database_url, integration_id, held))
    holder.start()
    try:
        assert held.wait(30)
        waiting = pytest.raises(IntegrationsError, match="refresh lock")
        with app.app_context(), waiting, locks.refresh_lock(state, integration_id):
            pass
    finally:
        holder.kill()
        holder.join(10)
    with app.app_context():
        started = time.monotonic()
        with locks.refresh_lock(state, integration_id):  # GET_LOCK: freed with the connection
            assert time.monotonic() - started < 0.5
        table = state.tables["idempotency_keys"]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(table)) == 0  # no lock row


@pytest.mark.slow
def test_lock_wait_exceeded_is_a_clear_error(app_factory, auth, database_url):
    if database_url.startswith("postgresql"):
        pytest.skip("embedded PostgreSQL locks the row; covered by the race test's wait")
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_OAUTH={"refresh_lock_wait": 1})
    integration_id = with_tokens(app, auth, 5)
    with app.app_context():
        state = app.extensions["integrations"].state_for(app)
        with locks.refresh_lock(state, integration_id):  # another process holds it
            integration = app.extensions["integrations"].get(integration_id)
            started = time.monotonic()
            with pytest.raises(IntegrationsError, match=f"refresh lock of integration {integration_id}"):
                integration.access_token()
            assert 0.9 < time.monotonic() - started < 3
    assert auth.count("refresh") == 0


def test_a_stale_lock_row_is_taken_over(app_factory, auth, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("embedded PostgreSQL locks the integration's row, MySQL takes a GET_LOCK: no lock row")
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_OAUTH={"refresh_lock_ttl": 5})
    integration_id = with_tokens(app, auth, 5)
    with app.app_context():
        table = app.extensions["integrations"].state_for(app).tables["idempotency_keys"]
        old = utcnow() - timedelta(seconds=60)
        with db.engine.begin() as connection:  # left by a process that died holding the lock
            connection.execute(
                sa.insert(table).values(
                    integration_id=integration_id, key=locks.REFRESH_LOCK_KEY, created_at=old, updated_at=old
                )
            )
        assert app.extensions["integrations"].get(integration_id).refresh_token_if_needed() is True
        with db.engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0


def test_non_oauth_integration_has_no_access_token(app):
    with app.app_context():
        loose = app.extensions["integrations"].create("loose", "Loose", {"k": "v"})
        with pytest.raises(IntegrationsError, match="not an OAuth2 provider"):
            loose.access_token()


def test_in_memory_sqlite_defers_the_write_to_after_the_transaction(auth):
    app = make_app("sqlite://", INTEGRATIONS_PROVIDERS=PROVIDERS)
    with app.app_context():
        db.create_all()
    integration_id = with_tokens(app, auth, 5)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        token = integration.access_token()
        db.session.rollback()
        assert integration.credentials_dict()["access_token"] == token
        db.session.remove()
    assert stored(app, integration_id)[0]["access_token"] == token


# -- URL calls --------------------------------------------------------------------------------------


def rows(integration_id):
    db.session.expire_all()
    query = sa.select(IntegrationRequest).where(IntegrationRequest.integration_id == integration_id)
    return db.session.scalars(query.order_by(IntegrationRequest.id)).all()


def test_url_calls_carry_the_bearer_token(app, auth):
    integration_id = with_tokens(app, auth, 3600)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        assert integration.at("me").get(f"{auth.url}/api/me") == {"me": "acme", "token_seen": True}
        [row] = rows(integration_id)
        assert row.status_code == 200
    assert auth.count("refresh") == 0


def test_an_expiring_token_is_refreshed_before_the_call(app, auth):
    integration_id = with_tokens(app, auth, 10)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        assert integration.at("me").get(f"{auth.url}/api/me")["me"] == "acme"
    assert auth.count("refresh") == 1 and auth.count("api") == 1


def test_401_refreshes_once_and_retries_once(app, auth):
    integration_id = with_tokens(app, auth, 3600)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        old = integration.credentials_dict()["access_token"]
        auth.access.pop(old)  # revoked upstream before its expiry
        assert integration.at("me").with_attempts(1).get(f"{auth.url}/api/me")["me"] == "acme"
        first, second = rows(integration_id)
        assert (first.status_code, first.failure_class, second.status_code) == (401, "client", 200)
        assert second.retry_of == first.id
        assert integration.credentials_dict()["access_token"] != old
        assert old not in (first.request_data or "") + (first.response_data or "")
    assert auth.count("refresh") == 1 and auth.count("api") == 2


def test_a_second_401_is_raised_without_another_refresh(app, auth, monkeypatch):
    from flask_integrations import IntegrationHTTPError

    integration_id = with_tokens(app, auth, 3600)
    monkeypatch.setattr(auth, "access", _Forgetful())
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        with pytest.raises(IntegrationHTTPError) as info:
            integration.at("me").get(f"{auth.url}/api/me")
        assert info.value.status_code == 401
        assert len(rows(integration_id)) == 2
    assert auth.count("refresh") == 1 and auth.count("api") == 2


class _Forgetful(dict):
    """An access-token table that never keeps a token: every API call is a 401."""

    def __setitem__(self, key, value):
        return None


def test_401_after_another_process_refreshed_retries_without_refreshing(app, auth):
    integration_id = with_tokens(app, auth, 3600)
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        old = integration.credentials_dict()["access_token"]
        auth.access.pop(old)
        newer = auth.tokens()
        with app.app_context():  # "another process": its own session and commit
            app.extensions["integrations"].get(integration_id).update(
                credentials={"access_token": newer["access_token"], "refresh_token": newer["refresh_token"]}
            )
            db.session.remove()
        assert integration.credentials_dict()["access_token"] == old  # this object is stale
        assert integration.at("me").get(f"{auth.url}/api/me")["me"] == "acme"
        assert integration.credentials_dict()["access_token"] == newer["access_token"]
    assert auth.count("refresh") == 0 and auth.count("api") == 2


def test_prepare_request_may_override_the_bearer(app, auth, monkeypatch):
    from tests.helpers.oauth import Connect

    integration_id = with_tokens(app, auth, 3600)
    monkeypatch.setattr(
        Connect,
        "prepare_request",
        lambda self, i, request: request.headers.update({"Authorization": "Basic x"}),
    )
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        with pytest.raises(IntegrationsError):
            integration.at("me").get(f"{auth.url}/api/me")
        assert len(rows(integration_id)) == 1  # a 401 to another credential: no refresh, no retry
    assert auth.count("refresh") == 0


# -- one refresh across processes -------------------------------------------------------------------


def _race(database_url, redis_url, integration_id, barrier, results):
    config = {"INTEGRATIONS_PROVIDERS": PROVIDERS}
    if redis_url:
        config.update(INTEGRATIONS_REDIS_URL=redis_url[0], INTEGRATIONS_REDIS_PREFIX=redis_url[1])
    app = make_app(database_url, **config)
    with app.app_context():
        integration = db.session.get(Integration, integration_id)
        integration.credentials_dict()
        barrier.wait(60)
        try:
            results.put(integration.access_token())
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            results.put(f"error: {exc}")
        db.session.remove()


def race(database_url, auth, redis=None):
    auth.refresh_delay = 0.3  # the first refresh is still running when the others arrive
    app = make_app(database_url, INTEGRATIONS_PROVIDERS=PROVIDERS)
    with app.app_context():
        reset_tables()
        db.session.remove()
    integration_id = with_tokens(app, auth, 5)
    spawn = multiprocessing.get_context("spawn")
    results, barrier = spawn.Queue(), spawn.Barrier(8)
    workers = [
        spawn.Process(target=_race, args=(database_url, redis, integration_id, barrier, results))
        for _ in range(8)
    ]
    for worker in workers:
        worker.start()
    tokens_seen = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert auth.count("refresh") == 1
    assert len(set(tokens_seen)) == 1 and tokens_seen[0] in auth.access, tokens_seen
    assert stored(app, integration_id)[0]["access_token"] == tokens_seen[0]


@pytest.mark.slow
@pytest.mark.redis
def test_eight_processes_refresh_once_with_redis(server_database_url, redis_url, auth):
    race(server_database_url, auth, redis=(redis_url, f"test-{uuid.uuid4().hex[:8]}:"))


@pytest.mark.slow
def test_eight_processes_refresh_once_embedded(server_database_url, auth):
    race(server_database_url, auth)


@pytest.mark.slow
def test_eight_processes_refresh_once_embedded_sqlite_file(tmp_path, auth):
    race(f"sqlite:///{tmp_path / 'race.db'}", auth)


# -- bad input (regressions found by tests/reliability/test_bad_input.py) ---------------------------


def test_a_non_ascii_csrf_token_is_400_not_500(app, auth, integration_id):
    client = app.test_client()
    csrf(client, app)
    response = client.post(f"{PREFIX}/{integration_id}/oauth/revoke", data={"csrf_token": "jeton-é"})
    assert response.status_code == 400


def test_undecryptable_credentials_are_a_clear_409_page_that_changes_nothing(app, auth, integration_id):
    from cryptography.fernet import Fernet

    client = app.test_client()
    callback = consent(start(client, integration_id))
    with app.app_context():
        table = app.extensions["integrations"].state_for(app).tables["integrations"]
        foreign = Fernet(Fernet.generate_key()).encrypt(b'{"client_id": "x"}').decode()
        db.session.execute(sa.update(table).where(table.c.id == integration_id).values(credentials=foreign))
        db.session.commit()
        db.session.remove()
    for response in (
        client.get(f"{PREFIX}/{integration_id}/oauth/authorize"),
        client.get(callback),
        client.post(f"{PREFIX}/{integration_id}/oauth/revoke", data={"csrf_token": csrf(client, app)}),
    ):
        page = response.get_data(as_text=True)
        assert response.status_code == 409, page
        assert f"integration {integration_id} cannot be decrypted" in page and "Nothing was changed" in page
    assert auth.count("exchange") == 0 and auth.count("revoke") == 0
