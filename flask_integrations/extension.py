"""`Integrations`: the Flask extension object, and the wiring of the package's layers.

`init_app` resolves an app's settings into its `AppState`, maps the models, and
registers the CLI group, the job hooks and the blueprints. At import, this module also
installs the functions behind the models' convenience methods (`db.services`): the
models live at the bottom of the package and import nothing above it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from . import config as config_module
from . import logs, mappings, queue
from .db.dialects import read_committed
from .db.mapping import map_models
from .db.models import Integration
from .db.services import ModelServices, install
from .errors import ConfigurationError
from .health import (
    incidents,  # noqa: F401 - connects its signal receivers
    summary,
)
from .health import status as health
from .lifecycle import credentials, records
from .oauth import tokens
from .pipeline import call, controls
from .pipeline.context import RequestContext, current_context
from .pipeline.writer import wait_for_thread_rows
from .providers import Provider, check_provider_class, load_provider
from .state import AppState, current_state
from .state.crypto import Keyring
from .state.store import import_redis_clients
from .sync import pacing, runs

install(
    ModelServices(
        provider=lambda key: current_state().provider(key),
        read_credentials=credentials.read,
        credentials_view=credentials.view,
        seal_credentials=credentials.seal,
        validate_metadata=credentials.validate_metadata,
        update=records.update,
        resolve_owner=records.resolve_owner,
        request=call.request,
        breaker_state=controls.breaker_state,
        reset_breaker=controls.reset_breaker,
        override=controls.override,
        clear_overrides=controls.clear_overrides,
        overrides=controls.current_overrides,
        forget_cache=controls.forget_cache,
        access_token=tokens.access_token,
        token_expires_soon=tokens.token_expires_soon,
        refresh_token_if_needed=tokens.refresh_token_if_needed,
        record_success=health.record_success,
        record_failure=health.record_failure,
        enable=health.enable,
        disable=health.disable,
        mark_synced=pacing.mark_synced,
        sync_now=runs.sync_now,
        failure_summary=summary.failure_summary,
        log_operation=logs.log_operation,
        finish_log=logs.finish,
        append_request_ids=logs.append_request_ids,
        map_external_id=mappings.map_external_id,
        remap_external_id=mappings.remap_external_id,
        resolve_mapping=mappings.resolve_mapping,
        resolve_mappings=mappings.resolve_mappings,
        find_external_id=mappings.find_external_id,
        upsert_by_external_id=mappings.upsert_by_external_id,
    )
)


class Integrations:
    """The connection layer between a Flask app and the third-party APIs it uses.

    Use as ``Integrations(app, db=db)`` or ``Integrations(db=db).init_app(app)``.
    Without `db`, the app's Flask-SQLAlchemy extension is used. One extension object
    may serve several apps; each app is initialised once.
    """

    def __init__(self, app: Flask | None = None, db: Any = None):
        self.db = db
        self._registered: dict[str, type[Provider]] = {}
        self._sync_handlers: dict[str, Callable[..., Any]] = {}
        self._states: weakref.WeakKeyDictionary[Flask, AppState] = weakref.WeakKeyDictionary()
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<Integrations providers={sorted(self._registered)}>"

    # -- set-up ------------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Set the extension up on `app`: settings, keys, providers, tables, CLI, jobs and routes.

        Raises `ConfigurationError` naming the setting at fault, or when `app` already
        has flask-integrations (from this object or another).
        """
        if "integrations" in app.extensions:
            raise ConfigurationError(
                f"flask-integrations is already initialised on app {app.name!r}: call "
                "Integrations(app) or init_app(app) once per app."
            )
        settings = config_module.load(app.config)
        for key, value in settings.items():
            app.config[key] = value
        db = self._resolve_db(app)
        with app.app_context():
            for engine in db.engines.values():
                read_committed(engine)
        keyring = Keyring(settings["INTEGRATIONS_ENCRYPTION_KEYS"])
        self._require_secret_key(app, settings)
        providers = {key: cls() for key, cls in self._load_providers(settings).items()}
        for key, provider in providers.items():
            provider.key = key
        tables = map_models(db, settings["INTEGRATIONS_TABLE_PREFIX"])
        self._states[app] = AppState(
            app=app, db=db, config=settings, keyring=keyring, providers=providers, tables=tables
        )
        app.extensions["integrations"] = self
        app.teardown_appcontext(_end_app_context)
        if settings["INTEGRATIONS_REDIS_URL"]:
            import_redis_clients()
        _register_faces(app, settings)

    def _resolve_db(self, app: Flask) -> Any:
        db = self.db or app.extensions.get("sqlalchemy")
        if db is None:
            raise ConfigurationError(
                "flask-integrations needs Flask-SQLAlchemy: create SQLAlchemy(app) first "
                "or pass Integrations(app, db=db)."
            )
        if "sqlalchemy" not in app.extensions:
            raise ConfigurationError("Call db.init_app(app) before Integrations.init_app(app).")
        return db

    @staticmethod
    def _require_secret_key(app: Flask, settings: dict[str, Any]) -> None:
        blueprints = settings["INTEGRATIONS_BLUEPRINTS"]
        needs = [name for name in ("dashboard", "oauth") if blueprints.get(name)]
        if needs and not app.config.get("SECRET_KEY"):
            raise ConfigurationError(
                f"SECRET_KEY is not set but the {' and '.join(needs)} blueprint is on "
                "(INTEGRATIONS_BLUEPRINTS); set SECRET_KEY or turn them off."
            )

    def _load_providers(self, settings: dict[str, Any]) -> dict[str, type[Provider]]:
        loaded = dict(self._registered)
        for key, target in settings["INTEGRATIONS_PROVIDERS"].items():
            cls = load_provider(key, target)
            check_provider_class(key, cls)
            loaded[key] = cls
        return loaded

    def register(self, key: str, provider: type[Provider]) -> None:
        """Register a provider class under `key`, for every app of this extension."""
        check_provider_class(key, provider, setting="integrations.register()")
        self._registered[key] = provider
        for state in self._states.values():
            instance = provider()
            instance.key = key
            state.providers[key] = instance

    def sync_handler(self, event: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``handler(integration, payload)`` for the sync items dispatched as `event`."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self._sync_handlers[event] = handler
            return handler

        return register

    def sync_handlers(self) -> dict[str, Callable[..., Any]]:
        """A copy of the registered sync handlers, by event."""
        return dict(self._sync_handlers)

    def state_for(self, app: Flask) -> AppState:
        """The `AppState` of `app`; a clear error if this extension was never initialised on it."""
        try:
            return self._states[app]
        except KeyError:
            raise RuntimeError(
                f"flask-integrations is not initialised on app {app.name!r}: call init_app(app)."
            ) from None

    def fake(self, responses: dict[str, Any] | None = None, passthrough: Iterable[str] = ()) -> Any:
        """Answer outbound calls from `responses` instead of calling out (see flask_integrations.testing).

        The calls of the providers named in `passthrough` still go out, through the whole
        pipeline; the fake records them as they go out. An unregistered name is a
        `ConfigurationError`.
        """
        from .testing.fake import install as install_fake

        return install_fake(self._states.values(), responses, passthrough)

    @staticmethod
    def current_context() -> RequestContext | None:
        """The `RequestContext` of the call in progress, or None outside a call."""
        return current_context()

    # -- lifecycle ---------------------------------------------------------------------------

    def create(
        self,
        provider: str,
        name: str,
        credentials: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        owner: Any = None,
        **columns: Any,
    ) -> Integration:
        """Validate, encrypt and commit a new integration of `provider`.

        Raises `ValidationError` naming every bad credential or metadata field (nothing
        is written then), `ProviderNotRegistered` for an unknown provider key.
        """
        return records.create(provider, name, credentials, metadata, owner, **columns)

    def get(self, integration_id: int) -> Integration | None:
        """The integration with this id, or None."""
        return current_state().db.session.get(Integration, integration_id)

    def delete(self, integration: Integration) -> None:
        """Remove an integration and all its rows, in chunks of the pruning `chunk_size`."""
        records.delete(integration)


def _register_faces(app: Flask, settings: dict[str, Any]) -> None:
    """The CLI group, the embedded job runner's hooks, and the blueprints that are on."""
    from .cli import integrations_cli

    if "integrations" not in app.cli.commands:
        app.cli.add_command(integrations_cli)
    queue.init_app(app)
    blueprints, prefix = settings["INTEGRATIONS_BLUEPRINTS"], settings["INTEGRATIONS_URL_PREFIX"]
    if blueprints.get("webhooks"):
        from .web.webhooks import register as register_webhooks

        register_webhooks(app, prefix)
    if blueprints.get("dashboard"):
        from .web.dashboard import register as register_dashboard

        register_dashboard(app, prefix)
    if blueprints.get("oauth"):
        from .web.oauth import register as register_oauth

        register_oauth(app, prefix)


def _end_app_context(_exc: BaseException | None) -> None:
    """Request rows queued by this app context's calls are committed before it ends (see writer.py),
    and the cache hits it counted are written (see `call.flush_hits_of_this_process`)."""
    wait_for_thread_rows()
    call.flush_hits_of_this_process(current_state(), in_request=queue.dispatching_request())
