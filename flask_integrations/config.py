"""Configuration defaults and validation of every `INTEGRATIONS_*` key."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError

PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,29}$")

DEFAULTS: dict[str, Any] = {
    "INTEGRATIONS_TABLE_PREFIX": "integration",
    "INTEGRATIONS_ENCRYPTION_KEYS": None,
    "INTEGRATIONS_PROVIDERS": {},
    "INTEGRATIONS_REDIS_URL": None,
    "INTEGRATIONS_REDIS_PREFIX": "integrations:",
    "INTEGRATIONS_URL_PREFIX": "/integrations",
    "INTEGRATIONS_BLUEPRINTS": {"webhooks": True, "oauth": True, "dashboard": True},
    "INTEGRATIONS_HTTP_TIMEOUT": 30,
    "INTEGRATIONS_RATE_LIMIT_MAX_WAIT": 10,
    "INTEGRATIONS_RETRY_AFTER_MAX": 600,
    "INTEGRATIONS_CACHE": {"stale_ttl": 86400},
    "INTEGRATIONS_BREAKER": {"enabled": True, "threshold": 5, "cooldown": 60},
    "INTEGRATIONS_HEALTH": {
        "degraded_after": 5,
        "failing_after": 20,
        "disabled_after": 50,
        "degraded_backoff": 2,
        "failing_backoff": 10,
    },
    "INTEGRATIONS_WEBHOOK": {
        "queue": "integrations",
        "max_payload_bytes": 1048576,
        "processing_timeout": 1800,
        "pending_timeout": 300,
        "max_attempts": 3,
        "retry_delay": 30,
    },
    "INTEGRATIONS_SYNC": {
        "queue": "integrations",
        "queues": {},
        "item_queue": None,
        "item_tries": 5,
        "item_backoff": [10, 30, 120, 300, 900],
        "items_per_job": 500,
        "lock_ttl": 1800,
        "pending_timeout": 300,
        "max_items_per_run": 10000,
        "stale_after": 3,
        "max_backoff": 86400,
    },
    "INTEGRATIONS_PRUNING": {
        "requests_days": 90,
        "logs_days": 365,
        "idempotency_keys_days": 90,
        "sync_items_days": 30,
        "webhooks_days": 90,
        "chunk_size": 1000,
    },
    "INTEGRATIONS_OAUTH": {
        "state_ttl": 600,
        "success_redirect": "/",
        "redirect_uri": None,
        "refresh_lock_ttl": 30,
        "refresh_lock_wait": 15,
    },
    "INTEGRATIONS_DASHBOARD_AUTH": None,
    "INTEGRATIONS_OAUTH_AUTH": None,
    "INTEGRATIONS_LOG_BODIES": True,
    "INTEGRATIONS_LOG_BODY_MAX_BYTES": 65536,
    "INTEGRATIONS_REDACT_KEYS": [
        "password",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "access_token",
        "refresh_token",
        "client_secret",
    ],
}

# Dict-valued settings whose inner keys are fixed; user values are merged over
# the defaults. (INTEGRATIONS_PROVIDERS is a free mapping, not merged.)
MERGED_KEYS = (
    "INTEGRATIONS_BLUEPRINTS",
    "INTEGRATIONS_CACHE",
    "INTEGRATIONS_BREAKER",
    "INTEGRATIONS_HEALTH",
    "INTEGRATIONS_WEBHOOK",
    "INTEGRATIONS_SYNC",
    "INTEGRATIONS_PRUNING",
    "INTEGRATIONS_OAUTH",
)

_NUMBER = (int, float)


def _is_number(value: Any, *, positive: bool = False, allow_zero: bool = True) -> bool:
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        return False
    return value > 0 or (allow_zero and value == 0) if positive else value >= 0


def _is_int(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def load(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the resolved settings: defaults with the app's values merged over them."""
    unknown = sorted(k for k in config if k.startswith("INTEGRATIONS_") and k not in DEFAULTS)
    if unknown:
        raise ConfigurationError(f"Unknown setting {unknown[0]}; see the configuration table in the docs.")
    resolved: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        value = config.get(key, copy.deepcopy(default))
        if key in MERGED_KEYS:
            value = _merge(key, default, value)
        resolved[key] = value
    resolved["INTEGRATIONS_ENCRYPTION_KEYS"] = _key_list(resolved["INTEGRATIONS_ENCRYPTION_KEYS"])
    _check(resolved)
    return resolved


