"""Validation of credential and metadata dicts against a provider's dataclasses.

Supported field types: str, int, float, bool, list, dict (optionally
parametrised), Optional[...] / ``X | None`` and ``Any``. A bool is not an int;
an int is accepted for a float.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from ..errors import ValidationError

MASK = "***"


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    name: str
    annotation: Any
    required: bool
    default: Any = None


def field_specs(cls: type | None) -> dict[str, FieldSpec] | None:
    """The fields of a dataclass, or None when any dict is accepted."""
    if cls is None:
        return None
    hints = typing.get_type_hints(cls)
    specs = {}
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory
        specs[f.name] = FieldSpec(f.name, hints.get(f.name, Any), required, default)
    return specs


def check_field_types(cls: type, setting: str) -> list[str]:
    """Names of fields whose annotation this module cannot check (for registration errors)."""
    bad = []
    for spec in (field_specs(cls) or {}).values():
        if not _supported(spec.annotation):
            bad.append(f"{setting}.{spec.name}")
    return bad


def _supported(annotation: Any) -> bool:
    if annotation is Any or annotation in (str, int, float, bool, list, dict):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return all(arg is type(None) or _supported(arg) for arg in typing.get_args(annotation))
    if origin in (list, dict):
        return all(_supported(arg) for arg in typing.get_args(annotation))
    return False


def type_name(annotation: Any) -> str:
    if annotation is Any:
        return "any"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def matches(value: Any, annotation: Any) -> bool:
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is list or origin is list:
        args = typing.get_args(annotation)
        return isinstance(value, list) and (not args or all(matches(v, args[0]) for v in value))
    if annotation is dict or origin is dict:
        args = typing.get_args(annotation)
        if not isinstance(value, dict):
            return False
        return not args or all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
    return isinstance(value, annotation) if isinstance(annotation, type) else False


def validate(
    subject: str,
    data: Any,
    specs: dict[str, FieldSpec] | None,
    extra_optional: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check `data` against `specs` and return it with defaults filled in.

    Raises ValidationError naming every bad field (never a value).
    """
    if not isinstance(data, Mapping):
        raise ValidationError(subject, {"(root)": f"expected a dict, got {type(data).__name__}"})
    errors: dict[str, str] = {}
    for key in data:
        if not isinstance(key, str):
            errors[repr(key)] = "field names must be strings"
    if specs is None:
        if errors:
            raise ValidationError(subject, errors)
        return dict(data)
    extra = dict(extra_optional or {})
    result: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in data:
            if not matches(data[name], spec.annotation):
                errors[name] = f"expected {type_name(spec.annotation)}, got {type(data[name]).__name__}"
            result[name] = data[name]
        elif spec.required:
            errors[name] = "required"
        else:
            result[name] = spec.default() if callable(spec.default) else spec.default
    for name, value in data.items():
        if name in specs or not isinstance(name, str):
            continue
        if name in extra:
            if not matches(value, extra[name]):
                errors[name] = f"expected {type_name(extra[name])}, got {type(value).__name__}"
            result[name] = value
        else:
            errors[name] = "unknown field"
    if errors:
        raise ValidationError(subject, errors)
    return result


def read_only_instance(cls: type, values: Mapping[str, Any], secret: bool) -> Any:
    """An instance of `cls` that refuses attribute assignment (and masks its repr when `secret`)."""
    view_cls = _read_only_class(cls, secret)
    instance = object.__new__(view_cls)
    for name, value in values.items():
        object.__setattr__(instance, name, value)
    return instance


_VIEW_CLASSES: dict[tuple[type, bool], type] = {}


def _read_only_class(cls: type, secret: bool) -> type:
    key = (cls, secret)
    if key not in _VIEW_CLASSES:

        def refuse(self: Any, name: str, value: Any = None) -> None:
            raise AttributeError(
                f"{cls.__name__} is read-only; change it with integration.update(credentials=...)."
            )

        namespace: dict[str, Any] = {"__setattr__": refuse, "__delattr__": refuse}
        if secret:

            def masked_repr(self: Any) -> str:
                declared = [f.name for f in dataclasses.fields(cls)]
                names = ", ".join(
                    f"{n}={MASK!r}" for n in dict.fromkeys(declared + list(getattr(self, "__dict__", {})))
                )
                return f"{cls.__name__}({names})"

            namespace["__repr__"] = masked_repr
            namespace["__str__"] = masked_repr
        _VIEW_CLASSES[key] = type(cls.__name__, (cls,), namespace)
    return _VIEW_CLASSES[key]


class SecretDict(dict):
    """A read-only dict of credentials whose repr masks the values."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("credentials are read-only; change them with integration.update(credentials=...).")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {MASK!r}" for k in self) + "}"

    __str__ = __repr__
