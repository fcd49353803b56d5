"""Publishing the package's Alembic revisions into an app's migrations directory.

The shipped revisions live in ``flask_integrations/migrations/versions/``.
Publishing copies each one the app does not have yet into the app's version
directory, rewriting two lines: ``down_revision`` (the app's current head, so
the history stays a single line) and ``PREFIX`` (INTEGRATIONS_TABLE_PREFIX).
The published files do not import flask_integrations: they keep working
whatever later versions of the package change.

The app's migration directory is found the way Flask-Migrate finds it: the
``--directory`` option, else the ``directory`` given to ``Migrate(app, db,
directory=...)``, else ``migrations``; relative paths are relative to the
current working directory. Alembic's own configuration of that directory
(``alembic.ini``, Flask-Migrate's ``@migrate.configure`` callbacks) decides
where its version files live.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from flask import current_app

from ..errors import IntegrationsError
from ..state import current_state

SOURCE = Path(__file__).parent / "versions"
_REVISION = re.compile(r'^revision = "([^"]+)"$', re.M)
_DOWN = re.compile(r"^down_revision = .*$", re.M)
_PREFIX = re.compile(r'^PREFIX = "([^"]*)"$', re.M)
_REVISES = re.compile(r"^Revises:.*$", re.M)


@dataclass(frozen=True)
class Published:
    """One revision written into the app's versions directory."""

    path: Path
    revision: str
    down_revision: str | None


def package_revisions() -> list[tuple[str, Path]]:
    """(revision id, file) of every shipped revision, oldest first."""
    revisions = []
    for path in sorted(SOURCE.glob("fi_*.py")):
        match = _REVISION.search(path.read_text())
        if match:
            revisions.append((match.group(1), path))
    return revisions


def app_migrations_directory(directory: str | None = None) -> Path:
    """The app's Alembic directory, resolved like Flask-Migrate's ``flask db`` commands."""
    if directory is None:
        migrate = current_app.extensions.get("migrate")
        directory = getattr(migrate, "directory", None) or "migrations"
    path = Path(directory)
    if not (path / "env.py").is_file():
        raise IntegrationsError(
            f"No Alembic migrations directory at {str(path)!r} (no env.py): "
            "run `flask db init` first, or pass --directory."
        )
    return path


def _alembic_config(directory: Path) -> Config:
    """The Alembic configuration `flask db ...` would use for `directory`."""
    migrate = current_app.extensions.get("migrate")
    get_config = getattr(getattr(migrate, "migrate", None), "get_config", None)
    if get_config is not None:
        return get_config(str(directory))
    config = Config(str(directory / "alembic.ini"))
    config.set_main_option("script_location", str(directory))
    return config


def _substitute(pattern: re.Pattern[str], replacement: str, text: str, source: Path) -> str:
    text, count = pattern.subn(replacement.replace("\\", "\\\\"), text, count=1)
    if count != 1:
        raise IntegrationsError(f"{source} has no line matching {pattern.pattern!r}; cannot publish it.")
    return text


def _published_prefix(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    match = _PREFIX.search(Path(path).read_text())
    return match.group(1) if match else None


def publish(directory: str | None = None) -> list[Published]:
    """Write the missing revisions, each chained onto the app's current head."""
    prefix = current_state().setting("TABLE_PREFIX")
    target = app_migrations_directory(directory)
    try:
        script = ScriptDirectory.from_config(_alembic_config(target))
        heads = script.get_heads()
        known = {rev.revision: rev for rev in script.walk_revisions()}
        versions = Path(script.versions)
    except CommandError as exc:
        raise IntegrationsError(f"Cannot read the app's migrations in {str(target)!r}: {exc}") from None
    if len(heads) > 1:
        raise IntegrationsError(
            f"The app's migrations have {len(heads)} heads ({', '.join(sorted(heads))}); "
            "merge them with `flask db merge heads` first."
        )
    head = heads[0] if heads else None
    written: list[Published] = []
    for revision, source in package_revisions():
        if revision in known:
            published_prefix = _published_prefix(known[revision].path)
            if published_prefix is not None and published_prefix != prefix:
                raise IntegrationsError(
                    f"Revision {revision} was published with table prefix {published_prefix!r} "
                    f"({known[revision].path}) but INTEGRATIONS_TABLE_PREFIX is {prefix!r}; "
                    "the prefix cannot change once the tables exist."
                )
            continue
        destination = versions / source.name
        if destination.exists():
            raise IntegrationsError(
                f"{destination} exists but is not revision {revision}; not overwriting it."
            )
        text = source.read_text()
        down = f'down_revision = "{head}"' if head else "down_revision = None"
        text = _substitute(_DOWN, down, text, source)
        text = _substitute(_PREFIX, f'PREFIX = "{prefix}"', text, source)
        text = _REVISES.sub(f"Revises: {head or ''}".rstrip(), text, count=1)
        versions.mkdir(parents=True, exist_ok=True)
        destination.write_text(text)
        written.append(Published(destination, revision, head))
        head = revision
    return written