def _merge(key: str, default: dict[str, Any], value: Any) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{key} must be a dict, got {type(value).__name__}.")
    unknown = sorted(k for k in value if k not in default)
    if unknown:
        raise ConfigurationError(f"Unknown key {unknown[0]!r} in {key}.")
    merged = copy.deepcopy(default)
    merged.update(value)
    return merged


def _key_list(value: Any) -> list[str]:
    if value is None or value == "" or value == []:
        raise ConfigurationError(
            "INTEGRATIONS_ENCRYPTION_KEYS is not set; generate a key with "
            '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.'
        )
    if isinstance(value, str | bytes):
        value = value.decode() if isinstance(value, bytes) else value
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = [v.decode() if isinstance(v, bytes) else v for v in value]
    else:
        raise ConfigurationError(
            "INTEGRATIONS_ENCRYPTION_KEYS must be a list or a comma-separated string of Fernet keys."
        )
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ConfigurationError("INTEGRATIONS_ENCRYPTION_KEYS must contain non-empty Fernet keys.")
    return items


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(message)


def _check(c: dict[str, Any]) -> None:
    prefix = c["INTEGRATIONS_TABLE_PREFIX"]
    _require(
        isinstance(prefix, str) and bool(PREFIX_PATTERN.match(prefix)),
        "INTEGRATIONS_TABLE_PREFIX must match ^[a-z][a-z0-9_]{0,29}$.",
    )
    _require(
        isinstance(c["INTEGRATIONS_PROVIDERS"], Mapping),
        "INTEGRATIONS_PROVIDERS must be a dict of provider key to class or 'module:Class'.",
    )
    redis_url = c["INTEGRATIONS_REDIS_URL"]
    _require(
        redis_url is None
        or (isinstance(redis_url, str) and redis_url.startswith(("redis://", "rediss://", "unix://"))),
        "INTEGRATIONS_REDIS_URL must be a redis://, rediss:// or unix:// URL, or None.",
    )
    _require(
        isinstance(c["INTEGRATIONS_REDIS_PREFIX"], str),
        "INTEGRATIONS_REDIS_PREFIX must be a string.",
    )
    url_prefix = c["INTEGRATIONS_URL_PREFIX"]
    _require(
        isinstance(url_prefix, str) and url_prefix.startswith("/") and not url_prefix.endswith("/"),
        "INTEGRATIONS_URL_PREFIX must start with '/' and not end with one.",
    )
    for name, on in c["INTEGRATIONS_BLUEPRINTS"].items():
        _require(isinstance(on, bool), f"INTEGRATIONS_BLUEPRINTS[{name!r}] must be True or False.")
    for key in ("INTEGRATIONS_HTTP_TIMEOUT", "INTEGRATIONS_RETRY_AFTER_MAX"):
        _require(_is_number(c[key], positive=True, allow_zero=False), f"{key} must be a positive number.")
    _require(
        _is_number(c["INTEGRATIONS_RATE_LIMIT_MAX_WAIT"]),
        "INTEGRATIONS_RATE_LIMIT_MAX_WAIT must be a number >= 0.",
    )
    _require(
        _is_int(c["INTEGRATIONS_LOG_BODY_MAX_BYTES"], 1),
        "INTEGRATIONS_LOG_BODY_MAX_BYTES must be a positive integer.",
    )
    _require(
        isinstance(c["INTEGRATIONS_LOG_BODIES"], bool),
        "INTEGRATIONS_LOG_BODIES must be True or False.",
    )
    redact = c["INTEGRATIONS_REDACT_KEYS"]
    _require(
        isinstance(redact, list | tuple) and all(isinstance(k, str) and k for k in redact),
        "INTEGRATIONS_REDACT_KEYS must be a list of non-empty strings.",
    )
    for key in ("INTEGRATIONS_DASHBOARD_AUTH", "INTEGRATIONS_OAUTH_AUTH"):
        _require(c[key] is None or callable(c[key]), f"{key} must be a callable or None.")
    _check_sections(c)


