"""Setting up: `install`, `publish-migrations` and `make-provider`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


class SyncStyle(click.Choice):
    """`--sync full|incremental`; a bare `--sync` (the flag of earlier releases) names the choices."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            self.fail(f"it needs a value, one of {', '.join(map(repr, self.choices))}", param, ctx)
        return super().convert(value, param, ctx)


@integrations_cli.command("make-provider", with_appcontext=False)
@click.argument("name")
@click.option(
    "--sync",
    type=SyncStyle(scaffold.SYNC_STYLES),
    is_flag=False,
    flag_value="",
    default=None,
    help="A sync: 'full' (ScheduledSync.sync, every record each run) or 'incremental' "
    "(IncrementalSync.sync_incremental, what changed since the cursor).",
)
@click.option("--webhooks", is_flag=True, help="A webhook receiver: HMAC-signed deliveries, one handler.")
@click.option("--health-check", is_flag=True, help="A health check: GET /me.")
@click.option("--oauth", is_flag=True, help="The OAuth2 authorization-code flow instead of an API key.")
@click.option(
    "--path",
    "directory",
    default="providers",
    show_default=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the new module, relative to the current directory.",
)
@click.option(
    "--tests-path",
    "tests_directory",
    default="tests",
    show_default=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of its tests, relative to the current directory (not to --path).",
)
def make_provider(
    name: str,
    sync: str | None,
    webhooks: bool,
    health_check: bool,
    oauth: bool,
    directory: Path,
    tests_directory: Path,
) -> None:
    """Write a provider module DIR/NAME.py and its tests (never overwrites a file).

    NAME is the provider key and module name (^[a-z][a-z0-9_]*$); the class is
    NAME in CamelCase. The provider is declared with the provider kit: its API
    key goes out as a bearer token (with --oauth, the OAuth2 access token does),
    and each option adds a capability. Handlers are methods of the provider that
    log what arrives: fill in their TODOs to store it in the app's tables.

    The tests go to tests/test_NAME.py under the current directory, wherever
    --path puts the module (--tests-path to change it), and pass as written
    against fakes: run them with `python -m pytest` from the current directory.
    """
    problem = scaffold.check_name(name)
    if problem:
        fail(problem)
    target = directory / f"{name}.py"
    test_target = tests_directory / f"test_{name}.py"
    module = _module_path(directory, name)
    capabilities = scaffold.Capabilities(sync=sync, webhooks=webhooks, oauth=oauth, health_check=health_check)
    source = scaffold.render(name, capabilities, module, test_path=str(test_target))
    test_source = scaffold.render_test(name, capabilities, module)
    for path in (target, test_target):
        if path.exists():
            fail(f"{path} already exists; not overwriting it.")
    written: list[Path] = []
    for path, text in ((target, source), (test_target, test_source)):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as handle:
                written.append(path)
                handle.write(text)
        except OSError as exc:
            _remove(written)  # all or nothing
            if isinstance(exc, FileExistsError) and exc.filename == str(path):
                fail(f"{path} already exists; not overwriting it.")
            fail(f"Cannot write {path}: {exc.strerror or exc}.")
    class_name = scaffold.class_name(name)
    click.echo(f"Created {target}")
    click.echo(f"Created {test_target}")
    click.echo("Add it to INTEGRATIONS_PROVIDERS in the app's config:")
    click.echo(f'    "{name}": "{module or "<module>"}:{class_name}",')
    if module is None:
        click.echo(f"where <module> is the import path of {target} (its test imports it as {name!r}).")
    handlers = scaffold.handler_names(capabilities)
    if handlers:
        methods = ", ".join(f"{handler}()" for handler in handlers)
        click.echo(f"Its handlers are methods of {class_name} in {target}: {methods}.")
        click.echo("Fill in their TODOs to store what arrives in the app's tables.")
    else:
        click.echo(f"Then fill in its TODOs in {target}.")
    click.echo(f"Run its tests: python -m pytest {test_target}")


def _remove(paths: list[Path]) -> None:
    """Take back the files this command wrote before it failed."""
    for path in paths:
        path.unlink(missing_ok=True)
