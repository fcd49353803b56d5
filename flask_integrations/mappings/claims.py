"""Claiming id mappings: map, remap and upsert, safe under concurrency (SPEC section 5).

A mapping row says: on this integration, external id X of type T is the
object of table T whose primary key is `internal_id` (stored as text).
`uq_{p}_map_external` (integration, external id, type) makes a claim unique.

Transactions: every function here works in the caller's session and only
flushes; the caller commits. A mapping is claimed with
``INSERT ... ON CONFLICT DO NOTHING`` (PostgreSQL, SQLite; ``INSERT IGNORE`` on
MySQL and MariaDB; a SAVEPOINT and the IntegrityError elsewhere), so losing a claim never raises inside the
database and the caller's transaction stays usable (no savepoint is needed,
which matters on SQLite: pysqlite's SAVEPOINT handling can commit early).

`upsert_by_external_id` claims the mapping first, with a placeholder
internal id, then creates the object and points the mapping at it. The
database serialises concurrent claims: on PostgreSQL a second claimer waits
on the unique index until the first transaction ends, then reads the
winner's object (this needs READ COMMITTED, PostgreSQL's default, which the
package sets on MySQL connections: db/dialects.py); SQLite
serialises writers anyway. The placeholder is never visible to anyone else:
it becomes the real id before the caller can commit. Commit soon after an
upsert: concurrent upserts of the same id wait for that commit.
"""

from __future__ import annotations

from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..clock import utcnow
from ..db.dialects import insert_unless_duplicate, is_mysql
from ..db.models import IntegrationMapping, type_name_of
from ..errors import MappingAlreadyClaimed
from ..state import current_state
from .lookup import (
    INVALID,
    dialect_of,
    external_id_text,
    find_mapping,
    internal_ref,
    primary_key_value,
    session_of,
)

T = TypeVar("T")


def map_external_id(integration: Any, external_id: Any, obj: Any) -> IntegrationMapping:
    """Map `external_id` to `obj`; the same object again is a no-op.

    Raises `MappingAlreadyClaimed` when another object of the same type holds
    the id (use `remap_external_id` to move it).
    """
    session = session_of()
    external = external_id_text(external_id)
    internal_type, internal_id = internal_ref(session, obj)
    existing = find_mapping(session, integration.id, external, internal_type)
    if existing is None:
        claimed = _claim(session, integration.id, external, internal_type, internal_id)
        if claimed is not None:
            return session.get_one(IntegrationMapping, claimed)
        existing = find_mapping(session, integration.id, external, internal_type)
    if existing is None:  # pragma: no cover - claimed by a transaction that then rolled back
        raise RuntimeError(f"could not map external id {external!r}; retry the transaction.")
    if existing.internal_id != internal_id:
        raise MappingAlreadyClaimed(integration.id, external, internal_type, existing.internal_id)
    return existing


def remap_external_id(integration: Any, external_id: Any, obj: Any) -> IntegrationMapping:
    """Point `external_id` at `obj`, whichever object of its type held it before."""
    session = session_of()
    external = external_id_text(external_id)
    internal_type, internal_id = internal_ref(session, obj)
    for _ in range(_TRIES):
        existing = find_mapping(session, integration.id, external, internal_type)
        if existing is not None:
            existing.internal_id = internal_id
            session.flush()
            return existing
        claimed = _claim(session, integration.id, external, internal_type, internal_id)
        if claimed is not None:
            return session.get_one(IntegrationMapping, claimed)
    raise RuntimeError(f"could not remap external id {external!r}: it keeps changing hands.")


def upsert_by_external_id(
    integration: Any, external_id: Any, model: type[T], attributes: dict[str, Any]
) -> T:
    """The object of `model` mapped to `external_id`, updated with `attributes`, or created and mapped.

    Safe under concurrency: of several processes upserting the same id at
    once, one creates the object and its mapping; the others wait for its
    commit and update that object.
    """
    session = session_of()
    external = external_id_text(external_id)
    internal_type = type_name_of(model)
    for _ in range(_TRIES):
        mapping = find_mapping(session, integration.id, external, internal_type)
        if mapping is None:
            claimed = _claim(session, integration.id, external, internal_type, _PLACEHOLDER)
            if claimed is not None:
                return _create_for(session, model, attributes, claimed, _PLACEHOLDER)
            continue  # another transaction holds the id now: read its object
        key = primary_key_value(model, mapping.internal_id)
        obj = None if key is INVALID else session.get(model, key)
        if obj is not None:
            for name, value in attributes.items():
                setattr(obj, name, value)
            session.flush()
            return obj
        created = _create_for(session, model, attributes, mapping.id, mapping.internal_id)
        session.expire(mapping)
        if created is not None:
            return created
    raise RuntimeError(f"could not upsert external id {external!r}: it keeps changing hands.")


_TRIES = 5


#: The internal id of a mapping claimed by `upsert_by_external_id` before its object exists;
#: replaced in the same transaction, so never committed.
_PLACEHOLDER = ""


def _claim(
    session: Session, integration_id: int, external: str, internal_type: str, internal_id: str
) -> int | None:
    """Insert a mapping unless one exists for (integration, external id, type); its id, or None."""
    table = current_state().tables["mappings"]
    now = utcnow()
    values = {
        "integration_id": integration_id,
        "external_id": external,
        "internal_type": internal_type,
        "internal_id": internal_id,
        "created_at": now,
        "updated_at": now,
    }
    unique = [table.c.integration_id, table.c.external_id, table.c.internal_type]
    dialect = dialect_of(session, None)
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(table).values(values).on_conflict_do_nothing(index_elements=unique)
        return session.execute(statement.returning(table.c.id)).scalar()
    if is_mysql(dialect):
        return insert_unless_duplicate(session, table, values)
    try:  # other databases: the unique constraint, inside a savepoint
        with session.begin_nested():
            return session.execute(sa.insert(table).values(values).returning(table.c.id)).scalar()
    except sa.exc.IntegrityError:
        return None


def _create_for(
    session: Session, model: type[T], attributes: dict[str, Any], mapping_id: int, expected: str
) -> T | None:
    """Create the object and point mapping `mapping_id` (still holding `expected`) at it.

    None, with the object deleted again, if another transaction re-pointed the mapping meanwhile.
    """
    table = current_state().tables["mappings"]
    try:
        obj = model(**attributes)
        session.add(obj)
        _, internal_id = internal_ref(session, obj)
    except Exception:
        if session.is_active and expected == _PLACEHOLDER:  # leave no placeholder behind
            session.execute(sa.delete(table).where(table.c.id == mapping_id))
        raise
    moved = session.execute(
        sa.update(table)
        .where(table.c.id == mapping_id, table.c.internal_id == expected)
        .values(internal_id=internal_id, updated_at=utcnow())
    ).rowcount
    if moved == 1:
        return obj
    session.delete(obj)
    session.flush()
    return None
