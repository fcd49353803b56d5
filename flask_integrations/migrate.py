"""Publishing the package's Alembic revisions into an app's migrations directory."""

from __future__ import annotations

import re
from pathlib import Path

from alembic.script import ScriptDirectory
from flask import current_app

from .errors import IntegrationsError
from .state import current_state

SOURCE = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r'^revision = "([^"]+)"$', re.M)
_DOWN = re.compile(r"^down_revision = None$", re.M)
_PREFIX = re.compile(r'^PREFIX = "integration"$', re.M)


def package_revisions() -> list[tuple[str, Path]]:
    """(revision id, file) of every shipped revision, oldest first."""
    revisions = []
    for path in sorted(SOURCE.glob("fi_*.py")):
        match = _REVISION.search(path.read_text())
        if match:
            revisions.append((match.group(1), path))
    return revisions


def app_migrations_directory(directory: str | None) -> Path:
    if directory is None:
        migrate = current_app.extensions.get("migrate")
        directory = getattr(migrate, "directory", None) or "migrations"
    path = Path(directory)
    if not (path / "versions").is_dir():
        raise IntegrationsError(
            f"No Alembic migrations directory at {path}: run `flask db init` first or pass --directory."
        )
    return path


def publish(directory: str | None = None) -> list[Path]:
    """Write the missing revisions, each chained onto the app's current head."""
    prefix = current_state().setting("TABLE_PREFIX")
    target = app_migrations_directory(directory)
    script = ScriptDirectory(str(target))
    heads = script.get_heads()
    if len(heads) > 1:
        raise IntegrationsError(
            f"The app's migrations have several heads ({', '.join(sorted(heads))}); "
            "merge them with `flask db merge heads` first."
        )
    head = heads[0] if heads else None
    known = {rev.revision for rev in script.walk_revisions()}
    written = []
    for revision, source in package_revisions():
        if revision in known:
            continue
        text = source.read_text()
        down = f'down_revision = "{head}"' if head else "down_revision = None"
        text = _DOWN.sub(down, text, count=1)
        text = _PREFIX.sub(f'PREFIX = "{prefix}"', text, count=1)
        destination = target / "versions" / source.name
        destination.write_text(text)
        written.append(destination)
        head = revision
    return written
