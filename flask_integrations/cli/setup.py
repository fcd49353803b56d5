"""Setting up: `install`, `publish-migrations` and `make-provider`."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app

from ..errors import IntegrationsError, ProviderNotRegistered, ValidationError
from ..health.checks import run_health_check
from ..migrations.publish import publish
from ..providers import HasHealthCheck
from ..state import current_state
from . import scaffold
from .group import fail, integrations_cli
from .output import cell
from .values import given_fields, parse_pairs, prompt_missing


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
    credentials = given_fields("credential", provider, parse_pairs("--credential", credential_pairs))
    metadata = given_fields("metadata", provider, parse_pairs("--metadata", metadata_pairs))
    missing = [f"{s.kind} field(s) {', '.join(s.missing())}" for s in (credentials, metadata) if s.missing()]
    if missing and no_input:
        fail(f"Missing required {' and '.join(missing)}; give them with --credential/--metadata KEY=VALUE.")
    for field_set in (credentials, metadata):
        prompt_missing(field_set, state.setting("REDACT_KEYS"))
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
        current_app.extensions["integrations"].delete(integration)  # its rows and state too
        fail(
            f"Health check of the new integration failed ({detail}); integration {integration_id} "
            "was removed again. Fix the credentials, or keep it anyway with --force."
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
