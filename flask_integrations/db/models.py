"""The model classes: plain Python classes, mapped onto the prefixed tables by the first `init_app`.

The classes exist at import time, before any app's config does; `db.mapping.map_models`
builds the tables inside the app's `db.metadata` and maps the classes imperatively, so the
table prefix is one per process.

The convenience methods of `Integration` and `IntegrationLog` are public API. This module
imports nothing above the database layer: each method delegates to the function of the
same name in `db.services` (see there).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..clock import utcnow
from ..errors import ValidationError
from .services import services
from .statuses import LogStatus

if TYPE_CHECKING:  # pragma: no cover
    from ..health.summary import FailureSummary
    from ..pipeline.builder import RequestBuilder

#: Ids stored in `request_ids` of a run's metadata at most (see `IntegrationLog.append_request_ids`).
REQUEST_IDS_CAP = 1000


def type_name_of(obj: Any) -> str:
    """The stable name stored in owner_type / related_type / internal_type: the mapped table name."""
    cls = obj if isinstance(obj, type) else type(obj)
    try:
        return sa.inspect(cls).local_table.name
    except sa.exc.NoInspectionAvailable:
        raise ValidationError("object", {type(obj).__name__: "not a mapped SQLAlchemy model"}) from None


def polymorphic_ref(obj: Any, field: str) -> tuple[str, int]:
    """(type name, integer id) of a mapped object, for owner/related columns."""
    type_name = type_name_of(obj)
    identity = sa.inspect(obj).identity
    key = identity[0] if identity and len(identity) == 1 else None
    if isinstance(key, bool) or not isinstance(key, int):
        raise ValidationError(
            field, {field: "the object must be persisted with a single integer primary key"}
        )
    return type_name, key


class Integration:
    """One connection of the app to a provider: credentials, health, sync state.

    Columns: `id`, `provider`, `name`, `metadata`, `owner_type`, `owner_id`, `is_active`,
    `health_status`, `consecutive_failures`, `last_error_at`, `last_synced_at`,
    `next_sync_at`, `sync_interval_minutes`, `sync_cursor`, `created_at`, `updated_at`
    (the encrypted credentials are not an attribute: use `credentials` / `credentials_dict()`).
    """

    def __init__(self, **kwargs: Any):
        credentials = kwargs.pop("credentials", {})
        owner = kwargs.pop("owner", None)
        for name, value in kwargs.items():
            if not hasattr(type(self), name):
                raise TypeError(f"{name!r} is not a column of Integration")
            setattr(self, name, value)
        if owner is not None:
            self.owner_type, self.owner_id = polymorphic_ref(owner, "owner")
        #: credentials given to the constructor, validated and encrypted when the row is flushed
        self._pending_credentials: dict[str, Any] | None = dict(credentials)

    def __repr__(self) -> str:
        return f"<Integration {self.id} {self.provider!r} {self.name!r} {self.health_status}>"

    # -- provider and credentials ------------------------------------------------------------

    @property
    def provider_instance(self) -> Any:
        """The registered `Provider` instance for this integration's provider key."""
        return services().provider(self.provider)

    def credentials_dict(self) -> dict[str, Any]:
        """The decrypted credentials as a plain dict (a copy).

        Raises `CredentialsDecryptionError` when no configured key can decrypt them.
        """
        return services().read_credentials(self)

    @property
    def credentials(self) -> Any:
        """A read-only instance of the provider's `credential_class` (or a read-only dict)."""
        return services().credentials_view(self)

    def update(
        self,
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        replace: bool = False,
        **columns: Any,
    ) -> Integration:
        """Validate and commit changes; `credentials` is merged into the stored ones unless `replace`.

        `columns` may set `is_active`, `sync_interval_minutes`, `sync_cursor`, `owner_type`,
        `owner_id` and `next_sync_at`. Raises `ValidationError` naming every bad field; nothing
        is written then.
        """
        return services().update(self, credentials, metadata, name, replace, columns)

    # -- OAuth2 tokens -----------------------------------------------------------------------

    def access_token(self) -> str | None:
        """The OAuth2 access token, refreshed first when it expires within `refresh_threshold`."""
        return services().access_token(self)

    def token_expires_soon(self) -> bool:
        """True when `token_expires_at` is within the provider's `refresh_threshold`, or passed."""
        return services().token_expires_soon(self)

    def refresh_token_if_needed(self) -> bool:
        """Refresh the OAuth2 tokens if they expire soon (once across processes); True if this did."""
        return services().refresh_token_if_needed(self)

    # -- owner -------------------------------------------------------------------------------

    @property
    def owner(self) -> Any:
        """The object named by `owner_type` / `owner_id`, or None."""
        return services().resolve_owner(self.owner_type, self.owner_id)

    @classmethod
    def owned_by(cls, obj: Any) -> sa.Select:
        """A select of the integrations owned by `obj`."""
        owner_type, owner_id = polymorphic_ref(obj, "owner")
        return sa.select(cls).where(cls.owner_type == owner_type, cls.owner_id == owner_id)

    # -- outbound calls ----------------------------------------------------------------------

    def at(self, endpoint: str) -> RequestBuilder:
        """Start an outbound call; `endpoint` labels it in logs, limits, cache and fakes."""
        return services().request(self, endpoint)

    def breaker_state(self) -> str:
        """'closed', 'open' or 'half-open' (a `BreakerState`)."""
        return services().breaker_state(self)

    def reset_breaker(self) -> None:
        """Close the circuit breaker and forget its failure count."""
        services().reset_breaker(self)

    def override(
        self, breaker: str | None = None, rate_limit: Any = None, ttl: float = 3600
    ) -> dict[str, Any]:
        """Force the breaker "open" or "closed" and/or replace the rate limit (an int per minute,
        a `Limit`, a list of them, or text like "100/hour") for `ttl` seconds, in every process.

        Fields not given keep their current override. Returns every override now in force.
        """
        return services().override(self, breaker=breaker, rate_limit=rate_limit, ttl=ttl)

    def clear_overrides(self) -> None:
        """End every override of this integration now."""
        services().clear_overrides(self)

    def overrides(self) -> dict[str, Any]:
        """The overrides in force: {"breaker": Override, "rate_limit": Override}, each with its
        `value` and `expires_at`."""
        return services().overrides(self)

    def forget_cache(self, endpoint: str | None = None) -> None:
        """Drop this integration's cached responses (all, or one endpoint's)."""
        services().forget_cache(self, endpoint)

    # -- health and syncs --------------------------------------------------------------------

    def record_success(self) -> None:
        """Reset the count of consecutive upstream failures (health becomes healthy)."""
        services().record_success(self)

    def record_failure(self, failure_class: str) -> None:
        """Count a failure; only `upstream` ones count toward degraded, failing and disabled."""
        services().record_failure(self, failure_class)

    def enable(self) -> None:
        """Active and healthy again, failure count reset."""
        services().enable(self)

    def disable(self) -> None:
        """Inactive: no outbound calls or syncs until `enable()`. Health is left as it is."""
        services().disable(self)

    def mark_synced(self) -> None:
        """Record a finished run: `last_synced_at` now, `next_sync_at` paced by health."""
        services().mark_synced(self)

    def failure_summary(self, hours: float = 24) -> FailureSummary:
        """Requests, failures by class, error rate, p50/p95 and top errors of the last `hours`
        (a `FailureSummary`: the figures the dashboard and `flask integrations health` show)."""
        return services().failure_summary(self, hours)

    def sync_now(self) -> IntegrationLog | None:
        """Start a sync run at once; its `sync` log, or None when a run is in flight."""
        return services().sync_now(self)

    # -- operation logs ----------------------------------------------------------------------

    def log_operation(
        self,
        operation: str,
        direction: str,
        status: str,
        summary: str | None = None,
        external_id: Any = None,
        metadata: dict[str, Any] | None = None,
        result_data: Any = None,
        error: str | BaseException | None = None,
        duration_ms: float | None = None,
        parent: IntegrationLog | int | None = None,
    ) -> IntegrationLog:
        """Write and commit an operation log (it survives the caller's rollback); signals after commit."""
        return services().log_operation(
            self,
            operation,
            direction,
            status,
            summary=summary,
            external_id=external_id,
            metadata=metadata,
            result_data=result_data,
            error=error,
            duration_ms=duration_ms,
            parent=parent,
        )

    # -- id mappings (these flush; the caller commits) ---------------------------------------

    def map_external_id(self, external_id: Any, obj: Any) -> IntegrationMapping:
        """Map `external_id` to `obj`; raises `MappingAlreadyClaimed` if another object holds it."""
        return services().map_external_id(self, external_id, obj)

    def remap_external_id(self, external_id: Any, obj: Any) -> IntegrationMapping:
        """Point `external_id` at `obj`, whichever object held it before."""
        return services().remap_external_id(self, external_id, obj)

    def resolve_mapping(self, external_id: Any, model: type) -> Any:
        """The `model` object mapped to `external_id`, or None."""
        return services().resolve_mapping(self, external_id, model)

    def resolve_mappings(self, external_ids: Any, model: type) -> dict[Any, Any]:
        """``{external id: object or None}``, in two queries whatever the number of ids."""
        return services().resolve_mappings(self, external_ids, model)

    def find_external_id(self, obj: Any) -> str | None:
        """The external id mapped to `obj`, or None."""
        return services().find_external_id(self, obj)

    def upsert_by_external_id(self, external_id: Any, model: type, attributes: dict[str, Any]) -> Any:
        """Update the object mapped to `external_id`, or create and map it; safe under concurrency."""
        return services().upsert_by_external_id(self, external_id, model, attributes)


