"""Checking a provider class before it is registered, and loading one named in the config."""

from __future__ import annotations

import dataclasses
import re
from importlib import import_module
from typing import Any

from ..auth import AuthScheme
from ..errors import ConfigurationError
from . import fields
from .base import Provider, placeholders
from .capabilities import REQUIRED_METHODS
from .handlers import handler_methods
from .limits import limits_of

PROVIDER_KEY = re.compile(r"^[a-z0-9_-]+$")
#: Provider keys the package's own routes use.
RESERVED_KEYS = frozenset({"dashboard", "oauth"})


def check_provider_class(key: str, cls: Any, setting: str = "INTEGRATIONS_PROVIDERS") -> None:
    """Raise ConfigurationError unless `cls` can be registered under `key`."""
    where = f"{setting}[{key!r}]"
    if not isinstance(key, str) or not PROVIDER_KEY.match(key):
        raise ConfigurationError(f"Provider key {key!r} in {setting} must match ^[a-z0-9_-]+$.")
    if key in RESERVED_KEYS:
        raise ConfigurationError(f"Provider key {key!r} in {setting} is reserved for the package's routes.")
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigurationError(f"{where} is not a subclass of flask_integrations.Provider.")
    _check_capabilities(cls, where)
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
    value = getattr(cls, "sync_interval", None)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigurationError(f"{where}.sync_interval must be a positive integer or None.")
    limits_of(getattr(cls, "rate_limit", None), f"{where}.rate_limit")
    if cls.base_url is not None and not (
        isinstance(cls.base_url, str) and cls.base_url.startswith(("http://", "https://"))
    ):
        raise ConfigurationError(f"{where}.base_url must be an http(s) URL or None.")
    if not isinstance(cls.log_bodies, bool):
        raise ConfigurationError(f"{where}.log_bodies must be True or False.")
    _check_declarations(cls, where)


def _check_capabilities(cls: type, where: str) -> None:
    """Each declared capability's methods are defined, or declared by the attribute that stands in."""
    for mixin, requirements in REQUIRED_METHODS.items():
        if not issubclass(cls, mixin):
            continue
        missing = [
            f"{method}()" + (f" (or declare {declaration})" if declaration else "")
            for method, declaration in requirements
            if getattr(cls, method) is getattr(mixin, method)
            and (declaration is None or getattr(cls, declaration, None) is None)
        ]
        if missing:
            raise ConfigurationError(
                f"{where} declares {mixin.__name__} but does not define {', '.join(missing)}."
            )


def _check_declarations(cls: type, where: str) -> None:
    """`base_url` placeholders, `auth` and `webhook_verifier` name fields the provider declares;
    no event has two handler methods."""
    credential_fields = _field_names(cls.credential_class)
    for name in placeholders(cls.base_url):
        if name not in credential_fields | _field_names(cls.metadata_class):
            raise ConfigurationError(
                f"{where}.base_url names {{{name}}}, "
                "which is no field of its credential_class or metadata_class."
            )
    scheme = getattr(cls, "auth", None)
    if scheme is not None and not isinstance(scheme, AuthScheme):
        raise ConfigurationError(
            f"{where}.auth must be a scheme of flask_integrations.auth (Bearer, Header, ...)."
        )
    verifier = getattr(cls, "webhook_verifier", None)
    for declared, names in (
        ("auth", getattr(scheme, "fields", ())),
        ("webhook_verifier", getattr(verifier, "fields", ())),
    ):
        unknown = [
            name for name in names if cls.credential_class is not None and name not in credential_fields
        ]
        if unknown:
            raise ConfigurationError(
                f"{where}.{declared} reads credential {unknown[0]!r}, "
                "which is no field of its credential_class."
            )
    for kind in ("webhook", "sync_item", "deleted"):
        handler_methods(cls, kind)  # raises on an event claimed twice
    deletions = handler_methods(cls, "deleted")
    if getattr(cls, "detects_deletions", False) and not deletions:
        raise ConfigurationError(
            f"{where}.detects_deletions is True but no method is marked @on_deleted(Model) to receive them."
        )
    if deletions and not getattr(cls, "detects_deletions", False):
        raise ConfigurationError(
            f"{where} has @on_deleted methods but is not a ScheduledSync with detects_deletions = True."
        )


def _field_names(cls: type | None) -> set[str]:
    return set(fields.field_specs(cls) or {})


def load_provider(key: str, target: Any) -> Any:
    """The class `INTEGRATIONS_PROVIDERS[key]` names: a class as is, or one imported from 'module:Class'."""
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"INTEGRATIONS_PROVIDERS[{key!r}] must be a class or 'module:Class', got {target!r}."
        )
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"INTEGRATIONS_PROVIDERS[{key!r}]: cannot import {module_name!r} ({exc})."
        ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(
            f"INTEGRATIONS_PROVIDERS[{key!r}]: module {module_name!r} has no {attribute!r}."
        ) from None
