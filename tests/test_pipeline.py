"""The outbound pipeline end to end against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import re
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from flask_integrations import (
    CircuitOpenError,
    IdempotencyConflict,
    IntegrationHTTPError,
    IntegrationRequest,
    IntegrationsError,
    Provider,
    ProviderNotRegistered,
    RateLimitExceeded,
    RedactsRequestData,
    RetryableError,
    SupportsIdempotency,
    signals,
)
from flask_integrations.pipeline.context import RequestContext
from tests.conftest import reset_tables
from tests.helpers.app import db, make_app, run_docs_example
from tests.helpers.processes import run_to_completion

FAST_RETRIES = {"INTEGRATIONS_RETRY_AFTER_MAX": 0.01}


@dataclasses.dataclass
class ApiCredentials:
    token: str


def api_provider(base_url: str, **attrs):
    class Api(Provider, RedactsRequestData):
        credential_class = ApiCredentials
        sensitive_request_fields = ("card.number", "items.*.ssn")
        sensitive_response_fields = ("body",)

        def prepare_request(self, integration, request):
            request.headers["Authorization"] = f"Bearer {integration.credentials.token}"

    Api.base_url = base_url
    for name, value in attrs.items():
        setattr(Api, name, value)
    return Api


@pytest.fixture
def app(app_factory, upstream):
    app = app_factory(**FAST_RETRIES)
    app.extensions["integrations"].register("api", api_provider(upstream.url))
    return app


@pytest.fixture
def api(app, ctx):
    return app.extensions["integrations"].create("api", "API", {"token": "tok-SECRET-42"})


def rows(integration_id=None):
    query = sa.select(IntegrationRequest).order_by(IntegrationRequest.id)
    if integration_id is not None:
        query = query.where(IntegrationRequest.integration_id == integration_id)
    db.session.expire_all()
    return db.session.scalars(query).all()


def test_get_returns_json_and_records_one_row(api, upstream):
    result = api.at("/items").with_data({"page": 2}).get("/json")
    assert result["query"] == {"page": "2"}
    assert result["headers"]["authorization"] == "Bearer tok-SECRET-42"
    (row,) = rows()
    assert (row.endpoint, row.method, row.status_code, row.failure_class) == ("/items", "GET", 200, None)
    assert row.provider_request_id == "req-1"
    assert row.duration_ms is not None and row.duration_ms >= 0
    assert row.retry_of is None and row.cache_hits == 0
    assert "tok-SECRET-42" not in (row.response_data or "")


def test_new_credentials_are_scrubbed_from_the_next_rows(api, upstream):
    """The credential values kept for scrubbing follow the integration's stored credentials."""
    api.at("/items").with_data({"note": "tok-SECRET-42"}).get("/json")
    api.update(credentials={"token": "tok-ROTATED-77"})
    api.at("/items").with_data({"note": "tok-ROTATED-77"}).get("/json")
    first, second = rows()
    for row, secret in ((first, "tok-SECRET-42"), (second, "tok-ROTATED-77")):
        assert secret not in row.request_data + row.response_data
        assert json.loads(row.request_data) == {"note": "[REDACTED]"}


def test_row_timestamps_are_stored_as_sqlalchemy_stores_them(api, upstream):
    """Rows written by the fast path compare and sort like rows written through the ORM."""
    api.at("/items").get("/json")
    table = IntegrationRequest.__table__
    (created_at, updated_at) = db.session.execute(
        sa.select(sa.cast(table.c.created_at, sa.String), sa.cast(table.c.updated_at, sa.String))
    ).one()
    if db.engine.dialect.name == "sqlite":
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", created_at), created_at
    assert created_at == updated_at
    (row,) = rows()
    assert row.created_at.tzinfo is not None
    since = row.created_at - timedelta(seconds=1)
    assert db.session.scalar(sa.select(sa.func.count()).where(table.c.created_at >= since)) == 1


def test_post_sends_json_and_form(api, upstream):
    assert api.at("create").with_data({"a": 1}).post("/json")["body"] == '{"a":1}'
    assert api.at("form").with_form({"b": "2"}).post(upstream.url + "/json")["body"] == "b=2"


def test_empty_and_text_bodies(api):
    assert api.at("empty").get("/empty") is None
    assert api.at("text").get("/text") == "plain text"


