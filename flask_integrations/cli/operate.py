"""Looking at integrations: `list`, `health`, `stats` and `test`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import click
import sqlalchemy as sa

from ..clock import utcnow
from ..db.models import Integration
from ..errors import ProviderNotRegistered
from ..health.checks import check_and_record
from ..health.summary import FailureSummary, failure_summaries
from ..pipeline import overrides
from ..providers import HasHealthCheck
from ..state import current_state
from ..sync.staleness import stale_since
from .group import HOURS_OPTION, INTEGRATION_OPTION, fail, integrations_cli, integrations_or_all, only
from .output import format_table, milliseconds, percent, shorten, when


@integrations_cli.command("list")
@click.option("--provider", "provider_key", metavar="PROVIDER", help="Only this provider's integrations.")
@click.option("--inactive", is_flag=True, help="Only inactive integrations (disabled or switched off).")
@click.option("--iso", is_flag=True, help="Times as ISO 8601 in UTC instead of relative.")
def list_integrations(provider_key: str | None, inactive: bool, iso: bool) -> None:
    """List integrations with their health and sync times."""
    state = current_state()
    query = sa.select(Integration).order_by(Integration.id)
    if provider_key is not None:
        query = query.where(Integration.provider == provider_key)
    if inactive:
        query = query.where(Integration.is_active.is_(False))
    rows = list(state.db.session.scalars(query))
    if provider_key is not None and not rows and provider_key not in state.providers:
        fail(str(ProviderNotRegistered(provider_key)))
    if not rows:
        click.echo("No integrations.")
        return
    now = utcnow()
    table = [
        [
            i.id,
            i.provider,
            shorten(i.name, 40),
            f"{i.owner_type}:{i.owner_id}" if i.owner_type else None,
            "yes" if i.is_active else "no",
            i.health_status,
            i.consecutive_failures,
            when(i.last_synced_at, now, iso),
            when(i.next_sync_at, now, iso),
        ]
        for i in rows
    ]
    headers = ["ID", "PROVIDER", "NAME", "OWNER", "ACTIVE", "HEALTH", "FAILURES", "LAST SYNC", "NEXT SYNC"]
    click.echo(format_table(headers, table, right={0, 6}))


@integrations_cli.command("health")
@HOURS_OPTION
@INTEGRATION_OPTION
def health_report(hours: int, integration_id: int | None) -> None:
    """Health of each integration: requests, error rate, latency, breaker and top errors.

    p50/p95 are continuous percentiles of duration_ms (PostgreSQL's
    percentile_cont; computed the same way on other databases).
    """
    integrations = integrations_or_all(integration_id)
    if not integrations:
        click.echo("No integrations.")
        return
    state = current_state()
    summaries = _summaries(integrations, hours, only(integration_id))
    overrides.prefetch(state, [i.id for i in integrations])
    rows = []
    for i in integrations:
        f = summaries[i.id]
        rows.append(
            [
                i.id,
                i.provider,
                shorten(i.name, 30),
                i.health_status,
                i.consecutive_failures,
                i.breaker_state(),
                f.requests,
                percent(f.failures, f.requests),
                milliseconds(f.p50_ms),
                milliseconds(f.p95_ms),
            ]
        )
    headers = ["ID", "PROVIDER", "NAME", "HEALTH", "FAILURES", "BREAKER", "REQUESTS", "ERROR RATE"]
    headers += ["P50", "P95"]
    click.echo(f"Last {hours} h:")
    click.echo(format_table(headers, rows, right={0, 4, 6, 7, 8, 9}))
    error_rows = [
        [i.id, e.count, shorten(e.error, 100)] for i in integrations for e in summaries[i.id].top_errors
    ]
    click.echo()
    if error_rows:
        click.echo(f"Top errors (last {hours} h):")
        click.echo(format_table(["ID", "COUNT", "ERROR"], error_rows, right={0, 1}))
    else:
        click.echo(f"No failed requests in the last {hours} h.")
    echo_stale(state, integrations)


def echo_stale(state: Any, integrations: list[Integration]) -> None:
    """The integrations whose syncs are stale: no successful run in `stale_after` intervals."""
    now = utcnow()
    stale = [
        [i.id, i.provider, shorten(i.name, 30), when(i.last_synced_at, now)]
        for i in integrations
        if stale_since(i, state, now)
    ]
    if stale:
        click.echo()
        click.echo(f"Stale syncs (no successful run in {state.setting('SYNC')['stale_after']} intervals):")
        click.echo(format_table(["ID", "PROVIDER", "NAME", "LAST SUCCESS"], stale, right={0}))


@integrations_cli.command("stats")
@HOURS_OPTION
@INTEGRATION_OPTION
def stats(hours: int, integration_id: int | None) -> None:
    """Request counts, error rate and cache hit ratio per integration, with a total.

    REQUESTS counts attempts (request rows); HIT RATIO is
    (cache hits + stale hits) / (requests + cache hits + stale hits).
    """
    integrations = integrations_or_all(integration_id)
    if not integrations:
        click.echo("No integrations.")
        return
    summaries = _summaries(integrations, hours, only(integration_id), top=0)
    rows = [[i.id, i.provider, shorten(i.name, 30), *_stats_cells(summaries[i.id])] for i in integrations]
    total = _total(summaries.values())
    headers = ["ID", "PROVIDER", "NAME", "REQUESTS", "ERRORS", "ERROR RATE"]
    headers += ["CACHE HITS", "STALE HITS", "HIT RATIO"]
    click.echo(f"Last {hours} h:")
    footer = [["TOTAL", "", "", *_stats_cells(total)]]
    click.echo(format_table(headers, rows, right={0, 3, 4, 5, 6, 7, 8}, footer=footer))


def _summaries(
    integrations: list[Integration], hours: int, ids: list[int] | None, top: int = 3
) -> dict[int, FailureSummary]:
    """Every listed integration's summary (an empty one for those without rows in the window)."""
    now = utcnow()
    found = failure_summaries(current_state(), ids, hours, now=now, top=top)
    since = now - timedelta(hours=hours)
    return {i.id: found.get(i.id) or FailureSummary(i.id, hours, since) for i in integrations}


