"""Creating, changing and deleting integrations, and resolving their owners."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..db.models import Integration, polymorphic_ref
from ..errors import ValidationError
from ..oauth import locks
from ..pipeline import controls
from ..state import current_state

#: Columns `Integration.update(**columns)` may change besides name, credentials and metadata.
UPDATABLE_COLUMNS = frozenset(
    {"is_active", "sync_interval_minutes", "sync_cursor", "owner_type", "owner_id", "next_sync_at"}
)

#: Child tables removed by `delete`, in an order that respects their foreign keys.
CHILD_TABLES = ("sync_items", "requests", "idempotency_keys", "mappings", "webhooks", "logs")


def create(
    provider: str,
    name: str,
    credentials: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    owner: Any = None,
    **columns: Any,
) -> Integration:
    """Validate, encrypt and commit a new integration (see `Integrations.create`)."""
    state = current_state()
    instance = state.provider(provider)
    validated = instance.validate_credentials(credentials)
    if metadata is not None or instance.metadata_class is not None:
        metadata = instance.validate_metadata(metadata if metadata is not None else {})
    unknown = {c: "not a column of Integration" for c in columns if not hasattr(Integration, c)}
    if unknown:
        raise ValidationError(f"new integration of provider {provider!r}", unknown)
    if owner is not None:
        columns["owner_type"], columns["owner_id"] = polymorphic_ref(owner, "owner")
    integration = Integration(provider=provider, name=name, metadata=metadata, **columns)
    integration._pending_credentials = None
    integration._credentials_token = state.keyring.encrypt(validated)
    state.db.session.add(integration)
    state.db.session.commit()
    return integration


def update(
    integration: Integration,
    credentials: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    name: str | None,
    replace: bool,
    columns: dict[str, Any],
) -> Integration:
    """Validate and commit changes (see `Integration.update`); nothing is written when one is invalid."""
    state = current_state()
    provider = state.provider(integration.provider)
    unknown = {c: "not an updatable column" for c in columns if c not in UPDATABLE_COLUMNS}
    if unknown:
        raise ValidationError(f"update of integration {integration.id}", unknown)
    token = None
    if credentials is not None:
        merged = dict(credentials) if replace else {**integration.credentials_dict(), **credentials}
        token = state.keyring.encrypt(provider.validate_credentials(merged))
    if metadata is not None:
        metadata = provider.validate_metadata(metadata)
    if token is not None:
        integration._credentials_token = token
    if metadata is not None:
        integration.metadata = metadata
    if name is not None:
        integration.name = name
    for column, value in columns.items():
        setattr(integration, column, value)
    state.db.session.add(integration)
    state.db.session.commit()
    return integration


def delete(integration: Integration) -> None:
    """Remove an integration, all its rows (in chunks of the pruning `chunk_size`) and everything
    kept under its id: cached responses, breaker, rate limit, refresh lock."""
    state = current_state()
    session = state.db.session
    chunk = state.setting("PRUNING")["chunk_size"]
    integration_id = integration.id
    session.commit()
    for kind in CHILD_TABLES:
        table = state.tables[kind]
        while True:
            select_ids = sa.select(table.c.id).where(table.c.integration_id == integration_id).limit(chunk)
            ids = session.scalars(select_ids).all()
            if not ids:
                break
            session.execute(sa.delete(table).where(table.c.id.in_(ids)))
            session.commit()
    session.delete(integration)
    session.commit()
    controls.forget_integration(state, integration_id)
    locks.forget(state, integration_id)


def resolve_owner(type_name: str | None, object_id: int | None) -> Any:
    """The object of the mapped table `type_name` with primary key `object_id`, or None."""
    if type_name is None or object_id is None:
        return None
    state = current_state()
    for mapper in state.db.Model.registry.mappers:
        if mapper.local_table is not None and mapper.local_table.name == type_name:
            return state.db.session.get(mapper.class_, object_id)
    return None