def _check_sections(c: dict[str, Any]) -> None:
    def positive_ints(section: str, *names: str, minimum: int = 1) -> None:
        for name in names:
            _require(
                _is_int(c[section][name], minimum),
                f"{section}[{name!r}] must be an integer >= {minimum}.",
            )

    cache = c["INTEGRATIONS_CACHE"]
    _require(_is_number(cache["stale_ttl"]), "INTEGRATIONS_CACHE['stale_ttl'] must be a number >= 0.")
    breaker = c["INTEGRATIONS_BREAKER"]
    _require(
        isinstance(breaker["enabled"], bool),
        "INTEGRATIONS_BREAKER['enabled'] must be True or False.",
    )
    positive_ints("INTEGRATIONS_BREAKER", "threshold")
    _require(
        _is_number(breaker["cooldown"], positive=True, allow_zero=False),
        "INTEGRATIONS_BREAKER['cooldown'] must be a positive number.",
    )
    health = c["INTEGRATIONS_HEALTH"]
    positive_ints("INTEGRATIONS_HEALTH", "degraded_after", "failing_after")
    _require(
        health["disabled_after"] is None or _is_int(health["disabled_after"], 1),
        "INTEGRATIONS_HEALTH['disabled_after'] must be a positive integer or None.",
    )
    ordered = [health["degraded_after"], health["failing_after"]]
    if health["disabled_after"] is not None:
        ordered.append(health["disabled_after"])
    _require(
        ordered == sorted(ordered),
        "INTEGRATIONS_HEALTH thresholds must satisfy degraded_after <= failing_after <= disabled_after.",
    )
    for name in ("degraded_backoff", "failing_backoff"):
        _require(
            _is_number(health[name], positive=True, allow_zero=False),
            f"INTEGRATIONS_HEALTH[{name!r}] must be a positive number.",
        )
    positive_ints(
        "INTEGRATIONS_WEBHOOK",
        "max_payload_bytes",
        "processing_timeout",
        "pending_timeout",
        "max_attempts",
    )
    positive_ints("INTEGRATIONS_WEBHOOK", "retry_delay", minimum=0)
    sync = c["INTEGRATIONS_SYNC"]
    positive_ints(
        "INTEGRATIONS_SYNC",
        "item_tries",
        "items_per_job",
        "lock_ttl",
        "pending_timeout",
        "max_items_per_run",
        "stale_after",
        "max_backoff",
    )
    _require(
        isinstance(sync["queues"], Mapping),
        "INTEGRATIONS_SYNC['queues'] must be a dict of provider key to queue name.",
    )
    backoff = sync["item_backoff"]
    _require(
        isinstance(backoff, list | tuple) and bool(backoff) and all(_is_number(v) for v in backoff),
        "INTEGRATIONS_SYNC['item_backoff'] must be a non-empty list of seconds.",
    )
    for section, name in (("INTEGRATIONS_WEBHOOK", "queue"), ("INTEGRATIONS_SYNC", "queue")):
        _require(
            isinstance(c[section][name], str) and bool(c[section][name]),
            f"{section}[{name!r}] must be a queue name.",
        )
    positive_ints(
        "INTEGRATIONS_PRUNING",
        "requests_days",
        "logs_days",
        "idempotency_keys_days",
        "sync_items_days",
        "webhooks_days",
        "chunk_size",
    )
    positive_ints("INTEGRATIONS_OAUTH", "state_ttl", "refresh_lock_ttl", "refresh_lock_wait")
    oauth = c["INTEGRATIONS_OAUTH"]
    _require(
        isinstance(oauth["success_redirect"], str),
        "INTEGRATIONS_OAUTH['success_redirect'] must be a URL or path.",
    )
    _require(
        oauth["redirect_uri"] is None or isinstance(oauth["redirect_uri"], str),
        "INTEGRATIONS_OAUTH['redirect_uri'] must be a URL or None.",
    )
