"""The migration story, end to end, in real app directories on SQLite and PostgreSQL.

Every app here is a small user app written into ``tmp_path`` and driven through
the real CLI (``python -m flask --app app ...``) in subprocesses: the table
prefix is one per process, and this is what a user runs. PostgreSQL tests get a
throwaway database each (``fi_mig_<random>``), dropped afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet

import flask_integrations

pytestmark = pytest.mark.slow

PACKAGE_REVISIONS = Path(flask_integrations.__file__).parent / "migrations" / "versions"

APP_MODULE = '''\
"""A user's app, configured from the environment by tests/test_migrations.py."""

import os

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from flask_integrations import Integrations

app = Flask(__name__)
app.config.update(
    SECRET_KEY="migration-tests",
    SQLALCHEMY_DATABASE_URI=os.environ["APP_DATABASE_URL"],
    INTEGRATIONS_ENCRYPTION_KEYS=[os.environ["APP_FERNET_KEY"]],
    INTEGRATIONS_TABLE_PREFIX=os.environ["APP_TABLE_PREFIX"],
)
db = SQLAlchemy(app)
Migrate(app, db, directory=os.environ["APP_MIGRATIONS_DIR"])
Integrations(app, db=db)

if os.environ.get("APP_WITH_CUSTOMER"):

    class Customer(db.Model):
        """The app's own model, with a foreign key to an integration."""

        __tablename__ = "customers"
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(255), nullable=False)
        integration_id = db.Column(
            db.BigInteger, db.ForeignKey(app.config["INTEGRATIONS_TABLE_PREFIX"] + "s.id"), index=True
        )
'''

#: Prints every difference Alembic autogenerate finds between the app's models and its database.
SCHEMA_DIFF_SCRIPT = """\
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app import app, db

with app.app_context(), db.engine.connect() as connection:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    for difference in compare_metadata(context, db.metadata):
        print(repr(difference))
"""

#: An app revision written by hand: the app's history before it installs flask-integrations.
APP_REVISION = '''\
"""notes

Revision ID: {revision}
Revises: {down_label}
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("{table}", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade():
    op.drop_table("{table}")
'''

TS = ["created_at", "updated_at"]
SEED_COLUMNS = {
    "s": [
        "id", "provider", "name", "credentials", "metadata", "owner_type", "owner_id", "is_active",
        "health_status", "consecutive_failures", "last_error_at", "last_synced_at", "next_sync_at",
        "sync_interval_minutes", "sync_cursor", *TS,
    ],
    "_requests": [
        "id", "integration_id", "endpoint", "method", "status_code", "request_data", "idempotency_key",
        "provider_request_id", "response_data", "error", "duration_ms", "retry_of", "related_type",
        "related_id", "cache_hits", "stale_hits", *TS,
    ],
    "_logs": [
        "id", "integration_id", "operation", "direction", "status", "summary", "external_id", "metadata",
        "result_data", "error", "duration_ms", "parent_id", *TS,
    ],
    "_mappings": ["id", "integration_id", "external_id", "internal_type", "internal_id", *TS],
    "_idempotency_keys": ["id", "integration_id", "key", *TS],
    "_sync_items": [
        "id", "integration_id", "batch_id", "sync_log_id", "event_class", "external_id",
        "checkpoint_value", "status", "error", "attempts", "completed_at", *TS,
    ],
    "_webhooks": [
        "id", "integration_id", "provider", "event_type", "delivery_id", "payload", "headers", "status",
        "processed_at", *TS,
    ],
}  # fmt: skip
SPEC_ADDITIONS = {
    "_requests": ["failure_class"],
    "_webhooks": ["attempts", "error", "dedup_key"],
    "_sync_items": ["payload"],  # carries the dispatched payload to the worker
    "_idempotency_keys": ["request_id"],  # the call's answer, for IdempotencyConflict.response (fi_0004)
}
SPEC_LENGTHS = {
    ("_requests", "endpoint"): 2048,
    ("_logs", "external_id"): 500,
    ("_mappings", "external_id"): 500,
    ("_sync_items", "external_id"): 500,
    ("_idempotency_keys", "key"): 191,
    ("_sync_items", "batch_id"): 36,
    ("_sync_items", "status"): 16,
    ("s", "provider"): 255,
}


def expected_columns(suffix: str) -> set[str]:
    return set(SEED_COLUMNS[suffix]) | set(SPEC_ADDITIONS.get(suffix, []))


# -- the user app ------------------------------------------------------------------------------

FERNET_KEY = Fernet.generate_key().decode()


@dataclass
class UserApp:
    """One user app directory, driven through the real CLI in subprocesses."""

    path: Path
    database_url: str
    prefix: str = "integration"
    migrations: str = "migrations"
    with_customer: bool = False

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "APP_"))}
        env.update(
            APP_DATABASE_URL=self.database_url,
            APP_FERNET_KEY=FERNET_KEY,
            APP_TABLE_PREFIX=self.prefix,
            APP_MIGRATIONS_DIR=self.migrations,
        )
        if self.with_customer:
            env["APP_WITH_CUSTOMER"] = "1"
        return env

    def run(self, *argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, *argv],
            cwd=self.path,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if ok and result.returncode != 0:
            raise AssertionError(
                f"`{' '.join(argv)}` exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def flask(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "flask", "--app", "app", *args, ok=ok)

    def schema_diff(self) -> str:
        (self.path / "schema_diff.py").write_text(SCHEMA_DIFF_SCRIPT)
        return self.run("schema_diff.py").stdout.strip()

    @property
    def versions(self) -> Path:
        return self.path / self.migrations / "versions"

    def version_files(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(self.versions.glob("*.py"))}

    def write_revision(self, revision: str, down: str | None, table: str) -> None:
        self.versions.joinpath(f"{revision}_{table}.py").write_text(
            APP_REVISION.format(
                revision=revision, down=f'"{down}"' if down else "None", down_label=down or "", table=table
            )
        )

    def script(self) -> ScriptDirectory:
        return ScriptDirectory(str(self.path / self.migrations))


@pytest.fixture(scope="session")
def migrations_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `migrations/` directory `flask db init` writes, made once and copied into each app."""
    app = UserApp(tmp_path_factory.mktemp("template"), "sqlite:///unused.db")
    (app.path / "app.py").write_text(APP_MODULE)
    app.flask("db", "init")
    assert (app.versions).is_dir()
    return app.path / "migrations"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mysql),
    ]
)
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a throwaway PostgreSQL or MariaDB database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    postgres = request.param == "postgresql"
    server = sa.make_url(request.getfixturevalue("postgres_url" if postgres else "mysql_url"))
    name = f"fi_mig_{secrets.token_hex(6)}"
    create, drop = (
        (f'CREATE DATABASE "{name}"', f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if postgres
        else (f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4", f"DROP DATABASE IF EXISTS `{name}`")
    )
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(create))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(drop))
        admin.dispose()


