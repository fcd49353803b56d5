"""Body logging per call and per provider (SPEC 15): `.without_body_logging()`, `log_bodies = False`."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from flask_integrations import ConfigurationError, IntegrationHTTPError, IntegrationRequest, Provider
from flask_integrations.pagination import PageNumber
from tests.helpers.app import db


def provider(url: str, log_bodies: bool = True) -> type[Provider]:
    class Api(Provider):
        base_url = url

    Api.log_bodies = log_bodies
    return Api


@pytest.fixture
def app(app_factory, upstream):
    app = app_factory(INTEGRATIONS_RETRY_AFTER_MAX=0.01)
    app.extensions["integrations"].register("api", provider(upstream.url))
    app.extensions["integrations"].register("private", provider(upstream.url, log_bodies=False))
    return app


@pytest.fixture
def api(ext, ctx):
    return ext.create("api", "API", {})


def rows(integration_id: int) -> list[IntegrationRequest]:
    db.session.expire_all()
    query = sa.select(IntegrationRequest).where(IntegrationRequest.integration_id == integration_id)
    return list(db.session.scalars(query.order_by(IntegrationRequest.id)))


def test_a_call_without_body_logging_keeps_the_row_but_no_bodies(api):
    api.at("logged").with_data({"name": "Ada"}).post("/json")
    api.at("quiet").with_data({"name": "Ada"}).with_idempotency_key("k-1").without_body_logging().post(
        "/json"
    )

    logged, quiet = rows(api.id)
    assert "Ada" in logged.request_data and "Ada" in logged.response_data
    assert (quiet.request_data, quiet.response_data) == (None, None)
    assert (quiet.endpoint, quiet.method, quiet.status_code, quiet.idempotency_key) == (
        "quiet",
        "POST",
        200,
        "k-1",
    )
    assert quiet.duration_ms is not None and quiet.failure_class is None


def test_a_failed_call_without_body_logging_keeps_its_error_but_no_body(api):
    with pytest.raises(IntegrationHTTPError):
        api.at("missing").with_data({"q": "x"}).without_body_logging().post("/status/404")

    (row,) = rows(api.id)
    assert (row.status_code, row.error, row.failure_class) == (404, "HTTP 404", "client")
    assert (row.request_data, row.response_data) == (None, None)


def test_a_callable_target_without_body_logging_keeps_no_bodies(api):
    assert api.at("sdk").with_data({"card": "4242"}).without_body_logging().post(lambda: {"id": 7}) == {
        "id": 7
    }

    (row,) = rows(api.id)
    assert (row.request_data, row.response_data, row.status_code) == (None, None, None)


def test_every_page_of_a_listing_follows_without_body_logging(api, upstream):
    upstream.script("/items", [(200, [{"id": 1}], {}), (200, [], {})])
    listing = api.at("items").without_body_logging().paginate("/items", pages=PageNumber())

    assert [item["id"] for item in listing] == [1]
    assert [(r.request_data, r.response_data) for r in rows(api.id)] == [(None, None), (None, None)]


def test_a_provider_with_log_bodies_false_keeps_no_bodies(ext, api):
    private = ext.create("private", "Private", {})
    private.at("people").with_data({"name": "Ada"}).post("/json")
    api.at("people").with_data({"name": "Ada"}).post("/json")

    (quiet,) = rows(private.id)
    (logged,) = rows(api.id)
    assert (quiet.request_data, quiet.response_data, quiet.status_code) == (None, None, 200)
    assert "Ada" in logged.request_data and "Ada" in logged.response_data


@pytest.mark.parametrize(
    ("setting", "provider_logs", "call_logs"), itertools.product([True, False], repeat=3)
)
def test_bodies_are_kept_only_when_setting_provider_and_call_all_allow_them(
    app_factory, upstream, setting, provider_logs, call_logs
):
    app = app_factory(INTEGRATIONS_LOG_BODIES=setting)
    app.extensions["integrations"].register("api", provider(upstream.url, log_bodies=provider_logs))
    with app.app_context():
        integration = app.extensions["integrations"].create("api", "API", {})
        builder = integration.at("echo").with_data({"name": "Ada"})
        (builder if call_logs else builder.without_body_logging()).post("/json")
        (row,) = rows(integration.id)
        kept = setting and provider_logs and call_logs
        assert (row.request_data is not None, row.response_data is not None) == (kept, kept)
        db.session.remove()


def test_log_bodies_must_be_a_bool(app_factory):
    app = app_factory()

    class Loud(Provider):
        log_bodies = "no"

    with pytest.raises(ConfigurationError, match=r"log_bodies must be True or False\."):
        app.extensions["integrations"].register("loud", Loud)
