from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_integrations.state.memory_store import MemoryStore
from flask_integrations.state.redis_store import RedisStore
from flask_integrations.state.store import Store
from tests.helpers.app import MYSQL_URL, POSTGRES_URL, REDIS_URL, FakeClock, db, make_app, skip_or_fail
from tests.helpers.oauth import AuthServer
from tests.helpers.upstream import UpstreamServer

pytest_plugins = ["pytester"]

SERVER_MARKS = ("slow", "postgres", "mysql", "redis", "browser")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast", action="store_true", help="Run only the fast tests (no servers, no slow or browser tests)."
    )
    parser.addoption(
        "--load-seconds", default=None, help="Length of the reliability suite's load run (default 60 s)."
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--fast"):
        return
    selected, deselected = [], []
    for item in items:
        (deselected if any(item.get_closest_marker(m) for m in SERVER_MARKS) else selected).append(item)
    config.hook.pytest_deselected(items=deselected)
    items[:] = selected


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url.replace("+psycopg", "").replace("+pymysql", "").replace("+mysqldb", ""))
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), 1):
            return True
    except OSError:
        return False


def require_server(name: str, url: str, port: int) -> None:
    if _reachable(url, port):
        return
    skip_or_fail(f"{name} is not reachable at {url}; `bash .ci/run` starts it")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require_server("PostgreSQL", POSTGRES_URL, 5432)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def mysql_url() -> str:
    require_server("MariaDB/MySQL", MYSQL_URL, 3306)
    return MYSQL_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    require_server("Redis", REDIS_URL, 6379)
    return REDIS_URL


#: The server databases a test can be parametrised over, each with its marker and URL fixture.
SERVER_DATABASES = {"postgresql": "postgres_url", "mariadb": "mysql_url"}
DATABASE_PARAMS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mysql),
]


@pytest.fixture(params=DATABASE_PARAMS)
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return request.getfixturevalue(SERVER_DATABASES[request.param])


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mysql),
    ]
)
def server_database_url(request: pytest.FixtureRequest) -> str:
    """PostgreSQL, then MariaDB: for the multi-process proofs, which SQLite does not serve."""
    return request.getfixturevalue(SERVER_DATABASES[request.param])


@pytest.fixture
def app_factory(database_url: str) -> Iterator:
    """Build test apps on the current backend; tables are created empty."""

    def build(**config) -> Flask:
        app = make_app(database_url, **config)
        with app.app_context():
            reset_tables()
        return app

    yield build


_fresh_schema: set[str] = set()


def reset_tables() -> None:
    """Empty tables for a test. On the servers the schema is rebuilt once per process, so a
    database left by an older checkout (another column set) cannot leak into this run."""
    engine = db.engine
    url = engine.url.render_as_string(hide_password=True)
    if engine.dialect.name != "sqlite" and url not in _fresh_schema:
        _drop_everything(engine)
        _fresh_schema.add(url)
    db.metadata.create_all(engine)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in reversed(db.metadata.sorted_tables))
            connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        elif engine.dialect.name in ("mysql", "mariadb"):
            connection.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
            for table in db.metadata.sorted_tables:
                connection.execute(sa.text(f"TRUNCATE TABLE `{table.name}`"))
            connection.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))


def _drop_everything(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("DROP SCHEMA public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))
            return
        connection.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
        for name in sa.inspect(connection).get_table_names():
            connection.execute(sa.text(f"DROP TABLE `{name}`"))
        connection.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))


@pytest.fixture(autouse=True)
def _close_database_connections() -> Iterator[None]:
    """Give every test app's connections back to the server when the test ends.

    Apps and their engines would otherwise wait for the garbage collector, and a
    long run exhausts PostgreSQL's max_connections.
    """
    yield
    for app, engines in list(db._app_engines.items()):
        extension = app.extensions.get("integrations")
        if extension is not None:
            extension.state_for(app).dispose_engines()
        for engine in engines.values():
            engine.dispose()


@pytest.fixture
def app(app_factory) -> Flask:
    return app_factory()


@pytest.fixture
def ext(app: Flask):
    return app.extensions["integrations"]


@pytest.fixture
def ctx(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield
        db.session.remove()


@pytest.fixture
def integration(ext, ctx):
    return ext.create(
        "tickets",
        "Acme tickets",
        {"api_key": "sk-live-123", "subdomain": "acme"},
        metadata={"team": "support"},
    )


@pytest.fixture(scope="module")
def upstream_server() -> Iterator[UpstreamServer]:
    """The loopback upstream (tests/helpers/upstream.py), one per test module; `reset()` empties it."""
    server = UpstreamServer().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(upstream_server: UpstreamServer) -> UpstreamServer:
    """The module's loopback upstream, emptied for this test."""
    upstream_server.reset()
    return upstream_server


@pytest.fixture(scope="module")
def auth_server() -> Iterator[AuthServer]:
    """The fake OAuth server (tests/helpers/oauth.py), one per test module; `reset()` empties it."""
    server = AuthServer().start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(clock=clock)
        return
    url = request.getfixturevalue("redis_url")
    redis_store = RedisStore(url, prefix=f"test:{uuid.uuid4().hex[:8]}:", clock=clock)
    yield redis_store
    redis_store.delete_prefix("")
    redis_store.close()