def new_app(path: Path, database_url: str, template: Path, initialised: bool = True, **options) -> UserApp:
    """A user app in `path`; `initialised` copies in what `flask db init` writes."""
    app = UserApp(path, database_url, **options)
    (path / "app.py").write_text(APP_MODULE)
    if initialised:
        shutil.copytree(template, path / app.migrations)
    return app


@pytest.fixture
def make_app(tmp_path: Path, fresh_database_url: str, migrations_template: Path):
    """User apps on each backend, each with an empty database."""
    return lambda **options: new_app(tmp_path, fresh_database_url, migrations_template, **options)


@pytest.fixture
def make_sqlite_app(tmp_path: Path, migrations_template: Path):
    """User apps for the paths that only read and write files (publishing never connects)."""
    return lambda **options: new_app(
        tmp_path, f"sqlite:///{tmp_path / 'app.db'}", migrations_template, **options
    )


def schema(app: UserApp) -> dict[str, dict]:
    """What the database holds, per table: columns, uniques, indexes, constraint names."""
    engine = sa.create_engine(app.database_url)
    try:
        inspector = sa.inspect(engine)
        tables = {}
        for table in inspector.get_table_names():
            tables[table] = {
                "columns": {c["name"]: c for c in inspector.get_columns(table)},
                "uniques": {u["name"]: u["column_names"] for u in inspector.get_unique_constraints(table)},
                "indexes": {i["name"]: i["column_names"] for i in inspector.get_indexes(table)},
                "foreign_keys": {f["name"]: f for f in inspector.get_foreign_keys(table)},
                "primary_key": inspector.get_pk_constraint(table)["name"],
                "sqlite_autoincrement": _sqlite_autoincrement(engine, table),
                "options": inspector.get_table_options(table),
            }
        return tables
    finally:
        engine.dispose()


def _sqlite_autoincrement(engine: sa.Engine, table: str) -> bool:
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect() as connection:
        sql = connection.scalar(sa.text("SELECT sql FROM sqlite_master WHERE name = :name"), {"name": table})
    return "AUTOINCREMENT" in sql.upper()


