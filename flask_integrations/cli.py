"""`flask integrations ...` commands."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from .errors import CredentialsDecryptionError, IntegrationsError
from .state import current_state

integrations_cli = AppGroup("integrations", help="Manage third-party integrations.")


def fail(message: str) -> None:
    """Print one clear line to stderr and exit 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


@integrations_cli.command("rotate-key")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1),
    help="Rows per transaction.",
)
def rotate_key(batch_size: int) -> None:
    """Re-encrypt every integration's credentials with the first key.

    Safe to re-run. Rows no configured key can decrypt are listed by id and
    the command exits 1.
    """
    state = current_state()
    table = state.tables["integrations"]
    session = state.db.session
    total = session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
    unreadable: list[int] = []
    rotated = 0
    last_id = 0
    with click.progressbar(length=total, label="Re-encrypting", file=sys.stderr) as bar:
        while True:
            rows = session.execute(
                sa.select(table.c.id, table.c.credentials)
                .where(table.c.id > last_id)
                .order_by(table.c.id)
                .limit(batch_size)
            ).all()
            if not rows:
                break
            for row in rows:
                try:
                    token = state.keyring.rotate(row.credentials, row.id)
                except CredentialsDecryptionError:
                    unreadable.append(row.id)
                    continue
                # Only if unchanged since read: a concurrent update keeps its new value (rotated next run).
                changed = session.execute(
                    sa.update(table)
                    .where(table.c.id == row.id, table.c.credentials == row.credentials)
                    .values(credentials=token)
                ).rowcount
                rotated += changed
            session.commit()
            last_id = rows[-1].id
            bar.update(len(rows))
    click.echo(f"Re-encrypted {rotated} integration(s) with the first key.")
    if unreadable:
        fail(
            f"{len(unreadable)} integration(s) cannot be decrypted with any configured key: "
            + ", ".join(str(i) for i in unreadable)
        )


@integrations_cli.command("publish-migrations")
@click.option(
    "--directory",
    "-d",
    default=None,
    help="The app's migration directory (default: Flask-Migrate's).",
)
def publish_migrations(directory: str | None) -> None:
    """Copy the package's migrations the app does not have yet into its migrations/versions/.

    They are chained onto the app's current head, with the configured table
    prefix. Running it again publishes nothing new.
    """
    from .migrate import publish

    try:
        published = publish(directory)
    except IntegrationsError as exc:
        fail(str(exc))
    if not published:
        click.echo("Nothing to publish: the app already has every flask-integrations migration.")
        return
    for item in published:
        revises = item.down_revision or "base"
        click.echo(f"Published {item.path} (revision {item.revision}, revises {revises})")
    click.echo("Now run `flask db upgrade`.")


# -- retention --

from .prune import PRUNED_TABLES, TerminalProgress, prune, report_lines  # noqa: E402


@integrations_cli.command("prune")
@click.option("--dry-run", is_flag=True, help="Count the rows past retention; delete nothing.")
@click.option(
    "--table",
    "tables",
    multiple=True,
    type=click.Choice(PRUNED_TABLES),
    help="Prune only this table (repeatable; default: all).",
)
def prune_command(dry_run: bool, tables: tuple[str, ...]) -> None:
    """Delete rows past retention (INTEGRATIONS_PRUNING), in chunks of `chunk_size`.

    Failed sync items and webhooks not yet processed are kept whatever their age.
    """
    state = current_state()
    progress = TerminalProgress(state, dry_run=dry_run) if sys.stderr.isatty() else None
    try:
        deleted = prune(state, progress=progress, tables=tables or None, dry_run=dry_run)
    except sa.exc.SQLAlchemyError as exc:
        fail(f"pruning stopped: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}")
    finally:
        if progress is not None:
            progress.close()
    if dry_run:
        click.echo("Dry run: nothing was deleted.")
    for line in report_lines(state, deleted, dry_run=dry_run):
        click.echo(line)