def test_raw_response(api):
    response = api.at("raw").raw_response().get("/json")
    assert isinstance(response, httpx.Response) and response.headers["x-request-id"] == "req-1"


def test_get_is_retried_on_5xx_and_rows_point_at_the_first(api, upstream):
    upstream.script("/flaky", [(500, {"e": 1}), (503, {"e": 2}), (200, {"ok": True})])
    assert api.at("flaky").get("/flaky") == {"ok": True}
    first, second, third = rows()
    assert [r.status_code for r in (first, second, third)] == [500, 503, 200]
    assert (first.retry_of, second.retry_of, third.retry_of) == (None, first.id, first.id)
    assert first.failure_class == "upstream" and third.failure_class is None


def test_spent_retries_raise_the_http_error(api, upstream):
    with pytest.raises(IntegrationHTTPError) as info:
        api.at("down").get("/status/503")
    assert info.value.status_code == 503 and info.value.response.status_code == 503
    assert upstream.hits("/status/503") == 3
    db.session.refresh(api)
    assert api.consecutive_failures == 3


def test_post_is_not_retried_by_default(api, upstream):
    with pytest.raises(IntegrationHTTPError):
        api.at("create").post("/status/500")
    assert upstream.hits("/status/500") == 1


@pytest.mark.parametrize("status", [400, 404, 501])
def test_client_errors_are_not_retried_nor_counted(api, upstream, status):
    with pytest.raises(IntegrationHTTPError) as info:
        api.at("bad").with_attempts(5).get(f"/status/{status}")
    assert info.value.status_code == status
    assert upstream.hits(f"/status/{status}") == 1
    assert rows()[0].failure_class == "client"
    db.session.refresh(api)
    assert api.consecutive_failures == 0


def test_429_is_retried_and_classified_throttle(api, upstream):
    upstream.script("/limited", [(429, {"e": 1}, {"Retry-After": "1"}), (200, {"ok": 1})])
    assert api.at("limited").get("/limited") == {"ok": 1}
    assert [r.failure_class for r in rows()] == ["throttle", None]


def test_dropped_connection_is_upstream_and_retried(api, upstream):
    upstream.script("/drop-once", ["drop", (200, {"ok": 1})])
    assert api.at("drop").get("/drop-once") == {"ok": 1}
    failed = rows()[0]
    assert failed.failure_class == "upstream" and failed.status_code is None and failed.error


def test_timeout_is_upstream(api):
    with pytest.raises(httpx.TimeoutException):
        api.at("slow").with_timeout(0.1).with_attempts(1).get("/slow?delay=0.5")
    assert rows()[0].failure_class == "upstream"


def test_callable_target_with_context(api, app):
    seen = []

    def create_customer(ctx):
        seen.append(
            (ctx.attempt, ctx.idempotency_key, app.extensions["integrations"].current_context() is ctx)
        )
        if ctx.attempt == 1:
            raise RetryableError("try again", retry_after=0)
        ctx.report(provider_request_id="cus_req_9")
        return {"id": "cus_1"}

    assert api.at("customers.create").with_attempts(2).post(create_customer) == {"id": "cus_1"}
    assert seen == [(1, None, True), (2, None, True)]
    assert app.extensions["integrations"].current_context() is None
    assert rows()[-1].provider_request_id == "cus_req_9"
    assert rows()[-1].method == "POST"


def test_callable_without_parameters_and_sdk_operation_name(api):
    assert api.at("ping").execute("customers.list", lambda: [1, 2]) == [1, 2]
    assert rows()[0].method == "customers.list"


def test_callable_returning_a_response_is_judged_by_status(api, upstream):
    with pytest.raises(IntegrationHTTPError) as info:
        api.at("sdk").with_attempts(1).get(lambda: httpx.get(upstream.url + "/status/500"))
    assert info.value.status_code == 500
    assert rows()[0].failure_class == "upstream"


@dataclasses.dataclass
class Echo:
    method: str
    path: str
    query: dict
    body: str
    headers: dict