def current_revision(app: UserApp) -> list[str]:
    engine = sa.create_engine(app.database_url)
    try:
        with engine.connect() as connection:
            return sorted(connection.scalars(sa.text("SELECT version_num FROM alembic_version")))
    finally:
        engine.dispose()


def assert_integration_schema(tables: dict[str, dict], p: str, dialect: str) -> None:
    """The seven tables, with the seed's columns, SPEC's lengths and additions, and prefixed names."""
    assert {f"{p}{suffix}" for suffix in SEED_COLUMNS} <= set(tables)
    for suffix in SEED_COLUMNS:
        table = tables[f"{p}{suffix}"]
        assert set(table["columns"]) == expected_columns(suffix), suffix
        timestamps = {name: c["type"] for name, c in table["columns"].items() if name.endswith("_at")}
        assert timestamps, suffix
        if dialect == "postgresql":
            for name, type_ in timestamps.items():
                assert isinstance(type_, sa.DateTime) and type_.timezone, f"{p}{suffix}.{name} is {type_}"
        if dialect == "mysql":  # naive UTC, to the microsecond; text compared byte for byte
            assert table["options"]["mysql_collate"] == "utf8mb4_bin", suffix
            for name, type_ in timestamps.items():
                assert isinstance(type_, sa.DateTime) and type_.fsp == 6, f"{p}{suffix}.{name} is {type_}"
        # On SQLite every key is INTEGER PRIMARY KEY AUTOINCREMENT (no id is ever reused; request ids
        # are reserved ahead of their rows: pipeline/rows.py), declared inline, and so without a name.
        inline_key = dialect == "sqlite"
        assert table["sqlite_autoincrement"] == inline_key, suffix
        # MySQL names every primary key PRIMARY, whatever the DDL said.
        names = (
            ([] if inline_key or dialect == "mysql" else [("pk", table["primary_key"])])
            + [("uq", n) for n in table["uniques"]]
            + [("fk", n) for n in table["foreign_keys"]]
            + [("ix", n) for n in table["indexes"] if n not in table["uniques"]]
        )
        for kind, name in names:
            assert name and name.startswith(f"{kind}_{p}"), f"{p}{suffix}: {kind} named {name!r}"
    for (suffix, column), length in SPEC_LENGTHS.items():
        assert tables[f"{p}{suffix}"]["columns"][column]["type"].length == length, (suffix, column)
    uniques = {
        name: cols for suffix in SEED_COLUMNS for name, cols in tables[f"{p}{suffix}"]["uniques"].items()
    }
    assert uniques == {
        f"uq_{p}_map_external": ["integration_id", "external_id", "internal_type"],
        f"uq_{p}_idem_key": ["integration_id", "key"],
        f"uq_{p}_wh_dedup": ["dedup_key"],
    }
    item_indexes = sorted(tables[f"{p}_sync_items"]["indexes"].values())
    assert item_indexes == sorted(
        [["integration_id", "status"], ["integration_id", "created_at"], ["sync_log_id", "status"],
         ["batch_id", "status"], ["status", "id"], ["sync_log_id", "external_id"]]
    )  # fmt: skip


#: The last revision the package ships.
HEAD = "fi_0006"


def dialect_of(app: UserApp) -> str:
    return sa.make_url(app.database_url).get_backend_name()


# -- 1 and 2: a fresh app ------------------------------------------------------------------------


def test_fresh_app_publish_and_upgrade_create_the_schema_the_models_describe(make_app) -> None:
    app = make_app()

    published = app.flask("integrations", "publish-migrations")
    assert "fi_0001" in published.stdout and "revises base" in published.stdout
    assert "revision fi_0002, revises fi_0001" in published.stdout
    assert "revision fi_0003, revises fi_0002" in published.stdout
    assert "revision fi_0004, revises fi_0003" in published.stdout
    assert "revision fi_0005, revises fi_0004" in published.stdout
    assert "revision fi_0006, revises fi_0005" in published.stdout
    assert list(app.version_files()) == [
        "fi_0001_initial.py",
        "fi_0002_sqlite_autoincrement.py",
        "fi_0003_sync_item_external_ids.py",
        "fi_0004_idempotency_responses.py",
        "fi_0005_covering_figures_index.py",
        "fi_0006_requests_explorer_indexes.py",
    ]
    app.flask("db", "upgrade")

    assert current_revision(app) == [HEAD]
    assert_integration_schema(schema(app), "integration", dialect_of(app))
    assert app.schema_diff() == ""


# -- 3: chaining onto the app's own history ------------------------------------------------------


