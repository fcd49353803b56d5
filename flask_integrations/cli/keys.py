"""`flask integrations rotate-key`: re-encrypting every integration's credentials with the first key."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa

from ..errors import CredentialsDecryptionError
from ..state import current_state
from .group import WholeNumber, fail, integrations_cli


@integrations_cli.command("rotate-key")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=WholeNumber(),
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