def test_returning_builds_the_class_live_and_cached(api, upstream):
    first = api.at("echo").returning(Echo).with_cache(60).get("/json")
    second = api.at("echo").returning(Echo).with_cache(60).get("/json")
    assert isinstance(first, Echo) and isinstance(second, Echo) and second.path == "/json"
    assert upstream.hits("/json") == 1


def test_cache_hits_are_counted_on_the_row_that_produced_the_value(api, app, upstream):
    from flask_integrations.pipeline.call import flush_cache_hits

    for _ in range(3):
        api.at("cached").with_cache(60).get("/json")
    flush_cache_hits(app.extensions["integrations"].state_for(app))
    (row,) = rows()
    assert (row.cache_hits, row.stale_hits) == (2, 0)


def test_cache_forget_and_stale(api, upstream):
    upstream.script("/fx", [(200, {"rate": 1}), (200, {"rate": 2}), (503, {}), (503, {}), (503, {})])
    assert api.at("fx").with_cache(60, serve_stale=True).get("/fx") == {"rate": 1}
    assert api.at("fx").with_cache(60, serve_stale=True).get("/fx") == {"rate": 1}
    api.forget_cache("fx")
    assert api.at("fx").with_cache(60, serve_stale=True).get("/fx") == {"rate": 2}
    api.forget_cache()
    with pytest.raises(IntegrationHTTPError):
        api.at("fx").with_cache(60).get("/fx")


def test_breaker_opens_and_resets(app_factory, upstream):
    app = app_factory(INTEGRATIONS_BREAKER={"threshold": 2, "cooldown": 60}, **FAST_RETRIES)
    ext = app.extensions["integrations"]
    ext.register("api", api_provider(upstream.url))
    with app.app_context():
        api = ext.create("api", "API", {"token": "t"})
        with pytest.raises(IntegrationHTTPError):
            api.at("down").with_attempts(1).get("/status/500")
        assert api.breaker_state() == "closed"
        with pytest.raises(IntegrationHTTPError):  # opens between attempts: the upstream error is raised
            api.at("down").with_attempts(3).get("/status/500")
        assert upstream.hits("/status/500") == 2
        assert api.breaker_state() == "open"
        with pytest.raises(CircuitOpenError):
            api.at("down").get("/json")
        assert upstream.hits("/json") == 0
        api.reset_breaker()
        assert api.breaker_state() == "closed"
        assert api.at("up").get("/json")["path"] == "/json"
        db.session.remove()


def test_rate_limit_raises_when_no_capacity(app_factory, upstream):
    app = app_factory(INTEGRATIONS_RATE_LIMIT_MAX_WAIT=0, **FAST_RETRIES)
    ext = app.extensions["integrations"]
    ext.register("api", api_provider(upstream.url, rate_limit=2))
    with app.app_context():
        api = ext.create("api", "API", {"token": "t"})
        api.at("a").get("/json")
        api.at("a").get("/json")
        with pytest.raises(RateLimitExceeded):
            api.at("a").get("/json")
        assert upstream.hits("/json") == 2
        db.session.remove()


def test_keyed_call_runs_at_most_once(api, upstream):
    api.at("charge").with_idempotency_key("charge-1").post("/json")
    with pytest.raises(IdempotencyConflict) as info:
        api.at("charge").with_idempotency_key("charge-1").post("/json")
    assert info.value.request_id == rows()[0].id
    assert upstream.hits("/json") == 1
    assert rows()[0].idempotency_key == "charge-1"


def test_key_released_when_upstream_provably_did_not_act(api, upstream):
    upstream.script("/charge", [(400, {"e": "bad card"}), (200, {"ok": 1}), (500, {}), (200, {})])
    with pytest.raises(IntegrationHTTPError):
        api.at("charge").with_idempotency_key("k-400").post("/charge")
    assert api.at("charge").with_idempotency_key("k-400").post("/charge") == {"ok": 1}
    with pytest.raises(IntegrationHTTPError):
        api.at("charge").with_idempotency_key("k-500").post("/charge")
    with pytest.raises(IdempotencyConflict):  # a 500 may have acted: the key stays taken
        api.at("charge").with_idempotency_key("k-500").post("/charge")


