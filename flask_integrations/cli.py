"""`flask integrations ...` commands."""

from __future__ import annotations

import json
import math
import sys
import types
import typing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from . import fields, scaffold
from .checks import check_and_record, run_health_check
from .cli_output import cell, format_table, milliseconds, percent, shorten, when
from .clock import utcnow
from .errors import CredentialsDecryptionError, IntegrationsError, ProviderNotRegistered, ValidationError
from .figures import Figures, request_figures, top_errors
from .models import Integration
from .providers import OAUTH_TOKEN_FIELDS, HasHealthCheck, OAuth2, Provider
from .state import AppState, current_state


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

#: A row id argument: a larger number than any database here stores is a usage error, not an OverflowError.
ROW_ID = click.IntRange(1, 2**63 - 1)


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


# -- shared helpers ----------------------------------------------------------------------------

#: Words that make a field's value secret-looking (besides INTEGRATIONS_REDACT_KEYS).
SECRET_WORDS = ("password", "secret", "token", "key")

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _integration_or_fail(integration_id: int) -> Integration:
    integration = current_state().db.session.get(Integration, integration_id)
    if integration is None:
        fail(f"Integration {integration_id} does not exist.")
    return integration


def _integrations(integration_id: int | None) -> list[Integration]:
    """The one integration asked for (failing if unknown), else all of them by id."""
    if integration_id is not None:
        return [_integration_or_fail(integration_id)]
    session = current_state().db.session
    return list(session.scalars(sa.select(Integration).order_by(Integration.id)))


# -- install -----------------------------------------------------------------------------------


def is_secret_name(name: str, redact_keys: list[str]) -> bool:
    """Whether a field's value should be typed without echo."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS) or lowered in {k.lower() for k in redact_keys}


def parse_pairs(option: str, pairs: tuple[str, ...]) -> dict[str, str]:
    """`KEY=VALUE` options as a dict; malformed or repeated keys fail (never echoing a value)."""
    result: dict[str, str] = {}
    for position, pair in enumerate(pairs, 1):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"{option} number {position} is not KEY=VALUE (e.g. {option} name=value).")
        if key in result:
            fail(f"{option} {_field_name(key)} is given more than once.")
        result[key] = value
    return result


def _field_name(name: str) -> str:
    """`name` for an error message, unless it does not look like a field name (it may be a value)."""
    return name if name.isidentifier() and len(name) <= 64 else "(a name that is not a field name)"


def convert_value(text: str, annotation: Any) -> Any:
    """`text` converted to a dataclass field's type; ValueError says what was expected (not the value).

    int, float, bool (true/false, yes/no, 1/0), list and dict (JSON), str as is;
    `null` is None for an Optional field; an `Any` field takes the text, or JSON
    when it starts with `{` or `[`.
    """
    if annotation is Any:
        return _loose_value(text)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if type(None) in members and text.strip().lower() == "null":
            return None
        candidates = sorted((m for m in members if m is not type(None)), key=_conversion_order)
        for member in candidates:
            try:
                return convert_value(text, member)
            except ValueError:
                continue
        raise ValueError(f"expected {fields.type_name(annotation)}")
    value = _convert_plain(text, annotation)
    if not fields.matches(value, annotation):
        raise ValueError(f"expected {fields.type_name(annotation)}")
    return value


def _conversion_order(annotation: Any) -> int:
    """Specific types are tried before Any, and str (which takes anything) last."""
    return 2 if annotation is str else 1 if annotation is Any else 0


def _convert_plain(text: str, annotation: Any) -> Any:
    if annotation is str:
        return text
    if annotation is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise ValueError("expected true/false, yes/no or 1/0")
    if annotation is int:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
    if annotation is float:
        try:
            number = float(text.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(number):
            raise ValueError("expected a finite number")
        return number
    container = typing.get_origin(annotation) or annotation
    if container in (list, dict):
        example = '["a", "b"]' if container is list else '{"key": "value"}'
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError(f"expected a JSON {container.__name__}, e.g. {example}") from None
        if not isinstance(value, container):
            raise ValueError(f"expected a JSON {container.__name__}, e.g. {example}")
        return value
    raise ValueError(f"cannot be given as text ({fields.type_name(annotation)})")


def _loose_value(text: str) -> Any:
    if not text.strip().startswith(("{", "[")):
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError("starts like JSON but is not valid JSON") from None


class FieldValue(click.ParamType):
    """A prompted value, converted like the `KEY=VALUE` options (click asks again when it fails)."""

    name = "value"

    def __init__(self, annotation: Any):
        self.annotation = annotation

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return convert_value(value, self.annotation)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@dataclass
class _FieldSet:
    """The credential or metadata fields of an install: what was given, and what the provider wants."""

    kind: str  # "credential" or "metadata"
    specs: dict[str, fields.FieldSpec] | None
    extra: dict[str, Any]  # optional fields accepted besides the dataclass's (OAuth2 tokens)
    values: dict[str, Any]

    @property
    def option(self) -> str:
        return f"--{self.kind}"

    def missing(self) -> list[str]:
        if self.specs is None:
            return []
        return [name for name, spec in self.specs.items() if spec.required and name not in self.values]


def _field_set(kind: str, provider: Provider, given: dict[str, str]) -> _FieldSet:
    """Convert the given `KEY=VALUE` strings to the provider's field types; unknown names fail."""
    if kind == "credential":
        specs = provider.credential_fields()
        extra = dict(OAUTH_TOKEN_FIELDS) if isinstance(provider, OAuth2) else {}
    else:
        specs, extra = fields.field_specs(provider.metadata_class), {}
    field_set = _FieldSet(kind, specs, extra, {})
    if specs is not None:
        unknown = [name for name in given if name not in specs and name not in extra]
        if unknown:
            fail(
                f"Unknown {kind} field(s) for provider {provider.key!r}: "
                f"{', '.join(_field_name(n) for n in unknown)} "
                f"(it has: {', '.join([*specs, *extra]) or 'none'})."
            )
    for name, text in given.items():
        annotation = specs[name].annotation if specs and name in specs else extra.get(name, Any)
        try:
            field_set.values[name] = convert_value(text, annotation)
        except ValueError as exc:
            fail(f"{field_set.option} {name}: {exc}.")
    return field_set


