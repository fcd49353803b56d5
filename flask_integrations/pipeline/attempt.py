"""The attempts of one call: steps 2-8 of SPEC section 3, repeated until success or spent retries.

Before every attempt the breaker and the limiter admit it (`admit`); a keyed call
claims its idempotency key once; the attempt runs (`call_once`: the callable, or the
URL call with its auth), then feeds the breaker and the limiter, writes its request
row and records health.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import httpx

from .. import signals
from ..db.statuses import FailureClass
from ..errors import CircuitOpenError, RateLimitExceeded, StoreUnavailable
from ..oauth import tokens
from ..parsing import parse_number
from ..state import AppState
from . import breaker, classify, idempotency, overrides, ratelimit, retry
from .context import RequestContext, activate, wants_context
from .http import client, decode
from .outcome import Outcome
from .record import CallLog, record
from .wire import build_request, sets_authorization

if TYPE_CHECKING:  # pragma: no cover
    from .builder import RequestBuilder

logger = logging.getLogger("flask_integrations")

#: What `admit` returns while an override forces the breaker closed.
BYPASSED = None


def attempts(
    state: AppState, provider: Any, spec: RequestBuilder, method: str, target: Any, store: Any, label: str
) -> Any:
    """Run attempts until success, a final failure, or spent retries; return the last Outcome.

    `label` is the endpoint as the rows show it (credentials scrubbed)."""
    integration = spec.integration
    breaker_settings = state.setting("BREAKER")
    max_attempts = spec.attempts or retry.default_attempts(method)
    call_log = CallLog(label, spec.retry_of_id)
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
        if state.fake is not None:  # a passthrough call of a fake: recorded as it goes out
            state.fake.record_passthrough(spec, method, target, attempt)
        outcome = call_once(state, provider, spec, method, target, ctx)
        if probe is not BYPASSED:
            transition = breaker.after_attempt(
                store, integration.id, outcome.failure, breaker_settings, probe
            )
            if transition is not None:
                send_breaker_signal(state, integration, transition)
        report_limits(store, integration.id, ctx, outcome, state.setting("RETRY_AFTER_MAX"))
        best_effort(
            "write the request row", record, state, provider, spec, method, target, ctx, outcome, call_log
        )
        if outcome.failure is None:
            if spec.records_health:
                best_effort("record the success", integration.record_success)
            if claimed:
                complete_key(state, spec, outcome)
            return outcome
        if spec.records_health:
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
            failure=outcome.failure if outcome.classified_by_provider else None,
        )
        if delay is None:
            break
        time.sleep(delay)
    if claimed and provably_not_acted(last):
        idempotency.release(state, integration.id, spec.idempotency_key)
    elif claimed:
        complete_key(state, spec, last)
    return last


def complete_key(state: AppState, spec: RequestBuilder, outcome: Outcome) -> None:
    """The keyed call ended and keeps its key: record its answer for later conflicts."""
    best_effort(
        "record the keyed call's answer",
        idempotency.complete,
        state,
        spec.integration.id,
        spec.idempotency_key,
        outcome.request_id,
    )


def admit(state: AppState, provider: Any, store: Any, integration_id: int) -> bool | None:
    """Steps 2 and 3 before every attempt: the breaker, then the limiter, as overridden.

    Returns True for the half-open probe, False for a normal attempt, and `BYPASSED`
    (None) while an override forces the breaker closed: the attempt then feeds no breaker.
    """
    settings = state.setting("BREAKER")
    breaker_keys, limiter_keys = breaker.read_keys(integration_id), ratelimit.read_keys(integration_id)
    keys = [*breaker_keys, *limiter_keys, overrides.read_key(integration_id)]
    try:  # one read for both gates and the overrides, served locally while nothing changes (tracking.py)
        values = store.get_many_tracked(keys)
    except StoreUnavailable:
        values = [None] * len(keys)
    known_breaker = values[: len(breaker_keys)]
    known_limiter = values[len(breaker_keys) : len(breaker_keys) + len(limiter_keys)]
    forced = overrides.active(state, integration_id, known=values[-1], read=False)
    forced_breaker = forced.get("breaker")
    if forced_breaker is not None and forced_breaker.value == "open":
        raise CircuitOpenError(integration_id, retry_after=forced_breaker.seconds_left, forced=True)
    probe = (
        BYPASSED
        if forced_breaker is not None
        else breaker.before_attempt(store, integration_id, settings, known=known_breaker)
    )
    try:
        ratelimit.acquire(
            store,
            integration_id,
            overrides.effective_limits(provider.rate_limit, forced),
            state.setting("RATE_LIMIT_MAX_WAIT"),
            known=known_limiter,
        )
    except RateLimitExceeded:
        if probe:  # give the probe back, or every caller sees an open breaker until the claim expires
            breaker.after_attempt(store, integration_id, FailureClass.THROTTLE, settings, probe)
        raise
    return probe


def send_breaker_signal(state: AppState, integration: Any, transition: str) -> None:
    """`breaker_opened` / `breaker_closed`, by the one caller that saw the transition."""
    signal = signals.breaker_opened if transition == breaker.OPENED else signals.breaker_closed
    best_effort(f"send breaker_{transition}", lambda: signal.send(state.app, integration=integration))


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
        client(state)  # created on first use; not part of the call's duration
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
    if outcome.failure is not None:
        told = classify.provider_failure_class(provider, outcome.exc, outcome.response)
        if told is not None:
            outcome.failure, outcome.classified_by_provider = told, True
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
    outcome.request_data = spec.form if spec.form is not None else spec.data
    if not sets_authorization(spec):
        outcome.bearer = tokens.bearer_token(provider, spec.integration)
    request = build_request(state, provider, spec, method, target, outcome.bearer)
    if outcome.bearer and request.headers.get("Authorization") != f"Bearer {outcome.bearer}":
        outcome.bearer = None  # prepare_request put its own credentials: a 401 is not about this token
    return client(state).send(request)


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
            reset = parse_number(response.headers.get("x-ratelimit-reset"))
            reset_at = reset if reset is not None else reset_at
    elif outcome.exc is not None and retry_after is None and outcome.failure == "throttle":
        retry_after = classify.find_retry_after(outcome.exc)
    if retry_after is not None or (remaining == 0 and reset_at is not None):
        ratelimit.report(
            store, integration_id, retry_after=retry_after, remaining=remaining, reset_at=reset_at, cap=cap
        )
