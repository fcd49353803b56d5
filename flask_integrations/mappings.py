"""External ids mapped to the app's own objects (SPEC section 5).

A mapping row says: on this integration, external id X of type T is the
object of table T whose primary key is `internal_id` (stored as text).
`uq_{p}_map_external` (integration, external id, type) makes a claim unique.

Transactions: every function here works in the caller's session and only
flushes; the caller commits. A mapping is claimed with
``INSERT ... ON CONFLICT DO NOTHING`` (PostgreSQL, SQLite; a SAVEPOINT and the
IntegrityError elsewhere), so losing a claim never raises inside the
database and the caller's transaction stays usable (no savepoint is needed,
which matters on SQLite: pysqlite's SAVEPOINT handling can commit early).

`upsert_by_external_id` claims the mapping first, with a placeholder
internal id, then creates the object and points the mapping at it. The
database serialises concurrent claims: on PostgreSQL a second claimer waits
on the unique index until the first transaction ends, then reads the
winner's object (this needs READ COMMITTED, PostgreSQL's default); SQLite
serialises writers anyway. The placeholder is never visible to anyone else:
it becomes the real id before the caller can commit. Commit soon after an
upsert: concurrent upserts of the same id wait for that commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, scoped_session

from .clock import utcnow
from .errors import MappingAlreadyClaimed, ValidationError
from .models import IntegrationMapping, type_name_of
from .state import current_state

T = TypeVar("T")

EXTERNAL_ID_MAX = 500


def map_external_id(integration: Any, external_id: Any, obj: Any) -> IntegrationMapping:
    """Map `external_id` to `obj`; the same object again is a no-op.

    Raises `MappingAlreadyClaimed` when another object of the same type holds
    the id (use `remap_external_id` to move it).
    """
    session = _session()
    external = _external_id(external_id)
    internal_type, internal_id = _internal_ref(session, obj)
    existing = _find(session, integration.id, external, internal_type)
    if existing is None:
        claimed = _claim(session, integration.id, external, internal_type, internal_id)
        if claimed is not None:
            return session.get_one(IntegrationMapping, claimed)
        existing = _find(session, integration.id, external, internal_type)
    if existing is None:  # pragma: no cover - claimed by a transaction that then rolled back
        raise RuntimeError(f"could not map external id {external!r}; retry the transaction.")
    if existing.internal_id != internal_id:
        raise MappingAlreadyClaimed(integration.id, external, internal_type, existing.internal_id)
    return existing


def remap_external_id(integration: Any, external_id: Any, obj: Any) -> IntegrationMapping:
    """Point `external_id` at `obj`, whichever object of its type held it before."""
    session = _session()
    external = _external_id(external_id)
    internal_type, internal_id = _internal_ref(session, obj)
    for _ in range(_TRIES):
        existing = _find(session, integration.id, external, internal_type)
        if existing is not None:
            existing.internal_id = internal_id
            session.flush()
            return existing
        claimed = _claim(session, integration.id, external, internal_type, internal_id)
        if claimed is not None:
            return session.get_one(IntegrationMapping, claimed)
    raise RuntimeError(f"could not remap external id {external!r}: it keeps changing hands.")


def resolve_mapping(integration: Any, external_id: Any, model: type[T]) -> T | None:
    """The object of `model` mapped to `external_id`, or None (also when it was deleted)."""
    session = _session()
    mapping = _find(session, integration.id, _external_id(external_id), type_name_of(model))
    if mapping is None:
        return None
    key = _primary_key_value(model, mapping.internal_id)
    return None if key is _INVALID else session.get(model, key)


def resolve_mappings(integration: Any, external_ids: Iterable[Any], model: type[T]) -> dict[Any, T | None]:
    """``{external id: object or None}`` for many ids, in two queries whatever their number.

    The keys are the ids as given. The ids travel as one JSON or array
    parameter, so no bind-parameter limit applies.
    """
    given = list(dict.fromkeys(external_ids))
    result: dict[Any, T | None] = dict.fromkeys(given)
    if not given:
        return result
    session = _session()
    state = current_state()
    table = state.tables["mappings"]
    by_text = {_external_id(i): i for i in given}
    rows = session.execute(
        sa.select(table.c.external_id, table.c.internal_id).where(
            table.c.integration_id == integration.id,
            table.c.internal_type == type_name_of(model),
            _in_list(table.c.external_id, list(by_text), _dialect(session, None)),
        )
    ).all()
    keys = {external: _primary_key_value(model, internal) for external, internal in rows}
    wanted = [k for k in dict.fromkeys(keys.values()) if k is not _INVALID]
    if not wanted:
        return result
    column = _primary_key_column(model)
    objects = session.scalars(
        sa.select(model).where(_in_list(column, wanted, _dialect(session, model)))
    ).all()
    by_key = {sa.inspect(o).identity[0]: o for o in objects}
    for external, key in keys.items():
        result[by_text[external]] = by_key.get(key)
    return result


def find_external_id(integration: Any, obj: Any) -> str | None:
    """The external id mapped to `obj` (the most recent if several), or None."""
    session = _session()
    internal_type, internal_id = _internal_ref(session, obj, flush=False)
    if internal_id is None:
        return None
    table = current_state().tables["mappings"]
    return session.scalar(
        sa.select(table.c.external_id)
        .where(
            table.c.integration_id == integration.id,
            table.c.internal_type == internal_type,
            table.c.internal_id == internal_id,
        )
        .order_by(table.c.id.desc())
        .limit(1)
    )


def upsert_by_external_id(
    integration: Any, external_id: Any, model: type[T], attributes: dict[str, Any]
) -> T:
    """The object of `model` mapped to `external_id`, updated with `attributes`, or created and mapped.

    Safe under concurrency: of several processes upserting the same id at
    once, one creates the object and its mapping; the others wait for its
    commit and update that object.
    """
    session = _session()
    external = _external_id(external_id)
    internal_type = type_name_of(model)
    for _ in range(_TRIES):
        mapping = _find(session, integration.id, external, internal_type)
        if mapping is None:
            claimed = _claim(session, integration.id, external, internal_type, _PLACEHOLDER)
            if claimed is not None:
                return _create_for(session, model, attributes, claimed, _PLACEHOLDER)
            continue  # another transaction holds the id now: read its object
        key = _primary_key_value(model, mapping.internal_id)
        obj = None if key is _INVALID else session.get(model, key)
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


# -- claims --------------------------------------------------------------------------------------

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
    dialect = _dialect(session, None)
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(table).values(values).on_conflict_do_nothing(index_elements=unique)
        return session.execute(statement.returning(table.c.id)).scalar()
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
        _, internal_id = _internal_ref(session, obj)
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


# -- helpers -------------------------------------------------------------------------------------


def _session() -> Session:
    session = current_state().db.session
    return session() if isinstance(session, scoped_session) else session


def _find(
    session: Session, integration_id: int, external: str, internal_type: str
) -> IntegrationMapping | None:
    return session.scalar(
        sa.select(IntegrationMapping).where(
            IntegrationMapping.integration_id == integration_id,
            IntegrationMapping.external_id == external,
            IntegrationMapping.internal_type == internal_type,
        )
    )


def _external_id(external_id: Any) -> str:
    if isinstance(external_id, bool) or not isinstance(external_id, str | int):
        raise ValidationError("external id", {"external_id": "must be a string or an integer"})
    text = str(external_id)
    if not text:
        raise ValidationError("external id", {"external_id": "must not be empty"})
    if len(text) > EXTERNAL_ID_MAX:
        raise ValidationError("external id", {"external_id": f"longer than {EXTERNAL_ID_MAX} characters"})
    return text


def _internal_ref(session: Session, obj: Any, flush: bool = True) -> tuple[str, str | None]:
    """(table name, primary key as text) of a mapped object; pending objects are flushed first."""
    internal_type = type_name_of(obj)
    state = sa.inspect(obj)
    if state.identity is None and flush and state.pending:
        session.flush()
    identity = state.identity
    if identity is None:
        if not flush:
            return internal_type, None
        raise ValidationError("mapped object", {internal_type: "must be added to the session first"})
    if len(identity) != 1:
        raise ValidationError("mapped object", {internal_type: "composite primary keys cannot be mapped"})
    return internal_type, str(identity[0])


def _primary_key_column(model: type) -> sa.ColumnElement:
    columns = sa.inspect(model).primary_key
    if len(columns) != 1:
        raise ValidationError("model", {model.__name__: "composite primary keys cannot be mapped"})
    return columns[0]


_INVALID = object()


def _primary_key_value(model: type, internal_id: str) -> Any:
    """The stored text converted back to the key's Python type (`_INVALID` if it does not convert)."""
    column = _primary_key_column(model)
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return internal_id
    try:
        return internal_id if python_type is str else python_type(internal_id)
    except (TypeError, ValueError):
        return _INVALID


def _dialect(session: Session, model: type | None) -> str:
    bind = session.get_bind(mapper=sa.inspect(model) if model is not None else sa.inspect(IntegrationMapping))
    return bind.dialect.name


def _in_list(column: Any, values: list[Any], dialect: str) -> sa.ColumnElement[bool]:
    """`column IN values` with one bind parameter (a PostgreSQL array, or a JSON array on SQLite)."""
    plain = all(isinstance(v, int | str) and not isinstance(v, bool) for v in values)
    if dialect == "postgresql" and plain:
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.bindparam(None, values, type_=ARRAY(column.type)))
    if dialect == "sqlite" and plain:
        items = sa.func.json_each(sa.bindparam(None, json.dumps(values), type_=sa.String)).table_valued(
            "value"
        )
        return column.in_(sa.select(items.c.value))
    return column.in_(values)
