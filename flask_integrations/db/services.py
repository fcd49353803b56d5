"""The one place the models reach up: the services behind their convenience methods.

The mapped models sit at the bottom of the package and import nothing above the
database layer. Their convenience methods (`integration.at()`, `integration.sync_now()`,
`integration.map_external_id()`, `log.finish()`, ...) are public API, so each one calls
the function of the same name held here, which `flask_integrations.extension` installs
when the package is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

Service = Callable[..., Any]


@dataclass(frozen=True)
class ModelServices:
    """The functions the models delegate to; each takes the model instance first."""

    # the provider and the credentials
    provider: Service
    read_credentials: Service
    credentials_view: Service
    seal_credentials: Service
    validate_metadata: Service
    update: Service
    resolve_owner: Service
    # outbound calls and their shared state
    request: Service
    breaker_state: Service
    reset_breaker: Service
    override: Service
    clear_overrides: Service
    overrides: Service
    forget_cache: Service
    # OAuth2 tokens
    access_token: Service
    token_expires_soon: Service
    refresh_token_if_needed: Service
    # health and syncs
    record_success: Service
    record_failure: Service
    enable: Service
    disable: Service
    mark_synced: Service
    sync_now: Service
    failure_summary: Service
    # operation logs
    log_operation: Service
    finish_log: Service
    append_request_ids: Service
    # id mappings
    map_external_id: Service
    remap_external_id: Service
    resolve_mapping: Service
    resolve_mappings: Service
    find_external_id: Service
    upsert_by_external_id: Service


_installed: ModelServices | None = None


def install(services: ModelServices) -> None:
    """Make `services` the functions behind the models' methods (the extension does this once)."""
    global _installed
    missing = [f.name for f in fields(ModelServices) if not callable(getattr(services, f.name))]
    if missing:
        raise TypeError(f"model services not callable: {', '.join(missing)}")
    _installed = services


def services() -> ModelServices:
    """The installed services; a clear error if the package's extension module was never imported."""
    if _installed is None:
        raise RuntimeError(
            "flask-integrations is not set up: import flask_integrations (and call Integrations(app)) "
            "before using its models."
        )
    return _installed
