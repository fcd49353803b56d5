"""`integrations.fake({...}, passthrough=["github"])` (SPEC 15): the named providers' calls reach
their real (loopback) upstream through the whole pipeline; every other provider stays faked."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from flask_integrations import (
    ConfigurationError,
    IntegrationHTTPError,
    IntegrationRequest,
    IntegrationsError,
    Provider,
)
from tests.helpers.app import db


def provider(url: str) -> type[Provider]:
    class Api(Provider):
        base_url = url

        def prepare_request(self, integration, request):
            request.headers["X-Api"] = integration.provider

    return Api


@pytest.fixture
def app(app_factory, upstream):
    app = app_factory(INTEGRATIONS_RETRY_AFTER_MAX=0.01)
    ext = app.extensions["integrations"]
    ext.register("github", provider(upstream.url))
    ext.register("stripe", provider(upstream.url))
    return app


@pytest.fixture
def github(ext, ctx):
    return ext.create("github", "GitHub", {})


@pytest.fixture
def stripe(ext, ctx):
    return ext.create("stripe", "Stripe", {})


def rows(integration_id: int) -> list[IntegrationRequest]:
    db.session.expire_all()
    query = sa.select(IntegrationRequest).where(IntegrationRequest.integration_id == integration_id)
    return list(db.session.scalars(query.order_by(IntegrationRequest.id)))


def test_passthrough_calls_reach_the_upstream_and_the_others_stay_faked(ext, github, stripe, upstream):
    with ext.fake({"charges.create": {"id": "ch_fake"}, "repos": {"faked": True}}, passthrough=["github"]):
        real = github.at("repos").with_data({"per_page": 5}).get("/json")
        faked = stripe.at("charges.create").post("/json")

    assert real["path"] == "/json" and real["query"] == {"per_page": "5"}
    assert faked == {"id": "ch_fake"}
    assert upstream.hits("/json") == 1
    (row,) = rows(github.id)
    assert (row.endpoint, row.status_code) == ("repos", 200)
    assert rows(stripe.id) == []


def test_passthrough_attempts_are_recorded_as_they_go_out(ext, github, stripe, upstream):
    upstream.script("/flaky", [(503, {"busy": True}, {}), (200, {"ok": 1}, {})])
    with ext.fake({"charges.create": {"id": "ch_1"}}, passthrough=["github"]) as fake:
        assert github.at("flaky").get("/flaky") == {"ok": 1}
        stripe.at("charges.create").post("/json")

    github_calls = [c for c in fake.calls if c.integration_id == github.id]
    assert [(c.method, c.endpoint, c.target, c.attempt) for c in github_calls] == [
        ("GET", "flaky", "/flaky", 1),
        ("GET", "flaky", "/flaky", 2),
    ]
    assert github_calls[0].headers["x-api"] == "github"
    fake.assert_requested("flaky", times=2, integration=github)
    fake.assert_request_count(3)
    assert [r.status_code for r in rows(github.id)] == [503, 200]


def test_a_passthrough_call_goes_through_the_whole_pipeline(ext, github, upstream):
    with ext.fake({}, passthrough=["github"]) as fake:
        assert github.at("cached").with_cache(60).get("/json")["path"] == "/json"
        assert github.at("cached").with_cache(60).get("/json")["path"] == "/json"  # a cache hit
        with pytest.raises(IntegrationHTTPError):
            github.at("missing").get("/status/404")

    assert upstream.hits("/json") == 1
    assert [c.endpoint for c in fake.calls] == ["cached", "missing"]  # the hit sent nothing
    assert [r.failure_class for r in rows(github.id)] == [None, "client"]


def test_an_unknown_passthrough_provider_is_one_clear_error(ext):
    with pytest.raises(ConfigurationError) as info:
        ext.fake({}, passthrough=["github", "gitlab"])
    assert str(info.value) == (
        "fake(passthrough=...) names provider 'gitlab', which is not registered "
        "(registered: github, loose, stripe, tickets)."
    )


def test_passthrough_takes_a_list_not_a_string(ext):
    with pytest.raises(
        ConfigurationError, match=r"takes a list of provider keys, e\.g\. passthrough=\['github'\]"
    ):
        ext.fake({}, passthrough="github")


def test_without_passthrough_every_provider_is_faked(ext, github, upstream):
    with ext.fake({"repos": [1]}) as fake:
        assert github.at("repos").get("/json") == [1]
    assert upstream.hits("/json") == 0 and rows(github.id) == []
    assert fake.passthrough == frozenset()


def test_a_passthrough_call_that_cannot_be_built_fails_as_a_real_one_and_is_still_recorded(app, ext, ctx):
    @dataclasses.dataclass
    class Tenant:
        tenant: str = ""

    class Templated(Provider):
        credential_class = Tenant
        base_url = "http://127.0.0.1:9/{tenant}"

    ext.register("templated", Templated)
    templated = ext.create("templated", "No tenant", {})
    fake = ext.fake({}, passthrough=["templated"])
    with fake, pytest.raises(IntegrationsError, match="has no 'tenant' for the provider's base_url"):
        templated.at("items").with_attempts(1).get("/items")

    assert [(c.endpoint, c.attempt) for c in fake.calls] == [("items", 1)]
    (row,) = rows(templated.id)
    assert "has no 'tenant'" in row.error
