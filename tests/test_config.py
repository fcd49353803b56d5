"""Misconfiguration fails at init_app with one clear ConfigurationError naming the setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_integrations import ConfigurationError, Integrations, Provider
from tests.helpers.app import KEY, ROOT, Loose, Tickets


def build(tmp_path, **config):
    app = Flask("config-test")
    app.config.update(
        SECRET_KEY="s",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'c.db'}",
        INTEGRATIONS_ENCRYPTION_KEYS=[KEY],
    )
    for key, value in config.items():
        if value is _DELETE:
            app.config.pop(key, None)
        else:
            app.config[key] = value
    db = SQLAlchemy(app)
    Integrations(app, db=db)
    return app


_DELETE = object()


def error_of(tmp_path, **config) -> str:
    with pytest.raises(ConfigurationError) as info:
        build(tmp_path, **config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_are_filled_in_and_dicts_merged(tmp_path):
    app = build(tmp_path, INTEGRATIONS_BREAKER={"threshold": 10}, INTEGRATIONS_ENCRYPTION_KEYS=KEY)
    assert app.config["INTEGRATIONS_BREAKER"] == {"enabled": True, "threshold": 10, "cooldown": 60}
    assert app.config["INTEGRATIONS_HTTP_TIMEOUT"] == 30
    assert app.config["INTEGRATIONS_ENCRYPTION_KEYS"] == [KEY]
    assert app.extensions["integrations"].state_for(app).setting("TABLE_PREFIX") == "integration"


def test_comma_separated_keys_are_a_list(tmp_path):
    app = build(tmp_path, INTEGRATIONS_ENCRYPTION_KEYS=f"{KEY}, {KEY}")
    assert app.config["INTEGRATIONS_ENCRYPTION_KEYS"] == [KEY, KEY]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"INTEGRATIONS_ENCRYPTION_KEYS": _DELETE}, "INTEGRATIONS_ENCRYPTION_KEYS is not set"),
        ({"INTEGRATIONS_ENCRYPTION_KEYS": []}, "INTEGRATIONS_ENCRYPTION_KEYS is not set"),
        (
            {"INTEGRATIONS_ENCRYPTION_KEYS": [KEY, "not-a-key"]},
            "INTEGRATIONS_ENCRYPTION_KEYS[1] is not a valid",
        ),
        ({"INTEGRATIONS_TABLE_PREFIX": "Bad-Prefix"}, "INTEGRATIONS_TABLE_PREFIX"),
        ({"INTEGRATIONS_TABLE_PREFIX": "a" * 31}, "INTEGRATIONS_TABLE_PREFIX"),
        ({"INTEGRATIONS_CACHEE": {}}, "Unknown setting INTEGRATIONS_CACHEE"),
        ({"INTEGRATIONS_BREAKER": {"treshold": 3}}, "Unknown key 'treshold' in INTEGRATIONS_BREAKER"),
        ({"INTEGRATIONS_BREAKER": {"threshold": 0}}, "INTEGRATIONS_BREAKER['threshold']"),
        ({"INTEGRATIONS_BREAKER": "on"}, "INTEGRATIONS_BREAKER must be a dict"),
        ({"INTEGRATIONS_HEALTH": {"degraded_after": 30}}, "degraded_after <= failing_after"),
        ({"INTEGRATIONS_HTTP_TIMEOUT": "30"}, "INTEGRATIONS_HTTP_TIMEOUT must be a positive number"),
        ({"INTEGRATIONS_REDIS_URL": "localhost:6379"}, "INTEGRATIONS_REDIS_URL"),
        ({"INTEGRATIONS_URL_PREFIX": "integrations"}, "INTEGRATIONS_URL_PREFIX"),
        ({"INTEGRATIONS_SYNC": {"item_backoff": []}}, "INTEGRATIONS_SYNC['item_backoff']"),
        ({"INTEGRATIONS_SYNC": {"pending_timeout": 0}}, "INTEGRATIONS_SYNC['pending_timeout']"),
        ({"INTEGRATIONS_DASHBOARD_AUTH": "yes"}, "INTEGRATIONS_DASHBOARD_AUTH must be a callable"),
        ({"SECRET_KEY": None}, "SECRET_KEY is not set but the dashboard and oauth blueprint is on"),
        (
            {"INTEGRATIONS_PROVIDERS": {"x": "no_such_module_here:X"}},
            "INTEGRATIONS_PROVIDERS['x']: cannot import",
        ),
        (
            {"INTEGRATIONS_PROVIDERS": {"x": "tests.helpers.app:Nope"}},
            "module 'tests.helpers.app' has no 'Nope'",
        ),
        ({"INTEGRATIONS_PROVIDERS": {"x": "tests.helpers.app"}}, "must be a class or 'module:Class'"),
        (
            {"INTEGRATIONS_PROVIDERS": {"x": "tests.helpers.app:KEY"}},
            "INTEGRATIONS_PROVIDERS['x'] is not a subclass",
        ),
        ({"INTEGRATIONS_PROVIDERS": {"Git Hub": Loose}}, "must match ^[a-z0-9_-]+$"),
        (
            {"INTEGRATIONS_PROVIDERS": {"dashboard": Loose}},
            "'dashboard' in INTEGRATIONS_PROVIDERS is reserved",
        ),
        ({"INTEGRATIONS_PROVIDERS": {"oauth": Loose}}, "'oauth' in INTEGRATIONS_PROVIDERS is reserved"),
    ],
)
def test_misconfiguration_names_the_setting(tmp_path, config, expected):
    assert expected in error_of(tmp_path, **config)


def test_secret_key_not_needed_without_dashboard_and_oauth(tmp_path):
    app = build(tmp_path, SECRET_KEY=None, INTEGRATIONS_BLUEPRINTS={"dashboard": False, "oauth": False})
    assert "integrations" in app.extensions


def test_provider_path_string_imports(tmp_path):
    app = build(tmp_path, INTEGRATIONS_PROVIDERS={"tickets": "tests.helpers.app:Tickets"})
    assert isinstance(app.extensions["integrations"].state_for(app).provider("tickets"), Tickets)


def test_error_never_contains_the_key(tmp_path):
    bad = KEY[:-2] + "!!"
    message = error_of(tmp_path, INTEGRATIONS_ENCRYPTION_KEYS=[bad])
    assert bad not in message


def test_second_prefix_in_one_process_is_refused(tmp_path):
    build(tmp_path)
    assert "one per process" in error_of(tmp_path, INTEGRATIONS_TABLE_PREFIX="other")


def test_missing_flask_sqlalchemy_is_a_clear_error():
    app = Flask("no-db")
    app.config.update(SECRET_KEY="s", INTEGRATIONS_ENCRYPTION_KEYS=[KEY])
    with pytest.raises(ConfigurationError, match="needs Flask-SQLAlchemy"):
        Integrations(app)


def test_init_app_form_and_app_extensions(tmp_path):
    app = Flask("factory")
    app.config.update(
        SECRET_KEY="s",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'f.db'}",
        INTEGRATIONS_ENCRYPTION_KEYS=[KEY],
    )
    db = SQLAlchemy(app)
    integrations = Integrations(db=db)
    integrations.init_app(app)
    assert app.extensions["integrations"] is integrations
    assert "integrations" in app.cli.commands


@pytest.mark.parametrize("second", ["same object", "another object"])
def test_a_second_init_of_one_app_is_a_clear_error(tmp_path, second):
    app = build(tmp_path)
    integrations = app.extensions["integrations"]
    again = integrations if second == "same object" else Integrations(db=integrations.db)
    with pytest.raises(ConfigurationError, match="already initialised on app 'config-test'"):
        again.init_app(app)
    assert app.extensions["integrations"] is integrations


def test_the_package_ships_its_type_information():
    import flask_integrations

    assert (Path(flask_integrations.__file__).parent / "py.typed").is_file()
    assert "py.typed" in (ROOT / "setup.cfg").read_text()


def test_uses_the_apps_flask_sqlalchemy_without_db(tmp_path):
    app = Flask("implicit-db")
    app.config.update(
        SECRET_KEY="s",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'i.db'}",
        INTEGRATIONS_ENCRYPTION_KEYS=[KEY],
    )
    db = SQLAlchemy(app)
    Integrations(app)
    assert app.extensions["integrations"].state_for(app).db is db
    assert "integrations" in db.metadata.tables


@dataclasses.dataclass
class _Creds:
    token: str


def test_register_validates_like_the_setting(tmp_path):
    from flask_integrations import ScheduledSync

    app = build(tmp_path)
    ext = app.extensions["integrations"]

    class Broken(Provider, ScheduledSync):
        credential_class = _Creds

    with pytest.raises(ConfigurationError, match=r"declares ScheduledSync but does not define sync\(\)"):
        ext.register("broken", Broken)

    class Fine(Provider, ScheduledSync):
        credential_class = _Creds

        def sync(self, integration, session):
            return None

    ext.register("fine", Fine)
    assert ext.state_for(app).provider("fine").key == "fine"


#: The names SPEC says are importable from `flask_integrations` itself.
SPEC_NAMES = (
    "Integrations",
    "Integration",
    "IntegrationRequest",
    "IntegrationLog",
    "IntegrationMapping",
    "IntegrationIdempotencyKey",
    "IntegrationSyncItem",
    "IntegrationWebhook",
    "Provider",
    "ScheduledSync",
    "IncrementalSync",
    "HandlesWebhooks",
    "HasHealthCheck",
    "OAuth2",
    "RedactsRequestData",
    "CustomizesRetry",
    "SupportsIdempotency",
    "SyncSession",
    "RequestContext",
    "ResponseSequence",
    "signals",
    "IntegrationsError",
    "ConfigurationError",
    "ValidationError",
    "CredentialsDecryptionError",
    "CircuitOpenError",
    "RateLimitExceeded",
    "IdempotencyConflict",
    "RetryableError",
    "MappingAlreadyClaimed",
    "IntegrationHTTPError",
    "ProviderNotRegistered",
    "StoreUnavailable",
)


def test_every_public_name_is_importable_from_the_package():
    import flask_integrations

    assert [name for name in SPEC_NAMES if not hasattr(flask_integrations, name)] == []
    assert set(SPEC_NAMES) <= set(flask_integrations.__all__)
    assert issubclass(flask_integrations.StoreUnavailable, flask_integrations.IntegrationsError)


def test_the_import_paths_the_docs_use_still_import():
    from flask_integrations.clock import utcnow  # noqa: F401
    from flask_integrations.cron import register, sync_due  # noqa: F401
    from flask_integrations.logs import (  # noqa: F401
        IntegrationContextFilter,
        LogSelect,
        append_request_ids,
        collect_request_ids,
        install_context_filter,
        operation_context,
    )
    from flask_integrations.providers import NO_HANDLER  # noqa: F401
    from flask_integrations.prune import prune  # noqa: F401
    from flask_integrations.queue import run_job  # noqa: F401
    from flask_integrations.testing import run_queued_jobs, send_webhook  # noqa: F401
    from flask_integrations.webhooks.jobs import process_webhook  # noqa: F401
