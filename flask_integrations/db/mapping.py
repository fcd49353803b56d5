"""Mapping the model classes onto the prefixed tables, once per process.

`map_models` builds the tables inside the app's `db.metadata` (so `db.create_all()`,
Alembic and the app's own foreign keys to ``integrations.id`` see them) and maps the
classes of `db.models` imperatively. A second app with the same prefix gets copies of
the tables in its own metadata; another prefix is refused: it is one per process.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import relationship

from ..errors import ConfigurationError
from .models import MODELS, Integration, IntegrationLog
from .services import services
from .tables import build_tables

_MAPPED: dict[str, Any] = {}


def map_models(db: Any, prefix: str) -> dict[str, sa.Table]:
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
    services().seal_credentials(target)
    services().validate_metadata(target, always=True)


def _before_update(mapper: Any, connection: Any, target: Integration) -> None:
    services().seal_credentials(target)
    if sa.inspect(target).attrs.metadata.history.has_changes():
        services().validate_metadata(target, always=False)