class IntegrationRequest:
    """One attempt of one outbound call."""

    def __repr__(self) -> str:
        return f"<IntegrationRequest {self.id} {self.method} {self.endpoint!r} {self.status_code}>"


class LogSelect(sa.Select):
    """A ``select(IntegrationLog)`` with the log helpers, chainable in any order.

    Usable wherever a Select is: ``db.session.scalars(...)``, ``db.paginate(...)``,
    ``.where()``, ``.order_by()``; every helper is also available on the result.
    """

    inherit_cache = True

    def successful(self) -> LogSelect:
        return self.where(IntegrationLog.status == LogStatus.SUCCESS)

    def failed(self) -> LogSelect:
        return self.where(IntegrationLog.status == LogStatus.FAILED)

    def processing(self) -> LogSelect:
        return self.where(IntegrationLog.status == LogStatus.PROCESSING)

    def for_operation(self, operation: str) -> LogSelect:
        return self.where(IntegrationLog.operation == operation)

    def for_integration(self, integration: Integration | int) -> LogSelect:
        integration_id = integration if isinstance(integration, int) else integration.id
        return self.where(IntegrationLog.integration_id == integration_id)

    def top_level(self) -> LogSelect:
        return self.where(IntegrationLog.parent_id.is_(None))

    def recent(self, hours: float = 24) -> LogSelect:
        return self.where(IntegrationLog.created_at >= utcnow() - timedelta(hours=hours))

    def newest_first(self) -> LogSelect:
        return self.order_by(IntegrationLog.created_at.desc(), IntegrationLog.id.desc())