def test_key_is_sent_only_for_supports_idempotency(app, upstream, ctx, caplog):
    ext = app.extensions["integrations"]
    ext.register("wire", _wire(upstream.url))
    wire = ext.create("wire", "Wire", {"token": "t"})
    plain = ext.create("api", "Plain", {"token": "t"})
    assert wire.at("c").with_idempotency_key("w-1").post("/json")["headers"]["idempotency-key"] == "w-1"
    with caplog.at_level(logging.WARNING, logger="flask_integrations"):
        assert "idempotency-key" not in plain.at("c").with_idempotency_key("p-1").post("/json")["headers"]
        plain.at("c").with_idempotency_key("p-2").post("/json")
    assert caplog.text.count("does not declare SupportsIdempotency") <= 1


def _wire(base_url):
    class Wire(api_provider(base_url), SupportsIdempotency):
        pass

    return Wire


def test_bad_keys(api):
    with pytest.raises(ValueError, match="non-empty"):
        api.at("x").with_idempotency_key("")
    with pytest.raises(ValueError, match="at most 191"):
        api.at("x").with_idempotency_key("k" * 192)


def test_keyed_call_refused_while_sqlite_holds_writes(app, api, upstream, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("the SQLite write-lock condition")
    db.session.add(IntegrationRequest(integration_id=api.id, endpoint="x", method="GET"))
    db.session.flush()
    with pytest.raises(RuntimeError, match="commit"):
        api.at("charge").with_idempotency_key("k").post("/json")
    assert upstream.hits("/json") == 0
    db.session.rollback()


def test_request_rows_survive_the_callers_rollback(api, upstream):
    from flask_integrations import Integration

    db.session.add(Integration(provider="loose", name="uncommitted", credentials={}))
    db.session.flush()
    with pytest.raises(IntegrationHTTPError):
        api.at("fails").with_attempts(1).get("/status/500")
    db.session.rollback()
    assert [r.status_code for r in rows(api.id)] == [500]


def test_redaction_of_stored_bodies(api, upstream):
    api.at("pay").with_data(
        {
            "password": "hunter2",
            "card": {"number": "4242"},
            "items": [{"ssn": "123-45"}],
            "echo": "tok-SECRET-42",
        }
    ).post("/json")
    (row,) = rows()
    for secret in ("hunter2", "4242", "123-45", "tok-SECRET-42"):
        assert secret not in row.request_data
        assert secret not in row.response_data
    assert "[REDACTED]" in row.request_data


def test_body_size_cap_and_log_bodies_off(app_factory, upstream):
    app = app_factory(INTEGRATIONS_LOG_BODY_MAX_BYTES=64, **FAST_RETRIES)
    app.extensions["integrations"].register("api", api_provider(upstream.url))
    with app.app_context():
        api = app.extensions["integrations"].create("api", "API", {"token": "t"})
        api.at("big").with_data({"blob": "x" * 500}).post("/json")
        row = rows()[0]
        assert len(row.request_data.encode()) < 200 and "truncated" in row.request_data
        db.session.remove()
    quiet = app_factory(INTEGRATIONS_LOG_BODIES=False, **FAST_RETRIES)
    quiet.extensions["integrations"].register("api", api_provider(upstream.url))
    with quiet.app_context():
        api = quiet.extensions["integrations"].create("api", "API", {"token": "t"})
        api.at("big").with_data({"a": 1}).post("/json")
        row = rows(api.id)[0]
        assert (row.request_data, row.response_data) == (None, None)
        db.session.remove()


def test_related_to_and_signals(api, app):
    events = []

    def completed(sender, **kw):
        events.append(("completed", kw["request_id"], kw["status_code"]))

    def failed(sender, **kw):
        events.append(("failed", kw["request_id"], kw["failure_class"]))

    signals.request_completed.connect(completed)
    signals.request_failed.connect(failed)
    try:
        api.at("rel").related_to(api).get("/json")
        with pytest.raises(IntegrationHTTPError):
            api.at("rel").get("/status/404")
    finally:
        signals.request_completed.disconnect(completed)
        signals.request_failed.disconnect(failed)
    first, second = rows()
    assert (first.related_type, first.related_id) == ("integrations", api.id)
    assert events == [("completed", first.id, 200), ("failed", second.id, "client")]


def test_refusals_before_anything_is_sent(api, app, upstream):
    api.disable()
    with pytest.raises(IntegrationsError, match=f"Integration {api.id} is inactive"):
        api.at("x").get("/json")
    api.enable()
    api.provider = "gone"
    with pytest.raises(ProviderNotRegistered):
        api.at("x").get("/json")
    db.session.rollback()
    assert upstream.hits("/json") == 0


def test_no_app_context_is_a_clear_error(app_factory, upstream):
    app = app_factory()
    app.extensions["integrations"].register("api", api_provider(upstream.url))
    with app.app_context():
        integration = app.extensions["integrations"].create("api", "API", {"token": "t"})
        builder = integration.at("x")
    with pytest.raises(RuntimeError, match="application context"):
        builder.get("/json")


def test_context_repr_has_no_credentials(api):
    ctx = RequestContext(integration=api, idempotency_key="k", attempt=1)
    assert "tok-SECRET-42" not in repr(ctx)


def _race(postgres_url: str, upstream_url: str, integration_id: int, results) -> None:
    app = make_app(postgres_url)
    app.extensions["integrations"].register("api", api_provider(upstream_url))
    with app.app_context():
        from flask_integrations import Integration

        integration = db.session.get(Integration, integration_id)
        try:
            integration.at("charge").with_idempotency_key("race-key").post("/json")
            results.put("ran")
        except IdempotencyConflict:
            results.put("conflict")
        db.session.remove()


@pytest.mark.slow
def test_eight_processes_racing_one_key_run_it_once(server_database_url, upstream):
    app = make_app(server_database_url)
    app.extensions["integrations"].register("api", api_provider(upstream.url))
    with app.app_context():
        reset_tables()
        integration_id = app.extensions["integrations"].create("api", "API", {"token": "t"}).id
        db.session.remove()
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    workers = [
        spawn.Process(target=_race, args=(server_database_url, upstream.url, integration_id, results))
        for _ in range(8)
    ]
    run_to_completion(workers, 90)
    outcomes = sorted(results.get(timeout=5) for _ in workers)
    assert outcomes == ["conflict"] * 7 + ["ran"]
    assert upstream.hits("/json") == 1


def _redis_apps(app_factory, upstream, redis_url, **config):
    """Two apps (as two web processes would be) sharing one Redis."""
    import uuid

    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    apps = []
    for _ in range(2):
        settings = {**FAST_RETRIES, **config}
        app = app_factory(INTEGRATIONS_REDIS_URL=redis_url, INTEGRATIONS_REDIS_PREFIX=prefix, **settings)
        app.extensions["integrations"].register("api", api_provider(upstream.url))
        apps.append(app)
    with apps[0].app_context():
        integration_id = apps[0].extensions["integrations"].create("api", "API", {"token": "t"}).id
        db.session.remove()
    return apps, integration_id


def _call(app, integration_id, fn):
    with app.app_context():
        try:
            return fn(app.extensions["integrations"].get(integration_id))
        finally:
            db.session.remove()


@pytest.mark.redis
def test_cache_and_breaker_are_shared_through_redis(app_factory, upstream, redis_url):
    (first, second), integration_id = _redis_apps(
        app_factory, upstream, redis_url, INTEGRATIONS_BREAKER={"threshold": 1, "cooldown": 60}
    )
    assert (
        _call(first, integration_id, lambda i: i.at("shared").with_cache(60).get("/json"))["path"] == "/json"
    )
    assert (
        _call(second, integration_id, lambda i: i.at("shared").with_cache(60).get("/json"))["path"] == "/json"
    )
    assert upstream.hits("/json") == 1
    with pytest.raises(IntegrationHTTPError):
        _call(first, integration_id, lambda i: i.at("down").with_attempts(1).get("/status/503"))
    assert _call(second, integration_id, lambda i: i.breaker_state()) == "open"
    with pytest.raises(CircuitOpenError):
        _call(second, integration_id, lambda i: i.at("other").get("/json"))
    _call(second, integration_id, lambda i: i.reset_breaker())
    assert _call(first, integration_id, lambda i: i.breaker_state()) == "closed"


@pytest.mark.redis
def test_retry_after_suppresses_every_process(app_factory, upstream, redis_url):
    (first, second), integration_id = _redis_apps(
        app_factory, upstream, redis_url, INTEGRATIONS_RATE_LIMIT_MAX_WAIT=0, INTEGRATIONS_RETRY_AFTER_MAX=30
    )
    upstream.script("/busy", [(429, {"e": 1}, {"Retry-After": "30"})])
    with pytest.raises(IntegrationHTTPError):
        _call(first, integration_id, lambda i: i.at("busy").with_attempts(1).get("/busy"))
    with pytest.raises(RateLimitExceeded) as info:
        _call(second, integration_id, lambda i: i.at("busy").get("/json"))
    assert 25 < info.value.retry_after <= 30
    assert upstream.hits("/json") == 0


def test_unreachable_redis_fails_open(app_factory, upstream, caplog):
    app = app_factory(INTEGRATIONS_REDIS_URL="redis://127.0.0.1:1/0", **FAST_RETRIES)
    app.extensions["integrations"].register("api", api_provider(upstream.url))
    with app.app_context(), caplog.at_level(logging.WARNING, logger="flask_integrations"):
        api = app.extensions["integrations"].create("api", "API", {"token": "t"})
        for _ in range(3):
            assert api.at("cached").with_cache(60).get("/json")["path"] == "/json"
        assert upstream.hits("/json") == 3  # no cache, but every call went through
        assert len(rows(api.id)) == 3
        db.session.remove()
    assert 1 <= caplog.text.count("Redis") <= 2


def test_explicit_retry_of_points_every_row_at_the_original(api):
    api.at("first").get("/json")
    original = rows()[0].id
    api.at("again").retry_of(original).get("/json")
    assert rows()[-1].retry_of == original


def test_cache_for_other_methods_when_asked(api, upstream):
    for _ in range(2):
        assert (
            api.at("search").with_cache(60, methods=["POST"]).with_data({"q": "x"}).post("/json")["method"]
            == "POST"
        )
    assert upstream.hits("/json") == 1
    api.at("search").with_data({"q": "x"}).post("/json")  # no with_cache: always live
    assert upstream.hits("/json") == 2


def test_reported_remaining_zero_suppresses_until_reset(app_factory, upstream):
    app = app_factory(INTEGRATIONS_RATE_LIMIT_MAX_WAIT=0, INTEGRATIONS_RETRY_AFTER_MAX=120)
    app.extensions["integrations"].register("api", api_provider(upstream.url))
    with app.app_context():
        api = app.extensions["integrations"].create("api", "API", {"token": "t"})

        def sdk_call(ctx):
            ctx.report(rate_limit_remaining=0, rate_limit_reset_at=60)
            return {"ok": True}

        assert api.at("sdk").get(sdk_call) == {"ok": True}
        with pytest.raises(RateLimitExceeded):
            api.at("sdk").get(sdk_call)
        db.session.remove()


def test_key_released_when_no_connection_was_made(app, ctx):
    ext = app.extensions["integrations"]
    ext.register("closed", api_provider("http://127.0.0.1:1"))
    closed = ext.create("closed", "Closed port", {"token": "t"})
    for _ in range(2):  # the second call is allowed: the first never reached the upstream
        with pytest.raises(httpx.ConnectError):
            closed.at("charge").with_idempotency_key("k-conn").post("/charge")
    assert [r.failure_class for r in rows(closed.id)] == ["upstream", "upstream"]


def test_a_failing_request_log_does_not_fail_the_call(api, monkeypatch, caplog):
    from flask_integrations.pipeline import record as record_module

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    from flask_integrations.pipeline import writer as writer_module

    monkeypatch.setattr(record_module.RowInserter, "insert", broken)
    monkeypatch.setattr(record_module, "run_detached", broken)
    monkeypatch.setattr(writer_module.RowWriter, "_next_id", broken)
    with caplog.at_level(logging.ERROR, logger="flask_integrations"):
        assert api.at("ok").get("/json")["path"] == "/json"
    assert "could not write the request row" in caplog.text


def test_the_example_in_the_docs_runs_and_runs_again(tmp_path):
    for _ in range(2):  # a second run starts fresh
        lines = run_docs_example("requests.md", r"## A runnable example\s+```python\n(.*?)```", tmp_path)
        assert lines[:2] == ["{'hello': 'world'}"] * 2
        assert lines[2].startswith("GET hello 200 ")
