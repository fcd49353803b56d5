"""`flask integrations prune`: deleting rows past retention."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa

from ..prune import PRUNED_TABLES, TerminalProgress, prune, report_lines
from ..state import current_state
from .group import fail, integrations_cli


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
