"""Numbers in text (security round 2): every input that takes a number refuses other digits cleanly.

Promise: a number read from a user or an upstream (a dashboard filter or page, an id in a URL or
on the command line, an upstream's `Retry-After` / `X-RateLimit-*` header, what a callable
reports, an OAuth token answer, a stored `token_expires_at`) is accepted only in ASCII digits;
anything else (``²``, ``١٢``, ``１``, ``Ⅻ``, ``½``, mixed with ASCII digits or not) is refused or
ignored: never a 500, a traceback, a failed call or a lost request row.

How: hypothesis draws strings from every Unicode character of the categories Nd, No and Nl
(digits of all scripts, superscripts, fractions, Roman numerals), mixed with ASCII digits,
signs, points and spaces, and feeds each input listed in `INPUTS` below. Figures go to
`unicode_digits.json`: the examples run per input.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import unicodedata
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_integrations import (
    HandlesWebhooks,
    IntegrationHTTPError,
    IntegrationRequest,
    OAuth2,
    Provider,
)
from flask_integrations.oauth import tokens
from tests.helpers.app import db

#: Every character Unicode counts as a digit or a number, besides the ASCII digits.
NUMERIC = [
    chr(code)
    for code in range(sys.maxunicode + 1)
    if unicodedata.category(chr(code)) in ("Nd", "No", "Nl") and not "0" <= chr(code) <= "9"
]
DIGITISH = st.text(
    alphabet=st.one_of(st.sampled_from(NUMERIC), st.sampled_from("0123456789.-+ e")),
    min_size=1,
    max_size=8,
).filter(lambda text: not text.strip().replace(".", "", 1).isascii() or not text.strip())
EXAMPLES = 40
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FIGURES: dict[str, Any] = {"numeric characters drawn from": len(NUMERIC), "examples per input": {}}


@dataclasses.dataclass
class Creds:
    token: str


class Api(Provider):
    credential_class = Creds


class Hooks(Provider, HandlesWebhooks):
    def verify_webhook(self, integration, request):
        return request.headers.get("X-Ok") == "yes"


class Answering(Provider, OAuth2):
    """An OAuth2 provider whose token endpoint answers `ANSWER`."""

    ANSWER: dict[str, Any] = {}

    def authorization_url(self, integration, redirect_uri, state, code_challenge):
        return f"https://auth.invalid/authorize?{urlencode({'state': state})}"

    def exchange_code(self, integration, code, redirect_uri, code_verifier):
        return dict(self.ANSWER)

    def refresh_token(self, integration):
        return {"access_token": "at-refreshed"}

    def revoke_token(self, integration):
        return None


@pytest.fixture
def app(app_factory, upstream):
    Api.base_url = upstream.url
    app = app_factory(
        INTEGRATIONS_PROVIDERS={"api": Api, "hooks": Hooks, "answering": Answering},
        INTEGRATIONS_RETRY_AFTER_MAX=0.01,
        INTEGRATIONS_BREAKER={"enabled": False},  # the 503s of many examples are not the point here
        INTEGRATIONS_HEALTH={"disabled_after": None},
    )
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture
def api(app):
    return app.extensions["integrations"].create("api", "API", {"token": "tok-1234"})


@pytest.fixture(scope="module", autouse=True)
def _figures(figures_dir):
    yield
    (figures_dir / "unicode_digits.json").write_text(json.dumps(FIGURES, indent=2, sort_keys=True))


def counted(name: str) -> None:
    FIGURES["examples per input"][name] = FIGURES["examples per input"].get(name, 0) + 1


DASHBOARD_PAGES = [
    "/integrations/dashboard/?page={v}",
    "/integrations/dashboard/integrations/{id}?status={v}",
    "/integrations/dashboard/integrations/{id}?page={v}",
    "/integrations/dashboard/webhooks?integration={v}&page={v}",
    "/integrations/dashboard/sync-items?integration={v}&page={v}",
    "/integrations/dashboard/requests/{v}",
    "/integrations/dashboard/integrations/{v}",
    "/integrations/hooks/{v}/webhook",
    "/integrations/{v}/oauth/authorize",
]


@SETTINGS
@given(value=DIGITISH)
def test_routes_taking_a_number_never_answer_500(app, api, value):
    client = app.test_client()
    for template in DASHBOARD_PAGES:
        path = template.format(v=quote(value, safe=""), id=api.id)
        method = client.post if path.endswith("/webhook") else client.get
        response = method(path, headers={"X-Ok": "yes"}, data=b"{}")
        assert response.status_code < 500, (path, response.status_code)
        counted(template)


CLI_ARGUMENTS = [
    ["replay-webhook", "{v}"],
    ["skip-sync-item", "{v}"],
    ["retry-sync-item", "{v}"],
    ["advance-cursor", "--", "{v}"],
    ["health", "--integration", "{v}"],
    ["stats", "--hours", "{v}"],
    ["list-failed-items", "--integration", "{v}"],
    ["sync", "--integration", "{v}"],
    ["rotate-key", "--batch-size", "{v}"],
]


@SETTINGS
@given(value=DIGITISH)
def test_cli_numbers_in_other_digits_are_one_usage_error(app, api, value):
    runner = app.test_cli_runner()
    for arguments in CLI_ARGUMENTS:
        args = ["integrations", *(a.replace("{v}", value) for a in arguments)]
        result = runner.invoke(args=args)
        assert result.exit_code == 1, (args, result.output)
        assert "Traceback" not in result.output and result.output.startswith("Error: "), result.output
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
        counted(f"flask integrations {arguments[0]}")


LIMIT_HEADERS = ["Retry-After", "Retry-After-Ms", "X-RateLimit-Remaining", "X-RateLimit-Reset"]


@SETTINGS
@given(value=DIGITISH, header=st.sampled_from(LIMIT_HEADERS), status=st.sampled_from([200, 429, 503]))
def test_an_upstreams_limit_headers_in_other_digits_never_break_a_call(
    app, api, upstream, value, header, status
):
    before = db.session.scalar(sa.select(sa.func.count()).select_from(IntegrationRequest))
    sent = value.encode("utf-8").decode("latin-1")  # as the server's bytes: UTF-8 (httpx decodes it)
    upstream.script("/limited", [(status, {"n": 1}, {header: sent, "X-RateLimit-Remaining": "0"})])
    try:
        api.at("limited").with_attempts(1).get("/limited")
    except IntegrationHTTPError as error:
        assert error.status_code == status
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(IntegrationRequest)) == before + 1
    counted(f"upstream header {header}")


@SETTINGS
@given(value=DIGITISH, name=st.sampled_from(["rate_limit_remaining", "rate_limit_reset_at", "retry_after"]))
def test_numbers_a_callable_reports_in_other_digits_never_break_a_call(app, api, value, name):
    def sdk(ctx):
        ctx.report(
            **{name: value, "rate_limit_remaining": "0"} if name != "rate_limit_remaining" else {name: value}
        )
        return {"ok": True}

    assert api.at("sdk").get(sdk) == {"ok": True}
    counted(f"ctx.report({name}=...)")


@SETTINGS
@given(value=DIGITISH, field=st.sampled_from(["expires_in", "expires_at"]))
def test_token_answers_in_other_digits_store_no_expiry_and_never_500(app, value, field):
    ext = app.extensions["integrations"]
    integration = ext.create("answering", "A", {})
    Answering.ANSWER = {"access_token": "at-1", "refresh_token": "rt-1", field: value}
    client = app.test_client()
    location = client.get(f"/integrations/{integration.id}/oauth/authorize").headers["Location"]
    state = location.split("state=", 1)[1]
    response = client.get(f"/integrations/oauth/callback?{urlencode({'state': state, 'code': 'c'})}")
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    stored = ext.get(integration.id).credentials_dict()
    assert stored["access_token"] == "at-1" and stored["token_expires_at"] is None
    counted(f"token answer {field}")


@SETTINGS
@given(value=DIGITISH)
def test_a_stored_token_expiry_in_other_digits_is_no_expiry(app, value):
    integration = app.extensions["integrations"].create(
        "answering", "A", {"access_token": "at-1", "refresh_token": "rt-1", "token_expires_at": value}
    )
    assert tokens.expires_at(integration.credentials_dict()) is None
    assert integration.access_token() == "at-1"  # an unknown expiry is not a reason to refresh
    counted("credentials token_expires_at")
