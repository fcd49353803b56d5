"""Webhooks: `recover-webhooks` and `replay-webhook`."""

from __future__ import annotations

import click

from ..state import current_state
from ..webhooks.recovery import ReplayError, recover, replay
from .group import ROW_ID, fail, integrations_cli


@integrations_cli.command("recover-webhooks")
def recover_webhooks() -> None:
    """Re-enqueue webhooks left `processing` by a dead worker or `pending` by a lost job."""
    result = recover(current_state())
    click.echo(
        f"Re-enqueued {result.stale_processing} stale processing and {result.pending} pending webhook(s)."
    )


@integrations_cli.command("replay-webhook")
@click.argument("webhook_id", type=ROW_ID)
def replay_webhook(webhook_id: int) -> None:
    """Re-run a stored webhook: reset it to pending and enqueue it."""
    try:
        replay(current_state(), webhook_id)
    except ReplayError as exc:
        fail(str(exc))
    click.echo(f"Webhook {webhook_id} re-enqueued.")
