"""What the app or an operator does to one integration's pipeline state: its breaker, its cache."""

from __future__ import annotations

from typing import Any

from .. import signals
from ..db.models import Integration
from ..state import AppState, current_state
from . import breaker, cache, overrides, ratelimit


def breaker_state(integration: Integration) -> str:
    """'closed', 'open' or 'half-open'; an override's forced state while one is in force."""
    state = current_state()
    forced = overrides.active(state, integration.id).get("breaker")
    if forced is not None:
        return forced.value
    return breaker.breaker_state(state.store, integration.id, state.setting("BREAKER"))


def override(
    integration: Integration,
    breaker: str | None = None,
    rate_limit: Any = None,
    ttl: float = 3600,
) -> dict[str, overrides.Override]:
    """Force the breaker ("open"/"closed") and/or set the rate limit for `ttl` seconds."""
    return overrides.set_overrides(current_state(), integration.id, breaker, rate_limit, ttl)


def clear_overrides(integration: Integration) -> None:
    overrides.clear(current_state(), integration.id)


def current_overrides(integration: Integration) -> dict[str, overrides.Override]:
    return overrides.active(current_state(), integration.id)


def reset_breaker(integration: Integration) -> None:
    """Close the breaker and forget its failures (`breaker_closed` when it was open)."""
    state = current_state()
    if breaker.reset(state.store, integration.id):
        signals.breaker_closed.send(state.app, integration=integration)


def forget_cache(integration: Integration, endpoint: str | None = None) -> None:
    """Drop the integration's cached responses: all of them, or one endpoint's."""
    cache.forget(current_state().store, integration.id, endpoint)


def forget_integration(state: AppState, integration_id: int) -> None:
    """Drop everything the pipeline keeps under an integration's id: its cached responses, its
    breaker and its rate limit (a deleted integration's state must never reach another)."""
    cache.forget(state.store, integration_id)
    breaker.reset(state.store, integration_id)
    ratelimit.reset(state.store, integration_id)