def _prompt_missing(field_set: _FieldSet, redact_keys: list[str]) -> None:
    for name in field_set.missing():
        annotation = field_set.specs[name].annotation if field_set.specs else Any
        label = f"{field_set.kind.capitalize()} {name} ({fields.type_name(annotation)})"
        try:
            field_set.values[name] = click.prompt(
                label, type=FieldValue(annotation), hide_input=is_secret_name(name, redact_keys)
            )
        except click.Abort:
            fail(f"No value for required {field_set.kind} field {name!r}; give it with {field_set.option}.")


def _remove(integration: Integration) -> None:
    """Delete a just-created integration with its rows, breaker state and cache."""
    integration.reset_breaker()
    integration.forget_cache()
    current_app.extensions["integrations"].delete(integration)


@integrations_cli.command("install")
@click.argument("provider_key", metavar="PROVIDER")
@click.option("--name", help="Name of the integration (default: the provider's name).")
@click.option(
    "--credential",
    "credential_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A credential field; repeat for each. Converted to the field's type (JSON for list/dict).",
)
@click.option(
    "--metadata",
    "metadata_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A metadata field; repeat for each. Converted like --credential.",
)
@click.option("--force", is_flag=True, help="Keep the integration even when its health check fails.")
@click.option("--no-input", is_flag=True, help="Never prompt: fail if a required field is missing.")
def install(
    provider_key: str,
    name: str | None,
    credential_pairs: tuple[str, ...],
    metadata_pairs: tuple[str, ...],
    force: bool,
    no_input: bool,
) -> None:
    """Create an integration of PROVIDER and run its health check.

    Required fields not given are prompted for (secret-looking ones without
    echo). With a health check, a failing integration is removed again and the
    command exits 1, unless --force keeps it.
    """
    state = current_state()
    try:
        provider = state.provider(provider_key)
    except ProviderNotRegistered as exc:
        fail(str(exc))
    name = provider.display_name() if name is None else name.strip()
    if not name or len(name) > 255:
        fail("--name must be 1 to 255 characters.")
    credentials = _field_set("credential", provider, parse_pairs("--credential", credential_pairs))
    metadata = _field_set("metadata", provider, parse_pairs("--metadata", metadata_pairs))
    missing = [f"{s.kind} field(s) {', '.join(s.missing())}" for s in (credentials, metadata) if s.missing()]
    if missing and no_input:
        fail(f"Missing required {' and '.join(missing)}; give them with --credential/--metadata KEY=VALUE.")
    for field_set in (credentials, metadata):
        _prompt_missing(field_set, state.setting("REDACT_KEYS"))
    given_metadata = metadata.values if metadata_pairs or metadata.specs is not None else None
    try:
        integration = current_app.extensions["integrations"].create(
            provider_key, name, credentials.values, metadata=given_metadata
        )
    except ValidationError as exc:
        fail(str(exc))
    described = f"integration {integration.id} ({provider_key}, {cell(name)!r})"
    if not isinstance(provider, HasHealthCheck):
        click.echo(f"Created {described}; the provider has no health check.")
        return
    passed, detail = run_health_check(provider, integration)
    if passed:
        click.echo(f"Created {described}; health check passed.")
    elif force:
        click.echo(f"Warning: health check failed ({detail}); kept because of --force.", err=True)
        click.echo(f"Created {described}.")
    else:
        integration_id = integration.id
        _remove(integration)
        fail(
            f"Health check of the new integration failed ({detail}); integration {integration_id} "
            "was removed again. Fix the credentials, or keep it anyway with --force."
        )


