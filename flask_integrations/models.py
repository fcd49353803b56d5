"""The model classes, mapped onto the prefixed tables by the first `init_app`.

The classes are plain Python classes defined at import time; `map_models`
builds the tables inside the app's `db.metadata` (so `db.create_all()`,
Alembic and the app's own foreign keys to ``integrations.id`` see them) and
maps the classes imperatively. The table prefix is therefore one per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import relationship

from . import fields, health, logs
from .errors import ConfigurationError, ValidationError
from .state import current_state
from .tables import build_tables

if TYPE_CHECKING:  # pragma: no cover
    from flask_sqlalchemy import SQLAlchemy

    from .logs import LogSelect
    from .pipeline.builder import RequestBuilder

_MAPPED: dict[str, Any] = {}

# Columns `Integration.update(**columns)` may change besides name/credentials/metadata.
UPDATABLE_COLUMNS = frozenset(
    {"is_active", "sync_interval_minutes", "sync_cursor", "owner_type", "owner_id", "next_sync_at"}
)


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


def resolve_polymorphic(type_name: str | None, object_id: int | None) -> Any:
    if type_name is None or object_id is None:
        return None
    state = current_state()
    for mapper in state.db.Model.registry.mappers:
        if mapper.local_table is not None and mapper.local_table.name == type_name:
            return state.db.session.get(mapper.class_, object_id)
    return None


class Integration:
    """One connection of the app to a provider: credentials, health, sync state."""

    def __init__(self, **kwargs: Any):
        credentials = kwargs.pop("credentials", {})
        owner = kwargs.pop("owner", None)
        for name, value in kwargs.items():
            if not hasattr(type(self), name):
                raise TypeError(f"{name!r} is not a column of Integration")
            setattr(self, name, value)
        if owner is not None:
            self.owner_type, self.owner_id = polymorphic_ref(owner, "owner")
        self._pending_credentials = dict(credentials)

    def __repr__(self) -> str:
        return f"<Integration {self.id} {self.provider!r} {self.name!r} {self.health_status}>"

    # -- provider and credentials ------------------------------------------------------------

    @property
    def provider_instance(self) -> Any:
        """The registered `Provider` instance for this integration's provider key."""
        return current_state().provider(self.provider)

    def credentials_dict(self) -> dict[str, Any]:
        """The decrypted credentials as a plain dict (a copy)."""
        pending = getattr(self, "_pending_credentials", None)
        if pending is not None:
            return dict(pending)
        token = self._credentials_token
        cached = getattr(self, "_decrypted", None)
        if cached is None or cached[0] != token:
            cached = (token, current_state().keyring.decrypt(token, self.id))
            self._decrypted = cached
        return dict(cached[1])

    @property
    def credentials(self) -> Any:
        """A read-only instance of the provider's `credential_class` (or a read-only dict)."""
        values = self.credentials_dict()
        provider = self.provider_instance
        cls = provider.credential_class
        if cls is None:
            return fields.SecretDict(values)
        return fields.read_only_instance(cls, values, secret=True)

    def _encrypt_pending(self) -> None:
        pending = getattr(self, "_pending_credentials", None)
        if pending is None:
            return
        state = current_state()
        validated = state.provider(self.provider).validate_credentials(pending)
        self._credentials_token = state.keyring.encrypt(validated)
        self._pending_credentials = None

    def update(
        self,
        credentials: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        replace: bool = False,
        **columns: Any,
    ) -> Integration:
        """Validate and commit changes; `credentials` is merged into the stored ones unless `replace`."""
        state = current_state()
        provider = state.provider(self.provider)
        unknown = {c: "not an updatable column" for c in columns if c not in UPDATABLE_COLUMNS}
        if unknown:
            raise ValidationError(f"update of integration {self.id}", unknown)
        token = None
        if credentials is not None:
            merged = dict(credentials) if replace else {**self.credentials_dict(), **credentials}
            token = state.keyring.encrypt(provider.validate_credentials(merged))
        if metadata is not None:
            metadata = provider.validate_metadata(metadata)
        if token is not None:
            self._credentials_token = token
        if metadata is not None:
            self.metadata = metadata
        if name is not None:
            self.name = name
        for column, value in columns.items():
            setattr(self, column, value)
        state.db.session.add(self)
        state.db.session.commit()
        return self

    # -- OAuth2 tokens (flask_integrations.oauth.tokens) ----------------------------------------

    def access_token(self) -> str | None:
        """The OAuth2 access token, refreshed first when it expires within `refresh_threshold`."""
        from .oauth import tokens

        return tokens.access_token(self)

    def token_expires_soon(self) -> bool:
        """True when `token_expires_at` is within the provider's `refresh_threshold`, or passed."""
        from .oauth import tokens

        return tokens.token_expires_soon(self)

    def refresh_token_if_needed(self) -> bool:
        """Refresh the OAuth2 tokens if they expire soon (once across processes); True if this did."""
        from .oauth import tokens

        return tokens.refresh_token_if_needed(self)

    # -- owner -------------------------------------------------------------------------------

    @property
    def owner(self) -> Any:
        return resolve_polymorphic(self.owner_type, self.owner_id)

    @classmethod
    def owned_by(cls, obj: Any) -> sa.Select:
        """A select of the integrations owned by `obj`."""
        owner_type, owner_id = polymorphic_ref(obj, "owner")
        return sa.select(cls).where(cls.owner_type == owner_type, cls.owner_id == owner_id)

    # -- outbound calls ----------------------------------------------------------------------

    def at(self, endpoint: str) -> RequestBuilder:
        """Start an outbound call; `endpoint` labels it in logs, limits, cache and fakes."""
        from .pipeline.builder import RequestBuilder

        return RequestBuilder(self, endpoint)

    def breaker_state(self) -> str:
        """'closed', 'open' or 'half-open'."""
        from .pipeline import breaker
        from .store import get_store

        state = current_state()
        return breaker.breaker_state(get_store(state), self.id, state.setting("BREAKER"))

    def reset_breaker(self) -> None:
        from .pipeline import breaker
        from .store import get_store

        breaker.reset(get_store(current_state()), self.id)

    def forget_cache(self, endpoint: str | None = None) -> None:
        """Drop this integration's cached responses (all, or one endpoint's)."""
        from .pipeline import cache
        from .store import get_store

        cache.forget(get_store(current_state()), self.id, endpoint)

    # -- health ------------------------------------------------------------------------------

    def record_success(self) -> None:
        health.record_success(self)

    def record_failure(self, failure_class: str) -> None:
        health.record_failure(self, failure_class)

    def enable(self) -> None:
        health.enable(self)

    def disable(self) -> None:
        health.disable(self)

    def mark_synced(self) -> None:
        health.mark_synced(self)

    def sync_now(self) -> IntegrationLog | None:
        """Start a sync run at once; its `sync` log, or None when a run is in flight."""
        from .sync.jobs import sync_now

        return sync_now(self)

    # -- operation logs (flask_integrations.logs) ---------------------------------------------

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
        return logs.log_operation(
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

    # -- id mappings (flask_integrations.mappings; these flush, the caller commits) ----------------

    def map_external_id(self, external_id: Any, obj: Any) -> IntegrationMapping:
        """Map `external_id` to `obj`; raises `MappingAlreadyClaimed` if another object holds it."""
        from . import mappings

        return mappings.map_external_id(self, external_id, obj)

    def remap_external_id(self, external_id: Any, obj: Any) -> IntegrationMapping:
        """Point `external_id` at `obj`, whichever object held it before."""
        from . import mappings

        return mappings.remap_external_id(self, external_id, obj)

    def resolve_mapping(self, external_id: Any, model: type) -> Any:
        """The `model` object mapped to `external_id`, or None."""
        from . import mappings

        return mappings.resolve_mapping(self, external_id, model)

    def resolve_mappings(self, external_ids: Any, model: type) -> dict[Any, Any]:
        """``{external id: object or None}``, in two queries whatever the number of ids."""
        from . import mappings

        return mappings.resolve_mappings(self, external_ids, model)

    def find_external_id(self, obj: Any) -> str | None:
        """The external id mapped to `obj`, or None."""
        from . import mappings

        return mappings.find_external_id(self, obj)

    def upsert_by_external_id(self, external_id: Any, model: type, attributes: dict[str, Any]) -> Any:
        """Update the object mapped to `external_id`, or create and map it; safe under concurrency."""
        from . import mappings

        return mappings.upsert_by_external_id(self, external_id, model, attributes)


class IntegrationRequest:
    """One attempt of one outbound call."""

    def __repr__(self) -> str:
        return f"<IntegrationRequest {self.id} {self.method} {self.endpoint!r} {self.status_code}>"


class IntegrationLog:
    """An operation (sync run, import, webhook) with its outcome; nested through `parent`."""

    def __repr__(self) -> str:
        return f"<IntegrationLog {self.id} {self.operation} {self.status}>"

    # Query helpers: each returns a `LogSelect` (a Select) on which every helper is available again.

    @classmethod
    def select(cls) -> LogSelect:
        """``select(IntegrationLog)`` with the helpers below."""
        return logs.LogSelect(cls)

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
        return logs.finish(
            self,
            status,
            summary=summary,
            error=error,
            result_data=result_data,
            metadata=metadata,
            duration_ms=duration_ms,
        )

    def append_request_ids(self, ids: list[int], cap: int = logs.REQUEST_IDS_CAP) -> None:
        """Append request ids to ``metadata["request_ids"]`` atomically, capped."""
        logs.append_request_ids(self, ids, cap)


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
        import json

        return json.loads(self.payload)


MODELS = {
    "integrations": Integration,
    "requests": IntegrationRequest,
    "logs": IntegrationLog,
    "mappings": IntegrationMapping,
    "idempotency_keys": IntegrationIdempotencyKey,
    "sync_items": IntegrationSyncItem,
    "webhooks": IntegrationWebhook,
}


def map_models(db: SQLAlchemy, prefix: str) -> dict[str, sa.Table]:
    """Put the prefixed tables into `db.metadata`, mapping the classes on first use."""
    if _MAPPED and _MAPPED["prefix"] != prefix:
        raise ConfigurationError(
            f"INTEGRATIONS_TABLE_PREFIX is {prefix!r} but this process already mapped the models "
            f"with {_MAPPED['prefix']!r}; the prefix is one per process."
        )
    if not _MAPPED:
        tables = build_tables(db.metadata, prefix)
        _map(db.Model.registry, tables)
        _MAPPED.update(prefix=prefix, tables=tables)
        return tables
    return _tables_in(db.metadata, _MAPPED["tables"])


def _tables_in(metadata: sa.MetaData, tables: dict[str, sa.Table]) -> dict[str, sa.Table]:
    """The mapped tables, copied into another SQLAlchemy instance's metadata when needed."""
    for table in tables.values():
        if table.name not in metadata.tables:
            table.to_metadata(metadata)
    return tables


def _map(registry: Any, t: dict[str, sa.Table]) -> None:
    ints = t["integrations"]
    registry.map_imperatively(
        Integration,
        ints,
        properties={"_credentials_token": ints.c.credentials, "metadata": ints.c.metadata},
    )
    for kind in ("requests", "mappings", "idempotency_keys", "sync_items", "webhooks"):
        props: dict[str, Any] = {"integration": relationship(Integration, lazy="select")}
        if kind == "sync_items":
            props["sync_log"] = relationship(IntegrationLog, lazy="select")
        registry.map_imperatively(MODELS[kind], t[kind], properties=props)
    logs = t["logs"]
    registry.map_imperatively(
        IntegrationLog,
        logs,
        properties={
            "metadata": logs.c.metadata,
            "integration": relationship(Integration, lazy="select"),
            "parent": relationship(
                IntegrationLog, remote_side=[logs.c.id], back_populates="children", lazy="select"
            ),
            "children": relationship(
                IntegrationLog, back_populates="parent", order_by=logs.c.id, passive_deletes=True
            ),
        },
    )
    sa.event.listen(Integration, "before_insert", _before_insert)
    sa.event.listen(Integration, "before_update", _before_update)


def _before_insert(mapper: Any, connection: Any, target: Integration) -> None:
    """`Integration(...)` added to a session is validated and encrypted on flush, like `create`."""
    target._encrypt_pending()
    provider = current_state().provider(target.provider)
    if target.metadata is not None or provider.metadata_class is not None:
        target.metadata = provider.validate_metadata(target.metadata if target.metadata is not None else {})


def _before_update(mapper: Any, connection: Any, target: Integration) -> None:
    target._encrypt_pending()
    if sa.inspect(target).attrs.metadata.history.has_changes() and target.metadata is not None:
        target.metadata = current_state().provider(target.provider).validate_metadata(target.metadata)
