"""`Provider` and the capability mixins a provider opts into.

A provider class describes one external service. Providers are stateless: the
extension keeps one instance per registered class and passes the integration
(the stored connection, with its credentials) to every hook.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from . import fields
from .errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from .models import Integration, IntegrationWebhook

PROVIDER_KEY = re.compile(r"^[a-z0-9_-]+$")
RESERVED_KEYS = frozenset({"dashboard", "oauth"})

#: Credential fields every OAuth2 provider accepts besides its own.
OAUTH_TOKEN_FIELDS: dict[str, Any] = {
    "access_token": str | None,
    "refresh_token": str | None,
    "token_expires_at": int | float | str | None,
}


class Provider:
    """Base class of every provider.

    Set `credential_class` / `metadata_class` to dataclasses to have
    credentials and metadata validated and typed; None accepts any dict.
    """

    name: ClassVar[str | None] = None
    credential_class: ClassVar[type | None] = None
    metadata_class: ClassVar[type | None] = None
    base_url: ClassVar[str | None] = None
    #: requests per minute across all processes, or None for no limit
    rate_limit: ClassVar[int | None] = None

    #: set by the registry: the key this provider is registered under
    key: str = ""

    def display_name(self) -> str:
        return self.name or type(self).__name__

    def prepare_request(self, integration: Integration, request: httpx.Request) -> None:
        """Add auth headers (or anything else) to an outgoing URL call."""

    def credential_fields(self) -> dict[str, fields.FieldSpec] | None:
        return fields.field_specs(self.credential_class)

    def validate_credentials(self, credentials: dict[str, Any]) -> dict[str, Any]:
        """Return the credentials with defaults filled in, or raise ValidationError."""
        extra = OAUTH_TOKEN_FIELDS if isinstance(self, OAuth2) else None
        return fields.validate(
            f"credentials for provider {self.key!r}", credentials, self.credential_fields(), extra
        )

    def validate_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Return the metadata with defaults filled in, or raise ValidationError."""
        return fields.validate(
            f"metadata for provider {self.key!r}", metadata, fields.field_specs(self.metadata_class)
        )


class _Syncs:
    #: minutes between runs; None = not scheduled unless the integration sets one
    sync_interval: ClassVar[int | None] = None

    def reduce_checkpoints(self, values: Iterable[Any]) -> Any:
        """Fold the previous cursor and the completed items' checkpoints into the next cursor."""
        present = [v for v in values if v is not None]
        return max(present) if present else None


class ScheduledSync(_Syncs):
    """Runs `sync(integration, session)` on a schedule."""

    def sync(self, integration: Integration, session: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define sync(integration, session)")


class IncrementalSync(_Syncs):
    """Runs `sync_incremental(integration, session)` on every sync, with `session.cursor`."""

    def sync_incremental(self, integration: Integration, session: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define sync_incremental(integration, session)")


class HandlesWebhooks:
    """Receives webhooks on `{prefix}/<provider>/webhook` routes."""

    def verify_webhook(self, integration: Integration | None, request: Any) -> bool:
        raise NotImplementedError(f"{type(self).__name__} must define verify_webhook()")

    def webhook_event(self, request: Any) -> str | None:
        return None

    def webhook_delivery_id(self, request: Any) -> str | None:
        return None

    def webhook_handlers(self) -> dict[str, Callable[[Integration, IntegrationWebhook], Any]]:
        return {}

    def handle_webhook(self, integration: Integration | None, webhook: IntegrationWebhook) -> Any:
        """Fallback for events without a handler in `webhook_handlers()`; None = no handler."""
        return NO_HANDLER

    def resolve_webhook_integration(self, request: Any) -> Integration | None:
        return None


#: What the default `handle_webhook` returns: the event had no handler.
NO_HANDLER = object()


class HasHealthCheck:
    """`health_check(integration) -> bool`, used by `flask integrations test` and install."""

    def health_check(self, integration: Integration) -> bool:
        raise NotImplementedError(f"{type(self).__name__} must define health_check(integration)")


class OAuth2:
    """OAuth2 authorization-code flow with PKCE and token refresh."""

    #: refresh when the token expires within this many seconds
    refresh_threshold: ClassVar[int] = 300

    def authorization_url(
        self, integration: Integration, redirect_uri: str, state: str, code_challenge: str
    ) -> str:
        raise NotImplementedError(f"{type(self).__name__} must define authorization_url()")

    def exchange_code(
        self, integration: Integration, code: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define exchange_code()")

    def refresh_token(self, integration: Integration) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define refresh_token()")

    def revoke_token(self, integration: Integration) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define revoke_token()")


class RedactsRequestData:
    """Dot paths (``*`` for list items) redacted from stored request/response bodies."""

    sensitive_request_fields: ClassVar[tuple[str, ...] | list[str]] = ()
    sensitive_response_fields: ClassVar[tuple[str, ...] | list[str]] = ()


class CustomizesRetry:
    """Decide retries before the defaults: None means "no opinion"."""

    def is_retryable(self, exc: BaseException) -> bool | None:
        return None

    def retry_delay(self, exc: BaseException, attempt: int, status: int | None) -> float | None:
        return None


class SupportsIdempotency:
    """Marker: the upstream dedupes by an idempotency header set from `ctx.idempotency_key`."""


# Methods a provider must define for each capability it declares.
_REQUIRED: dict[type, tuple[str, ...]] = {
    ScheduledSync: ("sync",),
    IncrementalSync: ("sync_incremental",),
    HandlesWebhooks: ("verify_webhook",),
    HasHealthCheck: ("health_check",),
    OAuth2: ("authorization_url", "exchange_code", "refresh_token", "revoke_token"),
}


def check_provider_class(key: str, cls: Any, setting: str = "INTEGRATIONS_PROVIDERS") -> None:
    """Raise ConfigurationError unless `cls` can be registered under `key`."""
    where = f"{setting}[{key!r}]"
    if not isinstance(key, str) or not PROVIDER_KEY.match(key):
        raise ConfigurationError(f"Provider key {key!r} in {setting} must match ^[a-z0-9_-]+$.")
    if key in RESERVED_KEYS:
        raise ConfigurationError(f"Provider key {key!r} in {setting} is reserved for the package's routes.")
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigurationError(f"{where} is not a subclass of flask_integrations.Provider.")
    for mixin, methods in _REQUIRED.items():
        if issubclass(cls, mixin):
            missing = [m for m in methods if getattr(cls, m) is getattr(mixin, m)]
            if missing:
                raise ConfigurationError(
                    f"{where} declares {mixin.__name__} but does not define {', '.join(missing)}()."
                )
    for attr in ("credential_class", "metadata_class"):
        value = getattr(cls, attr)
        if value is not None and not dataclasses.is_dataclass(value):
            raise ConfigurationError(f"{where}.{attr} must be a dataclass or None.")
        if value is not None:
            unsupported = fields.check_field_types(value, attr)
            if unsupported:
                raise ConfigurationError(
                    f"{where}: field {unsupported[0]} has a type that cannot be validated "
                    "(use str, int, float, bool, list, dict, Optional or Any)."
                )
    for attr in ("sync_interval", "rate_limit"):
        value = getattr(cls, attr, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigurationError(f"{where}.{attr} must be a positive integer or None.")
    if cls.base_url is not None and not (
        isinstance(cls.base_url, str) and cls.base_url.startswith(("http://", "https://"))
    ):
        raise ConfigurationError(f"{where}.base_url must be an http(s) URL or None.")
