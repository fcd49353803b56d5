"""integrations.fake(...): patterns, answers, assertions; nothing leaves the process."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest
import sqlalchemy as sa

from flask_integrations import IntegrationHTTPError, IntegrationRequest, RetryableError
from flask_integrations.testing import ResponseSequence, UnexpectedRequest
from tests.helpers.app import db


@pytest.fixture
def tickets(ext, ctx):
    return ext.create("tickets", "Acme", {"api_key": "k", "subdomain": "s"}, metadata={"team": "t"})


@pytest.fixture
def fake(ext):
    fake = ext.fake()
    yield fake
    fake.stop()


def test_answers_by_pattern_with_wildcards_and_methods(ext, tickets):
    with ext.fake(
        {
            "GET:tickets/*.json": {"id": 1},
            "tickets/*": {"generic": True},
            "POST:tickets/*.json": {"created": True},
            "customers.create": lambda call: {"echo": call.data},
        }
    ) as fake:
        assert tickets.at("tickets/42.json").get() == {"id": 1}
        assert tickets.at("tickets/42.json").post() == {"created": True}
        assert tickets.at("tickets/42").delete() == {"generic": True}
        assert tickets.at("customers.create").with_data({"n": 1}).post(lambda: None) == {"echo": {"n": 1}}
        fake.assert_requested("tickets/*.json", times=2)
        fake.assert_requested("tickets/*.json", method="post", times=1)
        fake.assert_requested_with("customers.create", lambda call: call.data == {"n": 1})
        fake.assert_request_count(4)
    assert db.session.scalars(sa.select(IntegrationRequest)).all() == []


def test_targets_are_matched_too(ext, tickets):
    with ext.fake({"GET:/api/v2/users": ["ann"]}):
        assert tickets.at("users").get("https://api.example.invalid/api/v2/users") == ["ann"]


def test_http_answers_and_exceptions(ext, tickets, fake):
    fake._responses.update(
        {
            "missing": fake.response(404, json={"error": "nope"}),
            "created": fake.response(201, json={"id": 7}, headers={"Location": "/7"}),
            "boom": RetryableError("later"),
            "boom-class": ConnectionError,
        }
    )
    with pytest.raises(IntegrationHTTPError) as info:
        tickets.at("missing").get()
    assert info.value.status_code == 404 and info.value.response.json() == {"error": "nope"}
    assert tickets.at("created").post() == {"id": 7}
    assert tickets.at("created").raw_response().post().headers["location"] == "/7"
    with pytest.raises(RetryableError):
        tickets.at("boom").get()
    with pytest.raises(ConnectionError):
        tickets.at("boom-class").get()


def test_response_sequence(ext, tickets):
    with ext.fake({"poll": ResponseSequence({"state": "pending"}, {"state": "done"})}):
        assert tickets.at("poll").get() == {"state": "pending"}
        assert tickets.at("poll").get() == {"state": "done"}
        with pytest.raises(UnexpectedRequest, match="exhausted"):
            tickets.at("poll").get()


def test_per_integration_answers(ext, tickets):
    other = ext.create("tickets", "Other", {"api_key": "k2", "subdomain": "s2"}, metadata={"team": "t"})
    with ext.fake({"me": {"name": "default"}}) as fake:
        fake.for_integration(other, {"me": {"name": "other"}})
        assert tickets.at("me").get() == {"name": "default"}
        assert other.at("me").get() == {"name": "other"}
        fake.assert_requested("me", integration=other, times=1)
        fake.assert_not_requested("you")


def test_unmatched_call_raises_and_nothing_requested(ext, tickets, fake):
    fake.assert_nothing_requested()
    with pytest.raises(UnexpectedRequest, match="No fake answer for GET 'anything'"):
        tickets.at("anything").get()
    with pytest.raises(AssertionError, match="Expected 2 request"):
        fake.assert_request_count(2)
    with pytest.raises(AssertionError, match="Expected a request to 'other'"):
        fake.assert_requested("other")


@dataclasses.dataclass
class Me:
    name: str


def test_returning_applies_to_faked_values(ext, tickets):
    with ext.fake({"me": {"name": "ann"}}):
        assert tickets.at("me").returning(Me).get() == Me("ann")


def test_stop_restores_real_calls(ext, app):
    fake = ext.fake({"x": 1})
    assert ext.state_for(app).fake is fake
    fake.stop()
    assert ext.state_for(app).fake is None


@pytest.mark.slow
def test_pytest_plugin_fixtures(pytester):
    pytester.makeconftest(
        textwrap.dedent(
            """
            import pytest
            from flask import Flask
            from flask_sqlalchemy import SQLAlchemy
            from cryptography.fernet import Fernet
            from flask_integrations import Integrations, Provider

            pytest_plugins = ["flask_integrations.testing.pytest_plugin"]

            class Demo(Provider):
                pass

            @pytest.fixture
            def app(tmp_path):
                app = Flask("plugin")
                app.config.update(SECRET_KEY="s", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/p.db",
                                  INTEGRATIONS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()],
                                  INTEGRATIONS_PROVIDERS={"demo": Demo})
                Integrations(app, db=SQLAlchemy(app))
                return app
            """
        )
    )
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_factory(integration, integrations_app):
                created = integration("demo", credentials={"token": "t"})
                ext = integrations_app.extensions["integrations"]
                assert ext.get(created.id).credentials_dict() == {"token": "t"}
                with ext.fake({"ping": "pong"}) as fake:
                    assert created.at("ping").get() == "pong"
                    fake.assert_requested("ping", times=1)
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
