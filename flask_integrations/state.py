"""Per-app state of the extension, and how code below the routes reaches it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, has_app_context

from .errors import ProviderNotRegistered

if TYPE_CHECKING:  # pragma: no cover
    from flask_sqlalchemy import SQLAlchemy

    from .crypto import Keyring
    from .providers import Provider


@dataclass(eq=False)
class AppState:
    """What `init_app` resolved for one app: settings, keys, providers, database."""

    app: Flask
    db: SQLAlchemy
    config: dict[str, Any]
    keyring: Keyring
    providers: dict[str, Provider] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    #: the active `integrations.fake(...)`, if a test installed one
    fake: Any = None

    def __repr__(self) -> str:
        return f"<AppState app={self.app.name!r} providers={sorted(self.providers)}>"

    def provider(self, key: str) -> Provider:
        try:
            return self.providers[key]
        except KeyError:
            raise ProviderNotRegistered(key) from None

    def setting(self, name: str) -> Any:
        return self.config["INTEGRATIONS_" + name]


def current_state() -> AppState:
    """The state of the current app; a clear error outside an app context."""
    if not has_app_context():
        raise RuntimeError(
            "flask-integrations needs an application context: run this inside a request, "
            "a CLI command or `with app.app_context():`."
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    extension = app.extensions.get("integrations")
    if extension is None:
        raise RuntimeError(
            f"flask-integrations is not initialised on app {app.name!r}: call Integrations(app)."
        )
    return extension.state_for(app)
