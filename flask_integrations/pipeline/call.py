"""One call through the pipeline, in the order of SPEC section 3:
cache → (per attempt: breaker → rate limiter → idempotency → call → record) → retry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from .. import signals
from ..detached import run_detached
from ..errors import CircuitOpenError, IntegrationHTTPError, IntegrationsError, RateLimitExceeded
from ..health import THROTTLE
from ..models import polymorphic_ref
from ..oauth import tokens
from ..providers import SupportsIdempotency
from ..state import AppState, current_state
from ..store import StoreUnavailable, get_store
from . import breaker, cache, classify, idempotency, ratelimit, redact, retry, timeline
from .context import RequestContext, activate, wants_context
from .http import client, decode, join_url
from .record import CallLog, log_engine, write_attempt
from .writer import Finish, wait_for_all_rows, wait_for_thread_rows

if TYPE_CHECKING:  # pragma: no cover
    from .builder import RequestBuilder

logger = logging.getLogger("flask_integrations")

REQUEST_ID_HEADERS = ("request-id", "x-request-id", "x-github-request-id", "x-amzn-requestid")
_warned_no_idempotency: set[str] = set()


@dataclass
class Outcome:
    """What one attempt produced."""

    value: Any = None
    response: httpx.Response | None = None
    exc: BaseException | None = None
    status: int | None = None
    failure: str | None = None
    duration_ms: int = 0
    request_data: Any = None
    request_id: int | None = None
    #: the OAuth2 access token the package put on the request (never shown)
    bearer: str | None = field(default=None, repr=False)

    def error(self, spec: RequestBuilder, method: str) -> BaseException:
        if self.exc is not None:
            return self.exc
        return IntegrationHTTPError(
            self.status or 0, self.response, f"{method} {spec.endpoint} answered HTTP {self.status}."
        )


def run(spec: RequestBuilder, method: str, target: Any) -> Any:
    state = current_state()
    try:
        return run_call(state, spec, method, target)
    finally:
        if state.fake is None:
            flush_cache_hits(state, due_only=True)


def flush_cache_hits(state: AppState, due_only: bool = False) -> None:
    """Write the cache hits counted in the store to their request rows (every ~10 s per app)."""
    store = get_store(state)
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
    store = get_store(state)
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


def attempts(
    state: AppState, provider: Any, spec: RequestBuilder, method: str, target: Any, store: Any
) -> Any:
    """Run attempts until success, a final failure, or spent retries; return the last Outcome."""
    integration = spec.integration
    breaker_settings = state.setting("BREAKER")
    max_attempts = spec.attempts or retry.default_attempts(method)
    call_log = CallLog(spec.retry_of_id)
    claimed = False
    last: Outcome | None = None
    attempt = 0
    token_retries = 0  # a retry with a refreshed OAuth2 token is not taken from the budget
    while True:
        attempt += 1
        try:
            probe = admit(state, provider, store, integration.id)
        except (CircuitOpenError, RateLimitExceeded):
            if claimed:
                idempotency.release(state, integration.id, spec.idempotency_key)
            if last is not None:
                return last
            raise
        if spec.idempotency_key is not None and not claimed:
            idempotency.claim(state, integration.id, spec.idempotency_key)
            claimed = True
        ctx = RequestContext(integration=integration, idempotency_key=spec.idempotency_key, attempt=attempt)
        outcome = call_once(state, provider, spec, method, target, ctx)
        breaker.after_attempt(store, integration.id, outcome.failure, breaker_settings, probe)
        report_limits(store, integration.id, ctx, outcome, state.setting("RETRY_AFTER_MAX"))
        best_effort(
            "write the request row", record, state, provider, spec, method, target, ctx, outcome, call_log
        )
        if outcome.failure is None:
            best_effort("record the success", integration.record_success)
            return outcome
        best_effort("record the failure", integration.record_failure, outcome.failure)
        last = outcome
        if not token_retries and token_rejected(integration, outcome):
            token_retries = 1
            continue
        delay = retry.retry_delay(
            attempt=attempt - token_retries,
            max_attempts=max_attempts,
            status=outcome.status,
            exc=outcome.exc,
            provider=provider,
            retry_after_max=state.setting("RETRY_AFTER_MAX"),
            response=outcome.response,
        )
        if delay is None:
            break
        time.sleep(delay)
    if claimed and provably_not_acted(last):
        idempotency.release(state, integration.id, spec.idempotency_key)
    return last


def admit(state: AppState, provider: Any, store: Any, integration_id: int) -> bool:
    """Steps 2 and 3 before every attempt: the breaker, then the limiter. True = half-open probe."""
    settings = state.setting("BREAKER")
    breaker_keys, limiter_keys = breaker.read_keys(integration_id), ratelimit.read_keys(integration_id)
    try:  # one read for both gates, served locally while nothing changes (store_tracking.py)
        values = store.get_many_tracked(breaker_keys + limiter_keys)
    except StoreUnavailable:
        values = [None] * (len(breaker_keys) + len(limiter_keys))
    known_breaker, known_limiter = values[: len(breaker_keys)], values[len(breaker_keys) :]
    probe = breaker.before_attempt(store, integration_id, settings, known=known_breaker)
    try:
        ratelimit.acquire(
            store,
            integration_id,
            provider.rate_limit,
            state.setting("RATE_LIMIT_MAX_WAIT"),
            known=known_limiter,
        )
    except RateLimitExceeded:
        if probe:  # give the probe back, or every caller sees an open breaker until the claim expires
            breaker.after_attempt(store, integration_id, THROTTLE, settings, probe)
        raise
    return probe


def best_effort(what: str, fn: Any, *args: Any) -> None:
    """Bookkeeping after the call: a database hiccup here must not turn a done call into an error."""
    try:
        fn(*args)
    except Exception:  # noqa: BLE001
        logger.exception("flask-integrations could not %s; the call's outcome stands", what)


def provably_not_acted(outcome: Outcome) -> bool:
    """The upstream did not act: a 4xx other than 408/409/429, or no connection was made."""
    if outcome.status is not None and 400 <= outcome.status < 500:
        return outcome.status not in (408, 409, 429)
    return outcome.exc is not None and classify.connection_never_established(outcome.exc)


def call_once(
    state: AppState, provider: Any, spec: RequestBuilder, method: str, target: Any, ctx: RequestContext
) -> Outcome:
    outcome = Outcome()
    if not callable(target):
        client()  # created on first use; not part of the call's duration
    started = time.perf_counter()
    try:
        with activate(ctx):
            if callable(target):
                outcome.request_data = spec.data
                result = target(ctx) if wants_context(target) else target()
                if isinstance(result, httpx.Response):
                    outcome.response = result
                    outcome.status = result.status_code
                outcome.value = result
            else:
                outcome.response = send(state, provider, spec, method, target, ctx, outcome)
                outcome.status = outcome.response.status_code
                outcome.value = decode(outcome.response)
        if outcome.status is not None:
            outcome.failure = classify.classify_status(outcome.status)
    except Exception as exc:  # noqa: BLE001 - every failure is classified, recorded and re-raised
        outcome.exc = exc
        outcome.status = classify.find_status(exc)
        outcome.failure = classify.classify_exception(exc)
    outcome.duration_ms = int((time.perf_counter() - started) * 1000)
    return outcome


def send(
    state: AppState,
    provider: Any,
    spec: RequestBuilder,
    method: str,
    target: str,
    ctx: RequestContext,
    outcome: Outcome,
) -> httpx.Response:
    url = join_url(provider.base_url, target)
    is_get = method == "GET"
    outcome.request_data = spec.form if spec.form is not None else spec.data
    request = client().build_request(
        method,
        url,
        params=spec.data if is_get and spec.data is not None else None,
        json=spec.data if not is_get and spec.data is not None and spec.form is None else None,
        data=spec.form,
        headers=spec.headers,
        timeout=spec.timeout or state.setting("HTTP_TIMEOUT"),
    )
    if spec.idempotency_key and isinstance(provider, SupportsIdempotency):
        request.headers.setdefault("Idempotency-Key", spec.idempotency_key)
    if "Authorization" not in request.headers:
        outcome.bearer = tokens.bearer_token(provider, spec.integration)
        if outcome.bearer:
            request.headers["Authorization"] = f"Bearer {outcome.bearer}"
    provider.prepare_request(spec.integration, request)
    if outcome.bearer and request.headers.get("Authorization") != f"Bearer {outcome.bearer}":
        outcome.bearer = None  # prepare_request put its own credentials: a 401 is not about this token
    return client().send(request)


def token_rejected(integration: Any, outcome: Outcome) -> bool:
    """A 401 to the OAuth2 token this call sent, and a fresh token now stored: retry once."""
    return (
        outcome.status == 401
        and outcome.bearer is not None
        and tokens.refresh_rejected(integration, outcome.bearer)
    )


def report_limits(store: Any, integration_id: int, ctx: RequestContext, outcome: Outcome, cap: float) -> None:
    """Feed what the upstream said about its limits to the limiter's adaptive suppression."""
    retry_after = ctx.retry_after
    remaining = ctx.rate_limit_remaining
    reset_at = ctx.rate_limit_reset_at
    response = outcome.response
    if response is not None:
        if retry_after is None and response.status_code in (429, 503):
            retry_after = classify.find_retry_after(response)
        if remaining is None and response.headers.get("x-ratelimit-remaining") == "0":
            remaining = 0
            reset = response.headers.get("x-ratelimit-reset")
            reset_at = float(reset) if reset and reset.replace(".", "", 1).isdigit() else reset_at
    elif outcome.exc is not None and retry_after is None and outcome.failure == "throttle":
        retry_after = classify.find_retry_after(outcome.exc)
    if retry_after is not None or (remaining == 0 and reset_at is not None):
        ratelimit.report(
            store, integration_id, retry_after=retry_after, remaining=remaining, reset_at=reset_at, cap=cap
        )


