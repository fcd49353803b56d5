"""Text given on the command line (``--credential key=value``, prompts) turned into typed values."""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

import click

from ..providers import OAUTH_TOKEN_FIELDS, OAuth2, Provider, fields
from .group import fail

#: Words that make a field's value secret-looking (besides INTEGRATIONS_REDACT_KEYS).
SECRET_WORDS = ("password", "secret", "token", "key")


_TRUE = frozenset({"true", "1", "yes"})


_FALSE = frozenset({"false", "0", "no"})


def is_secret_name(name: str, redact_keys: list[str]) -> bool:
    """Whether a field's value should be typed without echo."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS) or lowered in {k.lower() for k in redact_keys}


def parse_pairs(option: str, pairs: tuple[str, ...]) -> dict[str, str]:
    """`KEY=VALUE` options as a dict; malformed or repeated keys fail (never echoing a value)."""
    result: dict[str, str] = {}
    for position, pair in enumerate(pairs, 1):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"{option} number {position} is not KEY=VALUE (e.g. {option} name=value).")
        if key in result:
            fail(f"{option} {_field_name(key)} is given more than once.")
        result[key] = value
    return result


def _field_name(name: str) -> str:
    """`name` for an error message, unless it does not look like a field name (it may be a value)."""
    return name if name.isidentifier() and len(name) <= 64 else "(a name that is not a field name)"


def convert_value(text: str, annotation: Any) -> Any:
    """`text` converted to a dataclass field's type; ValueError says what was expected (not the value).

    int, float, bool (true/false, yes/no, 1/0), list and dict (JSON), str as is;
    `null` is None for an Optional field; an `Any` field takes the text, or JSON
    when it starts with `{` or `[`.
    """
    if annotation is Any:
        return _loose_value(text)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if type(None) in members and text.strip().lower() == "null":
            return None
        candidates = sorted((m for m in members if m is not type(None)), key=_conversion_order)
        for member in candidates:
            try:
                return convert_value(text, member)
            except ValueError:
                continue
        raise ValueError(f"expected {fields.type_name(annotation)}")
    value = _convert_plain(text, annotation)
    if not fields.matches(value, annotation):
        raise ValueError(f"expected {fields.type_name(annotation)}")
    return value


def _conversion_order(annotation: Any) -> int:
    """Specific types are tried before Any, and str (which takes anything) last."""
    return 2 if annotation is str else 1 if annotation is Any else 0


def _convert_plain(text: str, annotation: Any) -> Any:
    if annotation is str:
        return text
    if annotation is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise ValueError("expected true/false, yes/no or 1/0")
    if annotation is int:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
    if annotation is float:
        try:
            number = float(text.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(number):
            raise ValueError("expected a finite number")
        return number
    container = typing.get_origin(annotation) or annotation
    if container in (list, dict):
        example = '["a", "b"]' if container is list else '{"key": "value"}'
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError(f"expected a JSON {container.__name__}, e.g. {example}") from None
        if not isinstance(value, container):
            raise ValueError(f"expected a JSON {container.__name__}, e.g. {example}")
        return value
    raise ValueError(f"cannot be given as text ({fields.type_name(annotation)})")


def _loose_value(text: str) -> Any:
    if not text.strip().startswith(("{", "[")):
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError("starts like JSON but is not valid JSON") from None


class FieldValue(click.ParamType):
    """A prompted value, converted like the `KEY=VALUE` options (click asks again when it fails)."""

    name = "value"

    def __init__(self, annotation: Any):
        self.annotation = annotation

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return convert_value(value, self.annotation)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@dataclass
class FieldSet:
    """The credential or metadata fields of an install: what was given, and what the provider wants."""

    kind: str  # "credential" or "metadata"
    specs: dict[str, fields.FieldSpec] | None
    extra: dict[str, Any]  # optional fields accepted besides the dataclass's (OAuth2 tokens)
    values: dict[str, Any]

    @property
    def option(self) -> str:
        return f"--{self.kind}"

    def missing(self) -> list[str]:
        if self.specs is None:
            return []
        return [name for name, spec in self.specs.items() if spec.required and name not in self.values]


def given_fields(kind: str, provider: Provider, given: dict[str, str]) -> FieldSet:
    """Convert the given `KEY=VALUE` strings to the provider's field types; unknown names fail."""
    if kind == "credential":
        specs = provider.credential_fields()
        extra = dict(OAUTH_TOKEN_FIELDS) if isinstance(provider, OAuth2) else {}
    else:
        specs, extra = fields.field_specs(provider.metadata_class), {}
    field_set = FieldSet(kind, specs, extra, {})
    if specs is not None:
        unknown = [name for name in given if name not in specs and name not in extra]
        if unknown:
            fail(
                f"Unknown {kind} field(s) for provider {provider.key!r}: "
                f"{', '.join(_field_name(n) for n in unknown)} "
                f"(it has: {', '.join([*specs, *extra]) or 'none'})."
            )
    for name, text in given.items():
        annotation = specs[name].annotation if specs and name in specs else extra.get(name, Any)
        try:
            field_set.values[name] = convert_value(text, annotation)
        except ValueError as exc:
            fail(f"{field_set.option} {name}: {exc}.")
    return field_set


def prompt_missing(field_set: FieldSet, redact_keys: list[str]) -> None:
    for name in field_set.missing():
        annotation = field_set.specs[name].annotation if field_set.specs else Any
        label = f"{field_set.kind.capitalize()} {name} ({fields.type_name(annotation)})"
        try:
            field_set.values[name] = click.prompt(
                label, type=FieldValue(annotation), hide_input=is_secret_name(name, redact_keys)
            )
        except click.Abort:
            fail(f"No value for required {field_set.kind} field {name!r}; give it with {field_set.option}.")