def test_publish_chains_onto_the_apps_head_once(make_app) -> None:
    app = make_app()
    app.write_revision("app_0001", None, "notes")
    app.write_revision("app_0002", "app_0001", "tags")

    published = app.flask("integrations", "publish-migrations")
    assert "revises app_0002" in published.stdout
    script = app.script()
    assert script.get_heads() == [HEAD]
    assert script.get_revision("fi_0001").down_revision == "app_0002"
    assert script.get_revision("fi_0002").down_revision == "fi_0001"
    assert script.get_revision("fi_0003").down_revision == "fi_0002"
    assert script.get_revision("fi_0004").down_revision == "fi_0003"
    assert script.get_revision("fi_0005").down_revision == "fi_0004"
    assert script.get_revision("fi_0006").down_revision == "fi_0005"

    before = app.version_files()
    again = app.flask("integrations", "publish-migrations")
    assert "Nothing to publish" in again.stdout
    assert app.version_files() == before

    app.flask("db", "upgrade")
    assert current_revision(app) == [HEAD]
    assert {"notes", "tags", "integrations", "integration_webhooks"} <= set(schema(app))

    app.flask("db", "downgrade", "app_0002")
    assert current_revision(app) == ["app_0002"]
    assert set(schema(app)) == {"alembic_version", "notes", "tags"}


# -- 4 and 5: another prefix and directory, and the app's own autogenerate ---------------------


def upgrade_body(revision_text: str) -> str:
    return revision_text.split("def upgrade", 1)[1].split("def downgrade", 1)[0]


def test_another_prefix_end_to_end_and_the_apps_migrate_touches_only_its_model(make_app) -> None:
    app = make_app(prefix="acme_int", migrations="db/migrations", with_customer=True)

    app.flask("integrations", "publish-migrations")  # into Migrate(app, db, directory="db/migrations")
    assert 'PREFIX = "acme_int"' in app.version_files()["fi_0001_initial.py"]
    assert not (app.path / "migrations").exists()
    app.flask("db", "upgrade")

    tables = schema(app)
    assert not [t for t in tables if "integration" in t]
    assert {t for t in tables if t.startswith("acme_int")} == {
        "acme_ints", "acme_int_requests", "acme_int_logs", "acme_int_mappings",
        "acme_int_idempotency_keys", "acme_int_sync_items", "acme_int_webhooks",
    }  # fmt: skip
    assert_integration_schema(tables, "acme_int", dialect_of(app))

    # The app's `flask db migrate` proposes its Customer model (FK to acme_ints.id) and nothing else.
    before = set(app.version_files())
    result = app.flask("db", "migrate", "-m", "customers")
    new = {name: text for name, text in app.version_files().items() if name not in before}
    assert len(new) == 1, result.stderr
    (text,) = new.values()
    assert f"down_revision = '{HEAD}'" in text
    detected = [line for line in result.stderr.splitlines() if "Detected" in line and "sequence" not in line]
    assert detected and all("customers" in line for line in detected), detected
    assert {table for _, table in re.findall(r"\bop\.(\w+)\(\s*['\"](\w+)['\"]", text)} == {"customers"}
    upgrade = upgrade_body(text)
    assert "drop" not in upgrade and "alter_column" not in upgrade and "add_column" not in upgrade
    mentions = [line.strip() for line in upgrade.splitlines() if "acme_int" in line]
    assert len(mentions) == 1 and "ForeignKeyConstraint" in mentions[0], mentions
    assert "'acme_ints.id'" in mentions[0], mentions

    app.flask("db", "upgrade")
    customers = schema(app)["customers"]
    assert [fk["referred_table"] for fk in customers["foreign_keys"].values()] == ["acme_ints"]
    assert app.schema_diff() == ""


# -- 6: errors (publishing reads and writes files only, so SQLite stands for both backends) ------


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_publish_without_a_migrations_directory_fails_clearly(make_sqlite_app) -> None:
    app = make_sqlite_app(initialised=False, migrations="db/migrations")

    line = one_error_line(app.flask("integrations", "publish-migrations", ok=False))

    assert "'db/migrations'" in line and "flask db init" in line
    assert not (app.path / "db").exists()


def test_publish_refuses_an_app_with_two_heads(make_sqlite_app) -> None:
    app = make_sqlite_app()
    app.write_revision("app_a1", None, "notes")
    app.write_revision("app_b2", None, "tags")

    line = one_error_line(app.flask("integrations", "publish-migrations", ok=False))

    assert "app_a1" in line and "app_b2" in line and "flask db merge" in line
    assert "fi_0001_initial.py" not in app.version_files()