def record(
    state: AppState,
    provider: Any,
    spec: RequestBuilder,
    method: str,
    target: Any,
    ctx: RequestContext,
    outcome: Outcome,
    call_log: CallLog,
) -> None:
    integration = spec.integration
    secrets = redact.integration_secrets(integration)
    log_bodies = state.setting("LOG_BODIES")
    body_options = {
        "redact_keys": state.setting("REDACT_KEYS"),
        "secrets": secrets,
        "max_bytes": state.setting("LOG_BODY_MAX_BYTES"),
    }
    related_type, related_id = (
        polymorphic_ref(spec.related, "related") if spec.related is not None else (None, None)
    )
    error = None
    if outcome.exc is not None:
        error = redact.scrub(f"{type(outcome.exc).__name__}: {outcome.exc}", secrets)
    elif outcome.failure is not None:
        error = f"HTTP {outcome.status}"
    values = {
        "integration_id": integration.id,
        "endpoint": spec.endpoint[:2048],
        "method": method[:255],
        "status_code": outcome.status,
        "request_data": redact.prepare_body(
            outcome.request_data, paths=getattr(provider, "sensitive_request_fields", ()), **body_options
        )
        if log_bodies
        else None,
        "response_data": None,
        "error": error,
        "duration_ms": outcome.duration_ms,
        "idempotency_key": spec.idempotency_key,
        "provider_request_id": provider_request_id(ctx, outcome.response),
        "related_type": related_type,
        "related_id": related_id,
        "failure_class": outcome.failure,
        "cache_hits": 0,
        "stale_hits": 0,
    }

    def then(row_id: int | None) -> None:
        timeline.note(row_id)
        ctx.request_id = row_id
        outcome.request_id = row_id
        common = {
            "integration": integration,
            "request_id": row_id,
            "endpoint": spec.endpoint,
            "method": method,
        }
        signal = signals.request_completed if outcome.failure is None else signals.request_failed
        if not signal.receivers:
            return
        wait_for_thread_rows()  # signals go out after the row they describe is committed
        if outcome.failure is None:
            signal.send(state.app, status_code=outcome.status, duration_ms=outcome.duration_ms, **common)
        else:
            signal.send(state.app, error=error, failure_class=outcome.failure, **common)

    finish = None
    if log_bodies:
        response_paths = getattr(provider, "sensitive_response_fields", ())
        finish = response_body_later(outcome, target, response_paths, body_options)
        if finish is None:
            value = outcome.value
            body = decode(value) if isinstance(value, httpx.Response) else value
            values["response_data"] = redact.prepare_body(body, paths=response_paths, **body_options)
    write_attempt(state, call_log, values, then, finish)


def response_body_later(
    outcome: Outcome, target: Any, paths: Any, body_options: dict[str, Any]
) -> Finish | None:
    """The redaction of the response body, to run in the row writer's thread, or None to run it now.

    Only a body read from an `httpx.Response` waits: the response's bytes cannot
    change, where the caller may change the value it was given. A body larger
    than the stored maximum is redacted now, so that queued rows stay small.
    """
    response = outcome.response
    if response is None or (callable(target) and outcome.value is not response):
        return None  # no response, or an SDK's own value, which its caller now holds
    try:
        if len(response.content) > body_options["max_bytes"]:
            return None
    except httpx.ResponseNotRead:
        return None
    return lambda: {"response_data": redact.prepare_body(decode(response), paths=paths, **body_options)}


def provider_request_id(ctx: RequestContext, response: httpx.Response | None) -> str | None:
    if ctx.provider_request_id:
        return str(ctx.provider_request_id)[:255]
    if response is not None:
        found = {name: value for name, value in response.headers.items() if name in REQUEST_ID_HEADERS}
        for name in REQUEST_ID_HEADERS:
            if found.get(name):
                return found[name][:255]
    return None
