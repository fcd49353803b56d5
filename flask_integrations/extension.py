"""`Integrations`: the Flask extension object."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from importlib import import_module
from typing import Any

import sqlalchemy as sa
from flask import Flask

from . import config as config_module
from .crypto import Keyring
from .errors import ConfigurationError, ValidationError
from .models import Integration, map_models, polymorphic_ref
from .providers import Provider, check_provider_class
from .state import AppState, current_state
from .store import import_redis_clients

# Child tables removed by `delete`, in an order that respects their foreign keys.
_CHILD_TABLES = ("sync_items", "requests", "idempotency_keys", "mappings", "webhooks", "logs")


class Integrations:
    """The connection layer between a Flask app and the third-party APIs it uses.

    Use as ``Integrations(app, db=db)`` or ``Integrations(db=db).init_app(app)``.
    Without `db`, the app's Flask-SQLAlchemy extension is used.
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
        settings = config_module.load(app.config)
        for key, value in settings.items():
            app.config[key] = value
        db = self._resolve_db(app)
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
        app.teardown_appcontext(_wait_for_request_rows)
        if settings["INTEGRATIONS_REDIS_URL"]:
            import_redis_clients()
        from .cli import integrations_cli

        if "integrations" not in app.cli.commands:
            app.cli.add_command(integrations_cli)
        self._init_webhooks(app, settings)

    @staticmethod
    def _init_webhooks(app: Flask, settings: dict[str, Any]) -> None:
        """Background jobs after commit (see queue.py) and the webhook routes."""
        from . import queue

        queue.init_app(app)
        if settings["INTEGRATIONS_BLUEPRINTS"].get("webhooks"):
            from .webhooks.blueprint import register

            register(app, settings["INTEGRATIONS_URL_PREFIX"])
        if settings["INTEGRATIONS_BLUEPRINTS"].get("dashboard"):
            from .dashboard.blueprint import register as register_dashboard

            register_dashboard(app, settings["INTEGRATIONS_URL_PREFIX"])
        if settings["INTEGRATIONS_BLUEPRINTS"].get("oauth"):
            from .oauth.blueprint import register as register_oauth

            register_oauth(app, settings["INTEGRATIONS_URL_PREFIX"])

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
            cls = _import_provider(key, target)
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
        return dict(self._sync_handlers)

    def state_for(self, app: Flask) -> AppState:
        try:
            return self._states[app]
        except KeyError:
            raise RuntimeError(
                f"flask-integrations is not initialised on app {app.name!r}: call init_app(app)."
            ) from None

    def fake(self, responses: dict[str, Any] | None = None) -> Any:
        """Answer outbound calls from `responses` instead of calling out (see flask_integrations.testing)."""
        from .testing.fake import install

        return install(self._states.values(), responses)

    @staticmethod
    def current_context() -> Any:
        """The `RequestContext` of the call in progress, or None outside a call."""
        from .pipeline.context import current_context

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
        """Validate, encrypt and commit a new integration."""
        state = current_state()
        instance = state.provider(provider)
        validated = instance.validate_credentials(credentials)
        if metadata is not None or instance.metadata_class is not None:
            metadata = instance.validate_metadata(metadata if metadata is not None else {})
        unknown = {c: "not a column of Integration" for c in columns if not hasattr(Integration, c)}
        if unknown:
            raise ValidationError(f"new integration of provider {provider!r}", unknown)
        if owner is not None:
            columns["owner_type"], columns["owner_id"] = polymorphic_ref(owner, "owner")
        integration = Integration(provider=provider, name=name, metadata=metadata, **columns)
        integration._pending_credentials = None
        integration._credentials_token = state.keyring.encrypt(validated)
        state.db.session.add(integration)
        state.db.session.commit()
        return integration

    def get(self, integration_id: int) -> Integration | None:
        return current_state().db.session.get(Integration, integration_id)

    def delete(self, integration: Integration) -> None:
        """Remove an integration and all its rows, in chunks of the pruning `chunk_size`."""
        state = current_state()
        session = state.db.session
        chunk = state.setting("PRUNING")["chunk_size"]
        integration_id = integration.id
        session.commit()
        for kind in _CHILD_TABLES:
            table = state.tables[kind]
            while True:
                select_ids = (
                    sa.select(table.c.id).where(table.c.integration_id == integration_id).limit(chunk)
                )
                ids = session.scalars(select_ids).all()
                if not ids:
                    break
                session.execute(sa.delete(table).where(table.c.id.in_(ids)))
                session.commit()
        session.delete(integration)
        session.commit()


def _import_provider(key: str, target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"INTEGRATIONS_PROVIDERS[{key!r}] must be a class or 'module:Class', got {target!r}."
        )
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"INTEGRATIONS_PROVIDERS[{key!r}]: cannot import {module_name!r} ({exc})."
        ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(
            f"INTEGRATIONS_PROVIDERS[{key!r}]: module {module_name!r} has no {attribute!r}."
        ) from None


def _wait_for_request_rows(_exc: BaseException | None) -> None:
    """Request rows queued by this app context's calls are committed before it ends (see writer.py)."""
    from .pipeline.writer import wait_for_thread_rows

    wait_for_thread_rows()
