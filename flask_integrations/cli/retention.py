"""`flask integrations prune`: deleting rows past retention, with its progress on a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

import click
import sqlalchemy as sa

from ..prune import PRUNED_TABLES, prune
from ..state import AppState, current_state
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


def report_lines(state: AppState, deleted: dict[str, int], *, dry_run: bool = False) -> list[str]:
    """An aligned table of rows deleted (or, in a dry run, to delete) per table, with a total."""
    heading = "would delete" if dry_run else "deleted"
    rows = [(state.tables[kind].name, f"{count:,}") for kind, count in deleted.items()]
    rows.append(("total", f"{sum(deleted.values()):,}"))
    name_width = max(len("table"), *(len(name) for name, _ in rows))
    count_width = max(len(heading), *(len(count) for _, count in rows))
    lines = [f"{'table':<{name_width}}  {heading:>{count_width}}"]
    lines += [f"{name:<{name_width}}  {count:>{count_width}}" for name, count in rows]
    return lines


class TerminalProgress:
    """A `progress` callback: one line per table on stderr, rewritten after each chunk."""

    def __init__(self, state: AppState, *, dry_run: bool = False, stream: TextIO | None = None):
        self.state = state
        self.verb = "counted" if dry_run else "deleted"
        self.stream = stream if stream is not None else sys.stderr
        self.kind: str | None = None
        self.rows = 0

    def __call__(self, kind: str, rows: int) -> None:
        if kind != self.kind:
            self.close()
            self.kind, self.rows = kind, 0
        self.rows += rows
        self.stream.write(f"\r{self.state.tables[kind].name}: {self.rows:,} rows {self.verb}")
        self.stream.flush()

    def close(self) -> None:
        """End the current table's line."""
        if self.kind is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.kind = None
