"""Opt-in pytest fixtures: ``pytest_plugins = ["flask_integrations.testing.pytest_plugin"]``.

They build on the app's own `app` fixture (as pytest-flask does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask


@pytest.fixture
def integrations_app(app: Flask) -> Iterator[Flask]:
    """The app, with an application context pushed for the test."""
    if "integrations" not in app.extensions:
        raise RuntimeError("The `app` fixture's app has no Integrations(app): initialise the extension.")
    with app.app_context():
        yield app


@pytest.fixture
def integrations_db(integrations_app: Flask) -> Iterator[Any]:
    """The app's Flask-SQLAlchemy object with every table created, dropped afterwards."""
    db = integrations_app.extensions["integrations"].state_for(integrations_app).db
    db.create_all()
    yield db
    db.session.remove()
    db.drop_all()


@pytest.fixture
def integration(integrations_app: Flask, integrations_db: Any) -> Callable[..., Any]:
    """A factory: ``integration("github", credentials={...}, name="Acme", **columns)``."""
    extension = integrations_app.extensions["integrations"]

    def create(
        provider: str, credentials: dict[str, Any] | None = None, name: str | None = None, **columns: Any
    ) -> Any:
        return extension.create(provider, name or f"Test {provider}", credentials or {}, **columns)

    return create
