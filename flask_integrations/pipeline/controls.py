"""What the app or an operator does to one integration's pipeline state: its breaker, its cache."""

from __future__ import annotations

from .. import signals
from ..db.models import Integration
from ..state import AppState, current_state
from . import breaker, cache, ratelimit


def breaker_state(integration: Integration) -> str:
    """'closed', 'open' or 'half-open'."""
    state = current_state()
    return breaker.breaker_state(state.store, integration.id, state.setting("BREAKER"))


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
