"""Runtime overrides (SPEC 15): the API, the CLI command, and every process following them."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from flask_integrations import (
    CircuitOpenError,
    ConfigurationError,
    IntegrationHTTPError,
    IntegrationLog,
    Limit,
    Provider,
    RateLimitExceeded,
)
from tests.conftest import reset_tables
from tests.helpers.app import db, make_app


class Api(Provider):
    pass


@pytest.fixture
def api_app(app_factory):
    return app_factory(
        INTEGRATIONS_PROVIDERS={"api": Api},
        INTEGRATIONS_BREAKER={"threshold": 2, "cooldown": 60},
        INTEGRATIONS_RATE_LIMIT_MAX_WAIT=0,
    )


@pytest.fixture
def api(api_app):
    with api_app.app_context():
        yield api_app.extensions["integrations"].create("api", "API", {})


def test_a_forced_open_breaker_refuses_calls_until_cleared(api, upstream):
    api.override(breaker="open", ttl=7200)
    with pytest.raises(CircuitOpenError, match="forced open by an override") as refused:
        api.at("x").get(upstream.url + "/json")
    assert refused.value.forced and 7100 < refused.value.retry_after <= 7200
    assert upstream.hits("/json") == 0
    assert api.breaker_state() == "open"
    [(name, found)] = api.overrides().items()
    assert name == "breaker" and found.value == "open" and 7100 < found.seconds_left <= 7200
    api.clear_overrides()
    assert api.overrides() == {}
    assert api.at("x").get(upstream.url + "/json")["path"] == "/json"


def test_a_forced_closed_breaker_lets_calls_through_and_counts_nothing(api, upstream):
    for _ in range(2):
        with pytest.raises(IntegrationHTTPError):
            api.at("x").with_attempts(1).get(upstream.url + "/status/500")
    assert api.breaker_state() == "open"
    api.override(breaker="closed", ttl=60)
    assert api.breaker_state() == "closed"
    for _ in range(3):  # a false alarm: the upstream answers, and failures meanwhile open nothing
        with pytest.raises(IntegrationHTTPError):
            api.at("x").with_attempts(1).get(upstream.url + "/status/500")
    assert api.at("x").get(upstream.url + "/json")
    api.clear_overrides()
    assert api.breaker_state() == "open"  # the breaker's own state was left as it was


def test_a_lower_rate_limit_for_a_while(api, upstream):
    api.override(rate_limit="2/hour", ttl=7200)
    assert [limit for limit in api.overrides()["rate_limit"].value] == [Limit(2, "hour")]
    api.at("x").get(upstream.url + "/json")
    api.at("x").get(upstream.url + "/json")
    with pytest.raises(RateLimitExceeded):
        api.at("x").get(upstream.url + "/json")
    api.override(rate_limit=[Limit(100, per="second")], ttl=60)  # replaces the hourly one
    api.at("x").get(upstream.url + "/json")


def test_fields_keep_their_own_expiry_and_lapse_on_time(api, upstream):
    api.override(breaker="open", ttl=1)
    api.override(rate_limit=50, ttl=600)
    assert set(api.overrides()) == {"breaker", "rate_limit"}
    time.sleep(1.1)
    assert set(api.overrides()) == {"rate_limit"}
    assert api.at("x").get(upstream.url + "/json")


def test_each_change_is_an_override_log(api):
    api.override(breaker="open", rate_limit="10/minute", ttl=60)
    api.clear_overrides()
    summaries = db.session.scalars(
        sa.select(IntegrationLog.summary)
        .where(IntegrationLog.operation == "override")
        .order_by(IntegrationLog.id)
    ).all()
    assert summaries[0].startswith("Override: breaker open and rate limit 10/minute until ")
    assert summaries[1] == "Overrides cleared"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"breaker": "half"}, "override breaker='half' must be 'open' or 'closed'"),
        ({"rate_limit": "100/week"}, "must read like 100/hour"),
        ({"rate_limit": 0}, "override rate_limit must be a positive integer"),
        ({}, "override needs breaker= or rate_limit="),
        ({"breaker": "open", "ttl": 0}, "override ttl=0 must be a number of seconds above 0"),
        ({"breaker": "open", "ttl": 40 * 86400}, "at most 30 days"),
    ],
)
def test_wrong_overrides_name_what_is_wrong(api, given, message):
    with pytest.raises(ConfigurationError, match=message):
        api.override(**given)
    assert api.overrides() == {}


def test_the_command(api_app, api, upstream):
    runner = api_app.test_cli_runner()
    result = runner.invoke(args=["integrations", "override", str(api.id), "--breaker", "open", "--for", "2h"])
    assert result.exit_code == 0, result.output
    assert f"Integration {api.id}: breaker open until " in result.output
    with pytest.raises(CircuitOpenError):
        api.at("x").get(upstream.url + "/json")
    result = runner.invoke(args=["integrations", "override", str(api.id), "--rate-limit", "100/hour"])
    assert "rate limit 100/hour until" in result.output and "breaker open until" in result.output
    result = runner.invoke(args=["integrations", "override", str(api.id), "--clear"])
    assert result.output == f"Integration {api.id}: overrides cleared.\n"
    assert runner.invoke(args=["integrations", "override", str(api.id)]).output.endswith("no overrides.\n")
    for wrong, said in [
        (["--for", "2w", "--breaker", "open"], "'2w' must read like 90s, 30m, 2h or 7d"),
        (["--for", "31d", "--breaker", "open"], "at most 30 days"),
        (["--rate-limit", "lots"], "rate limit 'lots' must read like 100/hour"),
        (["--clear", "--breaker", "open"], "--clear ends every override: give it alone"),
    ]:
        result = runner.invoke(args=["integrations", "override", str(api.id), *wrong])
        assert result.exit_code != 0 and said in result.output, result.output
    result = runner.invoke(args=["integrations", "override", "999", "--breaker", "open"])
    assert "Integration 999 does not exist." in result.output


# -- every process follows, within a second, and the override ends on time --------------------------


def _caller(
    database_url: str, config: dict[str, Any], integration_id: int, base: str, ready: Any, out: Any
) -> None:
    app = make_app(database_url, INTEGRATIONS_PROVIDERS={"api": Api}, **config)
    refused_at = passed_again_at = None
    with app.app_context():
        integration = app.extensions["integrations"].get(integration_id)
        integration.at("x").get(base + "/json")
        ready.put(1)
        deadline = time.time() + 10
        while time.time() < deadline and passed_again_at is None:
            try:
                integration.at("x").get(base + "/json")
                if refused_at is not None:
                    passed_again_at = time.time()
            except CircuitOpenError:
                refused_at = refused_at or time.time()
            time.sleep(0.02)
    out.put((refused_at, passed_again_at))


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode", ["embedded", pytest.param("redis", marks=[pytest.mark.redis, pytest.mark.postgres])]
)
def test_every_process_follows_within_a_second_and_the_override_ends_on_time(
    mode, tmp_path, request, upstream
):
    if mode == "redis":
        database_url = request.getfixturevalue("postgres_url")
        config = {
            "INTEGRATIONS_REDIS_URL": request.getfixturevalue("redis_url"),
            "INTEGRATIONS_REDIS_PREFIX": f"test:{uuid.uuid4().hex[:8]}:",
        }
    else:
        database_url, config = f"sqlite:///{tmp_path / 'shared.db'}", {}
    app = make_app(database_url, INTEGRATIONS_PROVIDERS={"api": Api}, **config)
    with app.app_context():
        reset_tables()
        integration_id = app.extensions["integrations"].create("api", "API", {}).id
    context = multiprocessing.get_context("spawn")
    ready, out = context.Queue(), context.Queue()
    processes = [
        context.Process(target=_caller, args=(database_url, config, integration_id, upstream.url, ready, out))
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            ready.get(timeout=60)
        with app.app_context():
            integration = app.extensions["integrations"].get(integration_id)
            set_at = time.time()
            integration.override(breaker="open", ttl=2)
            db.engine.dispose()
        seen = [out.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
    for refused_at, passed_again_at in seen:
        assert refused_at is not None and refused_at - set_at < 1.2
        assert passed_again_at is not None and 2.0 <= passed_again_at - set_at < 3.3


def test_the_integration_page_shows_overrides_with_their_expiry(api_app, api):
    page = api_app.test_client().get(f"/integrations/dashboard/integrations/{api.id}").text
    assert 'id="override-badge"' not in page
    api.override(breaker="open", rate_limit="100/hour", ttl=7200)
    page = api_app.test_client().get(f"/integrations/dashboard/integrations/{api.id}").text
    assert 'id="override-badge"' in page
    until = api.overrides()["breaker"].expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert 'data-override="breaker">breaker\n          <strong>open</strong>' in page
    assert "<strong>100/hour</strong>" in page and f"until {until}" in page