# -- list --------------------------------------------------------------------------------------


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


# -- request figures (health, stats) -----------------------------------------------------------


def _only(integration_id: int | None) -> list[int] | None:
    """The `ids` argument of the figures functions: one integration, or None for all."""
    return None if integration_id is None else [integration_id]


_HOURS = click.option(
    "--hours",
    default=24,
    show_default=True,
    type=click.IntRange(min=1),
    help="The window: request rows created in the last N hours.",
)
_INTEGRATION = click.option(
    "--integration", "integration_id", type=ROW_ID, metavar="ID", help="Only this integration."
)


# -- health ------------------------------------------------------------------------------------


@integrations_cli.command("health")
@_HOURS
@_INTEGRATION
def health_report(hours: int, integration_id: int | None) -> None:
    """Health of each integration: requests, error rate, latency, breaker and top errors.

    p50/p95 are continuous percentiles of duration_ms (PostgreSQL's
    percentile_cont; computed the same way on other databases).
    """
    state = current_state()
    integrations = _integrations(integration_id)
    if not integrations:
        click.echo("No integrations.")
        return
    since = utcnow() - timedelta(hours=hours)
    figures = request_figures(state, since, _only(integration_id), latency=True)
    errors = top_errors(state, since, _only(integration_id))
    rows = []
    for i in integrations:
        f = figures.get(i.id, Figures())
        rows.append(
            [
                i.id,
                i.provider,
                shorten(i.name, 30),
                i.health_status,
                i.consecutive_failures,
                i.breaker_state(),
                f.requests,
                percent(f.errors, f.requests),
                milliseconds(f.p50),
                milliseconds(f.p95),
            ]
        )
    headers = ["ID", "PROVIDER", "NAME", "HEALTH", "FAILURES", "BREAKER", "REQUESTS", "ERROR RATE"]
    headers += ["P50", "P95"]
    click.echo(f"Last {hours} h:")
    click.echo(format_table(headers, rows, right={0, 4, 6, 7, 8, 9}))
    error_rows = [
        [i.id, count, shorten(label, 100)] for i in integrations for count, label in errors.get(i.id, [])
    ]
    click.echo()
    if error_rows:
        click.echo(f"Top errors (last {hours} h):")
        click.echo(format_table(["ID", "COUNT", "ERROR"], error_rows, right={0, 1}))
    else:
        click.echo(f"No failed requests in the last {hours} h.")


# -- stats -------------------------------------------------------------------------------------


@integrations_cli.command("stats")
@_HOURS
@_INTEGRATION
def stats(hours: int, integration_id: int | None) -> None:
    """Request counts, error rate and cache hit ratio per integration, with a total.

    REQUESTS counts attempts (request rows); HIT RATIO is
    (cache hits + stale hits) / (requests + cache hits + stale hits).
    """
    state = current_state()
    integrations = _integrations(integration_id)
    if not integrations:
        click.echo("No integrations.")
        return
    figures = request_figures(state, utcnow() - timedelta(hours=hours), _only(integration_id))
    total = Figures()
    rows = []
    for i in integrations:
        f = figures.get(i.id, Figures())
        total.add(f)
        rows.append([i.id, i.provider, shorten(i.name, 30), *_stats_cells(f)])
    headers = ["ID", "PROVIDER", "NAME", "REQUESTS", "ERRORS", "ERROR RATE"]
    headers += ["CACHE HITS", "STALE HITS", "HIT RATIO"]
    click.echo(f"Last {hours} h:")
    footer = [["TOTAL", "", "", *_stats_cells(total)]]
    click.echo(format_table(headers, rows, right={0, 3, 4, 5, 6, 7, 8}, footer=footer))