def _total(summaries: Iterable[FailureSummary]) -> FailureSummary:
    listed = list(summaries)
    return FailureSummary(
        integration_id=0,
        hours=listed[0].hours,
        since=listed[0].since,
        requests=sum(f.requests for f in listed),
        failures=sum(f.failures for f in listed),
        cache_hits=sum(f.cache_hits for f in listed),
        stale_hits=sum(f.stale_hits for f in listed),
    )


def _stats_cells(f: FailureSummary) -> list[object]:
    hits = f.cache_hits + f.stale_hits
    return [
        f.requests,
        f.failures,
        percent(f.failures, f.requests),
        f.cache_hits,
        f.stale_hits,
        percent(hits, f.requests + hits),
    ]


@integrations_cli.command("test")
@INTEGRATION_OPTION
def test_integrations(integration_id: int | None) -> None:
    """Run the health check of every active integration (or of one), recording the outcome.

    A pass records a success, a failure an `upstream` failure. Integrations
    whose provider has no health check are listed as skipped. Exits 1 if any
    check failed.
    """
    state = current_state()
    integrations = integrations_or_all(integration_id)
    if integration_id is None:
        integrations = [i for i in integrations if i.is_active]
    if not integrations:
        click.echo("No active integrations.")
        return
    rows, failed = [], []
    for integration in integrations:
        provider = state.providers.get(integration.provider)
        if provider is None:
            result, detail = "skipped", f"provider {integration.provider!r} is not registered"
        elif not isinstance(provider, HasHealthCheck):
            result, detail = "skipped", "the provider has no health check"
        else:
            passed, detail = check_and_record(state, provider, integration)
            result = "ok" if passed else "FAILED"
            if not passed:
                failed.append(integration.id)
        rows.append([integration.id, integration.provider, shorten(integration.name, 30), result, detail])
    click.echo(format_table(["ID", "PROVIDER", "NAME", "RESULT", "DETAIL"], rows, right={0}))
    if failed:
        fail(f"{len(failed)} health check(s) failed: integration(s) {', '.join(map(str, failed))}.")