def test_publish_refuses_a_prefix_other_than_the_published_one(make_sqlite_app) -> None:
    app = make_sqlite_app(prefix="acme_int")
    shutil.copy(PACKAGE_REVISIONS / "fi_0001_initial.py", app.versions)  # published with the default prefix

    line = one_error_line(app.flask("integrations", "publish-migrations", ok=False))

    assert "'integration'" in line and "'acme_int'" in line


# -- 7: fi_0002 on a database of the first release ----------------------------------------------


def test_upgrading_a_first_release_sqlite_database_keeps_its_rows_and_never_reuses_an_id(
    make_sqlite_app,
) -> None:
    app = make_sqlite_app()
    app.flask("integrations", "publish-migrations")
    app.flask("db", "upgrade", "fi_0001")
    engine = sa.create_engine(app.database_url)
    now = "2026-12-01 00:00:00.000000"
    columns = (
        "provider, name, credentials, is_active, health_status, consecutive_failures, created_at, updated_at"
    )
    insert = sa.text(
        f"INSERT INTO integrations ({columns}) VALUES ('p', :name, 'x', 1, 'healthy', 0, :t, :t)"
    )
    try:
        with engine.begin() as connection:
            for name in ("kept", "also kept"):
                connection.execute(insert, {"name": name, "t": now})
            connection.execute(
                sa.text(
                    "INSERT INTO integration_webhooks (integration_id, provider, payload, status, attempts, "
                    "created_at, updated_at) VALUES (2, 'p', '{}', 'pending', 0, :t, :t)"
                ),
                {"t": now},
            )

        app.flask("db", "upgrade")

        assert current_revision(app) == [HEAD]
        assert all(
            table["sqlite_autoincrement"] for name, table in schema(app).items() if name != "alembic_version"
        )
        assert_integration_schema(schema(app), "integration", "sqlite")
        assert app.schema_diff() == ""
        with engine.begin() as connection:
            assert connection.execute(sa.text("SELECT id, name FROM integrations ORDER BY id")).all() == [
                (1, "kept"),
                (2, "also kept"),
            ]
            assert connection.scalar(sa.text("SELECT integration_id FROM integration_webhooks")) == 2
            connection.execute(insert, {"name": "newest", "t": now})
            connection.execute(sa.text("DELETE FROM integrations WHERE name = 'newest'"))
            connection.execute(insert, {"name": "after the delete", "t": now})
            ids = connection.execute(sa.text("SELECT name, id FROM integrations ORDER BY id")).all()
        assert ids[-1] == ("after the delete", 4)  # 3 belonged to the deleted one
    finally:
        engine.dispose()


# -- 8: fi_0004 on a database with idempotency keys ---------------------------------------------


def test_fi_0004_adds_the_keys_request_id_and_its_downgrade_keeps_the_keys(make_app) -> None:
    app = make_app()
    app.flask("integrations", "publish-migrations")
    app.flask("db", "upgrade", "fi_0003")
    engine = sa.create_engine(app.database_url)
    now = {"t": "2026-12-01 00:00:00"}
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO integrations (provider, name, credentials, is_active, health_status, "
                    "consecutive_failures, created_at, updated_at) "
                    "VALUES ('p', 'n', 'x', TRUE, 'healthy', 0, :t, :t)"
                ),
                now,
            )
            keys_table = sa.Table("integration_idempotency_keys", sa.MetaData(), autoload_with=connection)
            when = datetime(2026, 12, 1)
            connection.execute(
                sa.insert(keys_table).values(
                    integration_id=1, key="charge-1", created_at=when, updated_at=when
                )
            )

        app.flask("db", "upgrade")
        assert current_revision(app) == [HEAD]
        assert app.schema_diff() == ""
        with engine.begin() as connection:
            keys_table = sa.Table("integration_idempotency_keys", sa.MetaData(), autoload_with=connection)
            keys = connection.execute(sa.select(keys_table.c.key, keys_table.c.request_id)).all()
        assert keys == [("charge-1", None)]

        app.flask("db", "downgrade", "fi_0003")
        assert "request_id" not in schema(app)["integration_idempotency_keys"]["columns"]
        with engine.begin() as connection:
            keys_table = sa.Table("integration_idempotency_keys", sa.MetaData(), autoload_with=connection)
            assert connection.scalar(sa.select(keys_table.c.key)) == "charge-1"  # `key` is reserved in MySQL
        if dialect_of(app) == "sqlite":
            assert schema(app)["integration_idempotency_keys"]["sqlite_autoincrement"]
    finally:
        engine.dispose()
