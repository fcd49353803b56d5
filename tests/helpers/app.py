"""Shared pieces of the test suite: the db object, demo providers, app factory."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flask_integrations import HasHealthCheck, Integrations, Provider

POSTGRES_URL = os.environ.get(
    "INTEGRATIONS_TEST_POSTGRES_URL",
    "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/integrations_test",
)
MYSQL_URL = os.environ.get(
    "INTEGRATIONS_TEST_MYSQL_URL",
    "mysql+pymysql://integrations:integrations@127.0.0.1:3306/integrations_test",
)
REDIS_URL = os.environ.get("INTEGRATIONS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVERS = os.environ.get("INTEGRATIONS_TEST_REQUIRE_SERVERS") == "1"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test for want of a server or a tool, or fail it when REQUIRE_SERVERS (as CI sets)."""
    import pytest  # here, not at the top: worker processes import this module too

    if REQUIRE_SERVERS:
        pytest.fail(reason)
    pytest.skip(reason)


#: A fixed key, so that processes a test spawns can read what the test wrote.
KEY = os.environ.get("INTEGRATIONS_TEST_KEY", "GOG6nX3HaDRb9-Wp0rP47_9_1fSF18E86KyE0yY-yD4=")

#: One Flask-SQLAlchemy object serves every test app, as it would serve an app factory.
db = SQLAlchemy()


@contextmanager
def recorded_statements() -> Iterator[list[str]]:
    """The SQL statements `db.engine` runs inside the block, in order."""
    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", note)


@dataclasses.dataclass
class TicketCredentials:
    api_key: str
    subdomain: str
    timeout: int = 10
    verify: bool = True


@dataclasses.dataclass
class TicketMetadata:
    team: str
    tags: list[str] = dataclasses.field(default_factory=list)


class Tickets(Provider, HasHealthCheck):
    """A provider with typed credentials and metadata."""

    name = "Tickets"
    credential_class = TicketCredentials
    metadata_class = TicketMetadata
    base_url = "http://127.0.0.1:9/api"
    sync_interval = 15

    def health_check(self, integration: Any) -> bool:
        return integration.credentials.api_key != "broken"


class Loose(Provider):
    """A provider that accepts any dict."""


ROOT = Path(__file__).resolve().parents[2]


def run_docs_example(doc: str, pattern: str, cwd: Path, **env: str) -> list[str]:
    """Run the code `pattern` finds in `docs/<doc>` (its group 1) as a script in `cwd`, with the
    repository importable and `env` added; assert that it exits 0, and return its output lines."""
    code = re.search(pattern, (ROOT / "docs" / doc).read_text(), re.S)[1]
    script = cwd / f"{Path(doc).stem}_example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, script.name],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def make_app(database_url: str, **config: Any) -> Flask:
    app = Flask("tests")
    app.config.update(
        TESTING=True,
        SECRET_KEY="test-secret-key",
        SQLALCHEMY_DATABASE_URI=database_url,
        INTEGRATIONS_ENCRYPTION_KEYS=[KEY],
        INTEGRATIONS_PROVIDERS={"tickets": Tickets, "loose": Loose},
    )
    app.config.update(config)
    db.init_app(app)
    Integrations(app, db=db)
    return app


class FakeClock:
    """A clock tests move by hand (stores take `clock=`)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
