"""`flask integrations override`: force a breaker or change a rate limit for a while, at run time."""

from __future__ import annotations

import re
from typing import Any

import click

from ..errors import ConfigurationError
from ..pipeline.overrides import MAX_TTL, Override
from .group import ROW_ID, fail, integration_or_fail, integrations_cli

_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType):
    """'90s', '30m', '2h' or '7d' (ASCII digits), as seconds, at most 30 days."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        found = _DURATION.match(str(value))
        if found is None:
            self.fail(f"{value!r} must read like 90s, 30m, 2h or 7d.", param, ctx)
        seconds = int(found.group(1)) * _UNIT_SECONDS[found.group(2)]
        if not 0 < seconds <= MAX_TTL:
            self.fail(f"{value!r} must be above 0 and at most 30 days.", param, ctx)
        return float(seconds)


@integrations_cli.command("override")
@click.argument("integration_id", type=ROW_ID, metavar="ID")
@click.option("--breaker", type=click.Choice(["open", "closed"]), help="Force the circuit breaker.")
@click.option("--rate-limit", "rate_limit", metavar="N/PERIOD", help="Replace the rate limit, e.g. 100/hour.")
@click.option(
    "--for", "ttl", type=Duration(), default="1h", show_default=True, help="How long: 90s, 30m, 2h, 7d."
)
@click.option("--clear", is_flag=True, help="End every override of the integration now.")
def override(
    integration_id: int, breaker: str | None, rate_limit: str | None, ttl: float, clear: bool
) -> None:
    """Force an integration's breaker open or closed, or change its rate limit, for a while.

    Every web and worker process follows within a second; the override ends by itself.
    Without options, show the overrides in force.
    """
    integration = integration_or_fail(integration_id)
    if clear and (breaker or rate_limit):
        fail("--clear ends every override: give it alone, without --breaker or --rate-limit.")
    if clear:
        integration.clear_overrides()
        click.echo(f"Integration {integration_id}: overrides cleared.")
        return
    if breaker or rate_limit:
        try:
            integration.override(breaker=breaker, rate_limit=rate_limit, ttl=ttl)
        except ConfigurationError as exc:
            fail(str(exc))
    show(integration_id, integration.overrides())


def show(integration_id: int, found: dict[str, Override]) -> None:
    if not found:
        click.echo(f"Integration {integration_id}: no overrides.")
        return
    for name, entry in sorted(found.items()):
        value = ", ".join(str(limit) for limit in entry.value) if name == "rate_limit" else entry.value
        until = entry.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        click.echo(f"Integration {integration_id}: {name.replace('_', ' ')} {value} until {until}.")
