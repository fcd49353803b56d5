"""One call through the pipeline, in the order of SPEC section 3:
cache → (per attempt: breaker → rate limiter → idempotency → call → record) → retry.

This module is the call's entry point and its cache steps; attempt.py runs the attempts.
"""

from __future__ import annotations

import atexit
import logging
from typing import Any

from ..db.transactions import run_detached
from ..errors import CircuitOpenError, IntegrationsError, RateLimitExceeded
from ..providers import SupportsIdempotency
from ..redaction import safe_url_text
from ..state import AppState, current_state
from ..state.app_state import live_states
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
        if not faked(state, spec):
            flush_cache_hits(state, due_only=True)


def faked(state: AppState, spec: RequestBuilder) -> bool:
    """Whether an installed fake answers this call (not a provider it lets through)."""
    return state.fake is not None and not state.fake.passes_through(spec.integration.provider)


def flush_cache_hits(state: AppState, due_only: bool = False) -> None:
    """Write the cache hits counted in the store to their request rows (with `due_only`, at most
    every ~10 s across processes)."""
    store = state.store
    if due_only and not cache.flush_due(store):
        return
    table = state.tables["requests"]
    run_detached(
        state.db.session,
        log_engine(state),
        lambda connection: cache.flush_hits(store, connection, table, before_write=wait_for_all_rows),
    )


def flush_hits_of_this_process(state: AppState, in_request: bool) -> None:
    """At the end of an app context: write the hits this process counted and no flush took yet.

    Outside a request (a job, a command, a script) at once: the process may end next, and a
    forked work horse ends without running `atexit`. Inside a request only when due, so that
    busy web processes still write hits in batches; their last ones go at exit.
    """
    store = state.peek("store")
    if store is None or not cache.hits_unflushed(store):
        return
    try:
        flush_cache_hits(state, due_only=in_request)
    except Exception:  # noqa: BLE001 - the counts stay in the store for the next flush
        logger.exception("flask-integrations: cache hit counts could not be written")


def _flush_hits_at_exit() -> None:
    for state in live_states():
        store = state.peek("store")
        if store is None or not cache.hits_unflushed(store):
            continue
        try:
            with state.app.app_context():
                flush_cache_hits(state)
        except Exception:  # noqa: BLE001 - the interpreter is ending: say so, do not raise
            logger.exception("flask-integrations: cache hit counts could not be written at exit")


atexit.register(_flush_hits_at_exit)  # after writer.py's, so it runs first: rows, then their hits


def run_call(state: AppState, spec: RequestBuilder, method: str, target: Any) -> Any:
    integration = spec.integration
    provider = state.provider(integration.provider)
    if not integration.is_active:
        raise IntegrationsError(
            f"Integration {integration.id} is inactive; call integration.enable() before calling out."
        )
    if faked(state, spec):
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
    label = safe_url_text(spec.endpoint, integration, state.setting("REDACT_KEYS"))
    try:
        outcome = attempts(state, provider, spec, method, target, store, label)
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
    raise outcome.error(label, method)


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