class IntegrationLog:
    """An operation (sync run, import, webhook) with its outcome; nested through `parent`."""

    def __repr__(self) -> str:
        return f"<IntegrationLog {self.id} {self.operation} {self.status}>"

    # Query helpers: each returns a `LogSelect` (a Select) on which every helper is available again.

    @classmethod
    def select(cls) -> LogSelect:
        """``select(IntegrationLog)`` with the helpers below."""
        return LogSelect(cls)

    @classmethod
    def successful(cls) -> LogSelect:
        return cls.select().successful()

    @classmethod
    def failed(cls) -> LogSelect:
        return cls.select().failed()

    @classmethod
    def processing(cls) -> LogSelect:
        return cls.select().processing()

    @classmethod
    def for_operation(cls, operation: str) -> LogSelect:
        return cls.select().for_operation(operation)

    @classmethod
    def for_integration(cls, integration: Integration | int) -> LogSelect:
        return cls.select().for_integration(integration)

    @classmethod
    def top_level(cls) -> LogSelect:
        return cls.select().top_level()

    @classmethod
    def recent(cls, hours: float = 24) -> LogSelect:
        return cls.select().recent(hours)

    def finish(
        self,
        status: str,
        summary: str | None = None,
        error: str | BaseException | None = None,
        result_data: Any = None,
        metadata: dict[str, Any] | None = None,
        duration_ms: float | None = None,
    ) -> bool:
        """End this `processing` log; True if this call ended it (and sent the signal)."""
        return services().finish_log(
            self,
            status,
            summary=summary,
            error=error,
            result_data=result_data,
            metadata=metadata,
            duration_ms=duration_ms,
        )

    def append_request_ids(self, ids: list[int], cap: int = REQUEST_IDS_CAP) -> None:
        """Append request ids to ``metadata["request_ids"]`` atomically, capped."""
        services().append_request_ids(self, ids, cap)


class IntegrationMapping:
    """An external id mapped to an internal object."""

    def __repr__(self) -> str:
        return f"<IntegrationMapping {self.external_id!r} -> {self.internal_type} {self.internal_id}>"


class IntegrationIdempotencyKey:
    """The ledger row that makes a keyed call run at most once."""

    def __repr__(self) -> str:
        return f"<IntegrationIdempotencyKey {self.integration_id} {self.key!r}>"


class IntegrationSyncItem:
    """One item dispatched by a sync run."""

    def __repr__(self) -> str:
        return f"<IntegrationSyncItem {self.id} {self.event_class} {self.status}>"


class IntegrationWebhook:
    """A received webhook and its processing state."""

    def __repr__(self) -> str:
        return f"<IntegrationWebhook {self.id} {self.provider} {self.event_type} {self.status}>"

    def json(self) -> Any:
        """The payload, parsed as JSON."""
        return json.loads(self.payload)


#: Each table kind (see `db.tables`) and the class mapped onto it.
MODELS: dict[str, type] = {
    "integrations": Integration,
    "requests": IntegrationRequest,
    "logs": IntegrationLog,
    "mappings": IntegrationMapping,
    "idempotency_keys": IntegrationIdempotencyKey,
    "sync_items": IntegrationSyncItem,
    "webhooks": IntegrationWebhook,
}
