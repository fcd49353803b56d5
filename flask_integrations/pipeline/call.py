"""One call through the pipeline, in the order of SPEC section 3:
cache → (per attempt: breaker → rate limiter → idempotency → call → record) → retry.

This module is the call's entry point and its cache steps; attempt.py runs the attempts.
"""

from __future__ import annotations

import logging
from typing import Any

from ..db.transactions import run_detached
from ..errors import CircuitOpenError, IntegrationsError, RateLimitExceeded
from ..providers import SupportsIdempotency
from ..state import AppState, current_state
from . import cache, idempotency
from .attempt import attempts
from .builder import RequestBuilder
from .writer import log_engine, wait_for_all_rows

logger = logging.getLogger("flask_integrations")

_warned_no_idempotency: set[str] = set()


def request(integration: Any, endpoint: str) -> RequestBuilder:
    """`integration.at(endpoint)`: a builder whose verbs run through this pipeline."""
    return RequestBuilder(integration, endpoint, run)


def run(spec: RequestBuilder, method: str, target: Any) -> Any:
    state = current_state()
    try:
        return run_call(state, spec, method, target)
    finally:
        if state.fake is None:
            flush_cache_hits(state, due_only=True)


def flush_cache_hits(state: AppState, due_only: bool = False) -> None:
    """Write the cache hits counted in the store to their request rows (every ~10 s per app)."""
    store = state.store
    if due_only and not cache.flush_due(store):
        return
    table = state.tables["requests"]
    run_detached(
        state.db.session,
        log_engine(state),
        lambda connection: cache.flush_hits(store, connection, table, before_write=wait_for_all_rows),
    )


def run_call(state: AppState, spec: RequestBuilder, method: str, target: Any) -> Any:
    integration = spec.integration
    provider = state.provider(integration.provider)
    if not integration.is_active:
        raise IntegrationsError(
            f"Integration {integration.id} is inactive; call integration.enable() before calling out."
        )
    if state.fake is not None:
        return state.fake.answer(spec, method, target)
    store = state.store
    key = cache_key_for(spec, method, target)
    if key is not None:
        entry = cache.get(store, key)
        if entry is not None:
            cache.count_hit(store, entry.request_id)
            return spec.build(entry.value)
    integration.credentials_dict()  # unreadable: CredentialsDecryptionError before anything is sent
    if spec.idempotency_key is not None:
        idempotency.ensure_independent_commit(state)
        warn_without_wire_support(provider)
    try:
        outcome = attempts(state, provider, spec, method, target, store)
    except (CircuitOpenError, RateLimitExceeded):
        stale = stale_value(state, store, spec, key)
        if stale is not _MISSING:
            return stale
        raise
    if outcome.failure is None:
        if key is not None and not spec.raw:
            cache.put(
                store,
                key,
                outcome.value,
                spec.cache_ttl,
                state.setting("CACHE")["stale_ttl"],
                outcome.request_id,
            )
        return outcome.response if spec.raw else spec.build(outcome.value)
    stale = stale_value(state, store, spec, key)
    if stale is not _MISSING:
        return stale
    raise outcome.error(spec, method)


_MISSING = object()


def stale_value(state: AppState, store: Any, spec: RequestBuilder, key: str | None) -> Any:
    if key is None or not spec.serve_stale:
        return _MISSING
    entry = cache.get_stale(store, key)
    if entry is None:
        return _MISSING
    cache.count_hit(store, entry.request_id, stale=True)
    return spec.build(entry.value)


def cache_key_for(spec: RequestBuilder, method: str, target: Any) -> str | None:
    if spec.cache_ttl is None or method not in spec.cache_methods:
        return None
    name = target if isinstance(target, str) else getattr(target, "__qualname__", repr(target))
    return cache.cache_key(spec.integration.id, method, spec.endpoint, name, [spec.data, spec.form])


def warn_without_wire_support(provider: Any) -> None:
    if not isinstance(provider, SupportsIdempotency) and provider.key not in _warned_no_idempotency:
        _warned_no_idempotency.add(provider.key)
        logger.warning(
            "Provider %r does not declare SupportsIdempotency: keyed calls run at most once here, "
            "but the key is not sent upstream.",
            provider.key,
        )
