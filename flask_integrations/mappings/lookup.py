"""Reading id mappings: the object behind an external id, and the external id of an object.

The helpers here (external id and primary key conversions) are shared with claims.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from ..db.models import IntegrationMapping, type_name_of
from ..db.transactions import plain_session
from ..errors import ValidationError
from ..state import current_state

T = TypeVar("T")

EXTERNAL_ID_MAX = 500


def resolve_mapping(integration: Any, external_id: Any, model: type[T]) -> T | None:
    """The object of `model` mapped to `external_id`, or None (also when it was deleted)."""
    session = session_of()
    mapping = find_mapping(session, integration.id, external_id_text(external_id), type_name_of(model))
    if mapping is None:
        return None
    key = primary_key_value(model, mapping.internal_id)
    return None if key is INVALID else session.get(model, key)


def resolve_mappings(integration: Any, external_ids: Iterable[Any], model: type[T]) -> dict[Any, T | None]:
    """``{external id: object or None}`` for many ids, in two queries whatever their number.

    The keys are the ids as given. The ids travel as one JSON or array
    parameter, so no bind-parameter limit applies.
    """
    given = list(dict.fromkeys(external_ids))
    result: dict[Any, T | None] = dict.fromkeys(given)
    if not given:
        return result
    session = session_of()
    state = current_state()
    table = state.tables["mappings"]
    by_text = {external_id_text(i): i for i in given}
    rows = session.execute(
        sa.select(table.c.external_id, table.c.internal_id).where(
            table.c.integration_id == integration.id,
            table.c.internal_type == type_name_of(model),
            in_list(table.c.external_id, list(by_text), dialect_of(session, None)),
        )
    ).all()
    keys = {external: primary_key_value(model, internal) for external, internal in rows}
    wanted = [k for k in dict.fromkeys(keys.values()) if k is not INVALID]
    if not wanted:
        return result
    column = primary_key_column(model)
    objects = session.scalars(
        sa.select(model).where(in_list(column, wanted, dialect_of(session, model)))
    ).all()
    by_key = {sa.inspect(o).identity[0]: o for o in objects}
    for external, key in keys.items():
        result[by_text[external]] = by_key.get(key)
    return result


def find_external_id(integration: Any, obj: Any) -> str | None:
    """The external id mapped to `obj` (the most recent if several), or None."""
    session = session_of()
    internal_type, internal_id = internal_ref(session, obj, flush=False)
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


def session_of() -> Session:
    return plain_session(current_state().db.session)


def find_mapping(
    session: Session, integration_id: int, external: str, internal_type: str
) -> IntegrationMapping | None:
    return session.scalar(
        sa.select(IntegrationMapping).where(
            IntegrationMapping.integration_id == integration_id,
            IntegrationMapping.external_id == external,
            IntegrationMapping.internal_type == internal_type,
        )
    )


def external_id_text(external_id: Any) -> str:
    if isinstance(external_id, bool) or not isinstance(external_id, str | int):
        raise ValidationError("external id", {"external_id": "must be a string or an integer"})
    text = str(external_id)
    if not text:
        raise ValidationError("external id", {"external_id": "must not be empty"})
    if len(text) > EXTERNAL_ID_MAX:
        raise ValidationError("external id", {"external_id": f"longer than {EXTERNAL_ID_MAX} characters"})
    return text


def internal_ref(session: Session, obj: Any, flush: bool = True) -> tuple[str, str | None]:
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


def primary_key_column(model: type) -> sa.ColumnElement:
    columns = sa.inspect(model).primary_key
    if len(columns) != 1:
        raise ValidationError("model", {model.__name__: "composite primary keys cannot be mapped"})
    return columns[0]


INVALID = object()


def primary_key_value(model: type, internal_id: str) -> Any:
    """The stored text converted back to the key's Python type (`INVALID` if it does not convert)."""
    column = primary_key_column(model)
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return internal_id
    try:
        return internal_id if python_type is str else python_type(internal_id)
    except (TypeError, ValueError):
        return INVALID


def dialect_of(session: Session, model: type | None) -> str:
    bind = session.get_bind(mapper=sa.inspect(model) if model is not None else sa.inspect(IntegrationMapping))
    return bind.dialect.name


def in_list(column: Any, values: list[Any], dialect: str) -> sa.ColumnElement[bool]:
    """`column IN values` with one bind parameter (a PostgreSQL array, or a JSON array on SQLite)."""
    plain = all(isinstance(v, int | str) and not isinstance(v, bool) for v in values)
    if dialect == "postgresql" and plain:
        return column == sa.any_(sa.bindparam(None, values, type_=ARRAY(column.type)))
    if dialect == "sqlite" and plain:
        items = sa.func.json_each(sa.bindparam(None, json.dumps(values), type_=sa.String)).table_valued(
            "value"
        )
        return column.in_(sa.select(items.c.value))
    return column.in_(values)
