"""The `flask integrations` command group and what its commands share: errors, ids, options."""

from __future__ import annotations

import sys
from typing import Any

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from ..db.models import Integration
from ..parsing import parse_int
from ..state import current_state


class IntegrationsGroup(AppGroup):
    """The command group; a bad argument is reported like any other error: one `Error:` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            message = exc.format_message()
            if not message.endswith((".", "?", "!")):
                message += "."
            raise click.ClickException(f"{message} See '{where} --help'.") from None


integrations_cli = IntegrationsGroup("integrations", help="Manage third-party integrations.")


class RowId(click.ParamType):
    """A row id: ASCII digits, 1 up to the largest id a database stores (a larger one is a usage
    error, not an OverflowError)."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        text = str(value).strip()
        digits = parse_int(text.removeprefix("-").removeprefix("+"))
        if digits is None:
            self.fail(f"{value!r} is not a valid integer.", param, ctx)
        number = -digits if text.startswith("-") else digits
        if not 1 <= number <= MAX_ID:
            self.fail(f"{value} is not in the range 1<=x<={MAX_ID}.", param, ctx)
        return number


#: The largest id any database here stores.
MAX_ID = 2**63 - 1
ROW_ID = RowId()


def fail(message: str) -> None:
    """Print one clear line to stderr and exit 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def integration_or_fail(integration_id: int) -> Integration:
    integration = current_state().db.session.get(Integration, integration_id)
    if integration is None:
        fail(f"Integration {integration_id} does not exist.")
    return integration


def integrations_or_all(integration_id: int | None) -> list[Integration]:
    """The one integration asked for (failing if unknown), else all of them by id."""
    if integration_id is not None:
        return [integration_or_fail(integration_id)]
    session = current_state().db.session
    return list(session.scalars(sa.select(Integration).order_by(Integration.id)))


def only(integration_id: int | None) -> list[int] | None:
    """The `ids` argument of the figures functions: one integration, or None for all."""
    return None if integration_id is None else [integration_id]


HOURS_OPTION = click.option(
    "--hours",
    default=24,
    show_default=True,
    type=click.IntRange(min=1),
    help="The window: request rows created in the last N hours.",
)


INTEGRATION_OPTION = click.option(
    "--integration", "integration_id", type=ROW_ID, metavar="ID", help="Only this integration."
)
