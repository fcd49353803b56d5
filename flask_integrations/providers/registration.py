"""Checking a provider class before it is registered, and loading one named in the config."""

from __future__ import annotations

import dataclasses
import re
from importlib import import_module
from typing import Any

from ..errors import ConfigurationError
from . import fields
from .base import Provider
from .capabilities import REQUIRED_METHODS

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
    for mixin, methods in REQUIRED_METHODS.items():
        if issubclass(cls, mixin):
            missing = [m for m in methods if getattr(cls, m) is getattr(mixin, m)]
            if missing:
                raise ConfigurationError(
                    f"{where} declares {mixin.__name__} but does not define {', '.join(missing)}()."
                )
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
    for attr in ("sync_interval", "rate_limit"):
        value = getattr(cls, attr, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigurationError(f"{where}.{attr} must be a positive integer or None.")
    if cls.base_url is not None and not (
        isinstance(cls.base_url, str) and cls.base_url.startswith(("http://", "https://"))
    ):
        raise ConfigurationError(f"{where}.base_url must be an http(s) URL or None.")


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
