"""The `flask integrations` command group and what its commands share: errors, ids, options."""

from __future__ import annotations

import sys
from typing import Any

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from ..db.models import Integration
from ..db.tables import MAX_ID
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


class WholeNumber(click.ParamType):
    """A whole number in ASCII digits, from `minimum` to `maximum` (read by the one strict parser,
    so ``١٢`` or ``²`` is a usage error, and a number past 64 bits is one too, not an OverflowError)."""

    name = "integer"

    def __init__(self, minimum: int = 1, maximum: int = MAX_ID):
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number: int | None = value
        else:
            text = str(value).strip()
            digits = parse_int(text.removeprefix("-").removeprefix("+"))
            if digits is None:
                self.fail(f"{value!r} is not a valid integer.", param, ctx)
            number = -digits if text.startswith("-") else digits
        if not self.minimum <= number <= self.maximum:
            self.fail(f"{value} is not in the range {self.minimum}<=x<={self.maximum}.", param, ctx)
        return number


#: A row id argument.
ROW_ID = WholeNumber()


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


#: The longest window `--hours` takes: a hundred years (a larger one is past what a date can hold).
MAX_HOURS = 24 * 366 * 100

HOURS_OPTION = click.option(
    "--hours",
    default=24,
    show_default=True,
    type=WholeNumber(maximum=MAX_HOURS),
    help="The window: request rows created in the last N hours.",
)


INTEGRATION_OPTION = click.option(
    "--integration", "integration_id", type=ROW_ID, metavar="ID", help="Only this integration."
)