def _stats_cells(f: Figures) -> list[object]:
    return [
        f.requests,
        f.errors,
        percent(f.errors, f.requests),
        f.cache_hits,
        f.stale_hits,
        percent(f.hits, f.requests + f.hits),
    ]


# -- test --------------------------------------------------------------------------------------


@integrations_cli.command("test")
@_INTEGRATION
def test_integrations(integration_id: int | None) -> None:
    """Run the health check of every active integration (or of one), recording the outcome.

    A pass records a success, a failure an `upstream` failure. Integrations
    whose provider has no health check are listed as skipped. Exits 1 if any
    check failed.
    """
    state = current_state()
    integrations = _integrations(integration_id)
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


# -- make-provider -----------------------------------------------------------------------------


def _module_path(directory: Path, name: str) -> str | None:
    """The dotted import path of `directory/name.py` from the current directory, if it has one."""
    try:
        relative = directory.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return None
    parts = [*relative.parts, name]
    return ".".join(parts) if all(part.isidentifier() for part in parts) else None


@integrations_cli.command("make-provider", with_appcontext=False)
@click.argument("name")
@click.option("--sync", is_flag=True, help="Scheduled sync (ScheduledSync.sync).")
@click.option("--webhooks", is_flag=True, help="Webhook receiver (HandlesWebhooks.verify_webhook).")
@click.option("--oauth", is_flag=True, help="OAuth2 authorization-code flow (OAuth2).")
@click.option("--health-check", is_flag=True, help="Health check (HasHealthCheck.health_check).")
@click.option(
    "--path",
    "directory",
    default="providers",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the new module, relative to the current directory.",
)
def make_provider(
    name: str, sync: bool, webhooks: bool, oauth: bool, health_check: bool, directory: Path
) -> None:
    """Write a new provider module DIR/NAME.py to fill in (never overwrites a file).

    NAME is the provider key and module name (^[a-z][a-z0-9_]*$); the class is
    NAME in CamelCase. Each chosen capability gets stubs that raise
    NotImplementedError with a TODO.
    """
    problem = scaffold.check_name(name)
    if problem:
        fail(problem)
    target = directory / f"{name}.py"
    module = _module_path(directory, name)
    capabilities = scaffold.Capabilities(sync=sync, webhooks=webhooks, oauth=oauth, health_check=health_check)
    source = scaffold.render(name, capabilities, module)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as handle:
            handle.write(source)
    except FileExistsError:
        fail(f"{target} already exists; not overwriting it.")
    except OSError as exc:
        fail(f"Cannot write {target}: {exc.strerror or exc}.")
    class_name = scaffold.class_name(name)
    click.echo(f"Created {target}")
    click.echo("Add it to INTEGRATIONS_PROVIDERS in the app's config:")
    click.echo(f'    "{name}": "{module or "<module>"}:{class_name}",')
    if module is None:
        click.echo(f"where <module> is the import path of {target}.")
    click.echo("Then fill in its TODOs.")


# -- webhooks and workers (flask_integrations.queue, flask_integrations.webhooks) --


@integrations_cli.command("worker")
@click.option("--queue", "-q", "queues", multiple=True, help="Queue to listen on (repeatable).")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--simple", is_flag=True, help="Run jobs in the worker process instead of a fork per job.")
def worker(queues: tuple[str, ...], burst: bool, simple: bool) -> None:
    """Run an RQ worker (with its scheduler) whose jobs run inside this app's context.

    Listens on the webhook and sync queues unless --queue is given.
    """
    from . import queue as queue_module

    state = current_state()
    url = state.setting("REDIS_URL")
    if not url:
        fail("INTEGRATIONS_REDIS_URL is not set: in embedded mode jobs run in the web process.")
    names = list(queues) or _default_queues(state)
    from rq import SimpleWorker, Worker

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    queue_module.set_worker_app(app)
    _prepare_for_work_horses()
    connection = queue_module.redis_connection(url, worker=True)
    worker_class = SimpleWorker if simple else Worker
    rq_queues = [queue_module.rq_queue(name, url, worker=True) for name in names]
    rq_worker = worker_class(rq_queues, connection=connection)
    rq_worker.work(burst=burst, with_scheduler=True)


