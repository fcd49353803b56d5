"""Syncs: `sync`, `list-failed-items`, `skip-sync-item`, `retry-sync-item`, `advance-cursor`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from ..clock import utcnow
from ..db.models import Integration
from ..state import current_state
from ..sync.admin import ItemError, failed_items, retry_item, skip_item
from ..sync.schedule import advance, due_integrations, start_run_and_enqueue, sweep
from .group import ROW_ID, fail, integration_or_fail, integrations_cli
from .output import format_table, shorten, when


@integrations_cli.command("sync")
@click.option("--integration", "integration_id", type=ROW_ID, help="Start a run of this integration now.")
def sync_command(integration_id: int | None) -> None:
    """Start a sync run of every due integration (or of one); also sweeps stuck items and runs.

    Run it from cron every minute, or register flask_integrations.cron with RQ's CronScheduler.
    """
    state = current_state()
    swept = sweep(state)
    if any(swept.values()):
        click.echo(
            f"Swept: {swept['reset']} stuck item(s) reset, {swept['requeued']} item(s) re-enqueued, "
            f"{swept['abandoned']} abandoned run(s) failed, {swept['finalised']} run(s) finalised, "
            f"{swept['stale']} integration(s) newly stale."
        )
    if integration_id is not None:
        integration = integration_or_fail(integration_id)
        label = f"{integration.id} ({integration.provider})"
        log = integration.sync_now()
        if log is None:
            click.echo(f"Integration {label}: a run is already in flight.")
        else:
            click.echo(f"Integration {label}: run {log.id} started.")
        return
    due = due_integrations(state)
    started = 0
    with click.progressbar(
        due, label="Starting syncs", file=None if sys.stdout.isatty() else _NullFile()
    ) as bar:
        for candidate in bar:
            if start_run_and_enqueue(state, candidate) is not None:
                started += 1
    click.echo(f"Started {started} sync run(s) of {len(due)} due integration(s).")


class _NullFile:
    """Where the progress bar goes when stdout is not a terminal."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@integrations_cli.command("list-failed-items")
@click.option("--integration", "integration_id", type=ROW_ID, help="Only this integration's items.")
@click.option("--since", type=click.DateTime(), help="Only items that failed since this date (UTC).")
def list_failed_items(integration_id: int | None, since: datetime | None) -> None:
    """List failed sync items."""
    if integration_id is not None:
        integration_or_fail(integration_id)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    rows = failed_items(current_state(), integration_id, since)
    if not rows:
        click.echo("No failed sync items.")
        return
    table = [
        [
            r.id,
            r.integration_id,
            r.event_class,
            r.external_id or "-",
            r.attempts,
            when(r.updated_at, utcnow()),
            shorten(r.error or "", 60),
        ]
        for r in rows
    ]
    headers = ["ID", "INTEGRATION", "EVENT", "EXTERNAL ID", "ATTEMPTS", "FAILED AT", "ERROR"]
    click.echo(format_table(headers, table, right={0, 1, 4}))


@integrations_cli.command("skip-sync-item")
@click.argument("item_id", type=ROW_ID)
def skip_sync_item(item_id: int) -> None:
    """Skip a failed sync item, then re-finalise its run (the cursor may catch up)."""
    try:
        status = skip_item(current_state(), item_id)
    except ItemError as exc:
        fail(str(exc))
    click.echo(f"Sync item {item_id} skipped." + (f" Its run is now {status}." if status else ""))


@integrations_cli.command("retry-sync-item")
@click.argument("item_id", type=ROW_ID)
def retry_sync_item(item_id: int) -> None:
    """Send a failed sync item back to a worker."""
    try:
        retry_item(current_state(), item_id)
    except ItemError as exc:
        fail(str(exc))
    click.echo(f"Sync item {item_id} re-enqueued.")


@integrations_cli.command("advance-cursor")
@click.argument("integration_id", type=ROW_ID)
def advance_cursor(integration_id: int) -> None:
    """Re-finalise the integration's runs whose items are all done (safe any time)."""
    integration = integration_or_fail(integration_id)
    count = advance(current_state(), integration.id)
    click.echo(f"{count} run(s) finalised; cursor: {json.dumps(_refreshed_cursor(integration))}.")


def _refreshed_cursor(integration: Integration) -> Any:
    current_state().db.session.refresh(integration)
    return integration.sync_cursor