def _prepare_for_work_horses() -> None:
    """Configure the ORM mappers and import the job modules once, in the worker itself: a forked
    work horse inherits them, where it would otherwise redo them for every job (~0.3 s of CPU)."""
    from sqlalchemy.orm import configure_mappers

    from .sync import jobs as _sync_jobs  # noqa: F401
    from .webhooks import jobs as _webhook_jobs  # noqa: F401

    configure_mappers()


def _default_queues(state: AppState) -> list[str]:
    """Every queue the package enqueues to: webhooks, syncs, per-provider sync queues, sync items."""
    sync = state.setting("SYNC")
    names = {state.setting("WEBHOOK")["queue"], sync["queue"], *sync["queues"].values()}
    if sync.get("item_queue"):
        names.add(sync["item_queue"])
    return sorted(names)


@integrations_cli.command("recover-webhooks")
def recover_webhooks() -> None:
    """Re-enqueue webhooks left `processing` by a dead worker or `pending` by a lost job."""
    from .webhooks import service

    result = service.recover(current_state())
    click.echo(
        f"Re-enqueued {result.stale_processing} stale processing and {result.pending} pending webhook(s)."
    )


@integrations_cli.command("replay-webhook")
@click.argument("webhook_id", type=ROW_ID)
def replay_webhook(webhook_id: int) -> None:
    """Re-run a stored webhook: reset it to pending and enqueue it."""
    from .webhooks import service

    try:
        service.replay(current_state(), webhook_id)
    except service.ReplayError as exc:
        fail(str(exc))
    click.echo(f"Webhook {webhook_id} re-enqueued.")


# -- syncs --


@integrations_cli.command("sync")
@click.option("--integration", "integration_id", type=ROW_ID, help="Start a run of this integration now.")
def sync_command(integration_id: int | None) -> None:
    """Start a sync run of every due integration (or of one); also sweeps stuck items and runs.

    Run it from cron every minute, or register flask_integrations.cron with RQ's CronScheduler.
    """
    from .sync import jobs

    state = current_state()
    swept = jobs.sweep(state)
    if any(swept.values()):
        click.echo(
            f"Swept: {swept['reset']} stuck item(s) reset, {swept['requeued']} item(s) re-enqueued, "
            f"{swept['abandoned']} abandoned run(s) failed, {swept['finalised']} run(s) finalised."
        )
    if integration_id is not None:
        integration = _integration_or_fail(integration_id)
        label = f"{integration.id} ({integration.provider})"
        log = integration.sync_now()
        if log is None:
            click.echo(f"Integration {label}: a run is already in flight.")
        else:
            click.echo(f"Integration {label}: run {log.id} started.")
        return
    due = jobs.due_integrations(state)
    started = 0
    with click.progressbar(
        due, label="Starting syncs", file=None if sys.stdout.isatty() else _NullFile()
    ) as bar:
        for candidate in bar:
            if jobs.start_run_and_enqueue(state, candidate) is not None:
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
    from datetime import UTC

    from .sync import jobs

    if integration_id is not None:
        _integration_or_fail(integration_id)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    rows = jobs.failed_items(current_state(), integration_id, since)
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
    from .sync import jobs

    try:
        status = jobs.skip_item(current_state(), item_id)
    except jobs.ItemError as exc:
        fail(str(exc))
    click.echo(f"Sync item {item_id} skipped." + (f" Its run is now {status}." if status else ""))


@integrations_cli.command("retry-sync-item")
@click.argument("item_id", type=ROW_ID)
def retry_sync_item(item_id: int) -> None:
    """Send a failed sync item back to a worker."""
    from .sync import jobs

    try:
        jobs.retry_item(current_state(), item_id)
    except jobs.ItemError as exc:
        fail(str(exc))
    click.echo(f"Sync item {item_id} re-enqueued.")


@integrations_cli.command("advance-cursor")
@click.argument("integration_id", type=ROW_ID)
def advance_cursor(integration_id: int) -> None:
    """Re-finalise the integration's runs whose items are all done (safe any time)."""
    from .sync import jobs

    integration = _integration_or_fail(integration_id)
    count = jobs.advance(current_state(), integration.id)
    click.echo(f"{count} run(s) finalised; cursor: {json.dumps(_refreshed_cursor(integration))}.")


def _refreshed_cursor(integration: Integration) -> Any:
    current_state().db.session.refresh(integration)
    return integration.sync_cursor


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
