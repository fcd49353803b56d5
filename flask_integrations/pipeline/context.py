"""`RequestContext`: what a callable target learns about, and tells about, one attempt.

A callable with a required positional parameter receives the context;
`current_context()` returns it from anywhere inside the call (it lives in a
`ContextVar`, so threads and asyncio tasks started elsewhere do not see it).
`ctx.report(...)` only stores what the callable learnt from the upstream; the
pipeline reads it after the call (provider request id for the log, limits
for the rate limiter).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..db.models import Integration

__all__ = ["RequestContext", "activate", "current_context", "wants_context"]

_current: ContextVar[RequestContext | None] = ContextVar("flask_integrations_request_context", default=None)


class RequestContext:
    """One attempt of an outbound call, as its callable target sees it.

    `integration` is the Integration being called, `idempotency_key` the
    caller's key (put it on the wire for `SupportsIdempotency` upstreams),
    `attempt` counts from 1, and `request_id` is the id of this attempt's
    request-log row once it is written (None before).
    """

    def __init__(
        self,
        integration: Integration,
        idempotency_key: str | None = None,
        attempt: int = 1,
        request_id: int | None = None,
    ):
        self.integration = integration
        self.idempotency_key = idempotency_key
        self.attempt = attempt
        self.request_id = request_id
        self.provider_request_id: Any = None
        self.rate_limit_remaining: Any = None
        self.rate_limit_reset_at: Any = None
        self.retry_after: Any = None
        #: everything reported so far, later reports overriding earlier ones
        self.reports: dict[str, Any] = {}

    def report(
        self,
        provider_request_id: Any = None,
        rate_limit_remaining: Any = None,
        rate_limit_reset_at: Any = None,
        retry_after: Any = None,
    ) -> None:
        """Tell the pipeline what the upstream said; None leaves a value as it was.

        `provider_request_id`: the upstream's id of this request (stored on the
        request-log row). `rate_limit_remaining` / `rate_limit_reset_at`
        (a datetime or epoch seconds) and `retry_after` (seconds) feed the
        rate limiter's adaptive suppression. Values are stored as given.
        """
        given = {
            "provider_request_id": provider_request_id,
            "rate_limit_remaining": rate_limit_remaining,
            "rate_limit_reset_at": rate_limit_reset_at,
            "retry_after": retry_after,
        }
        for name, value in given.items():
            if value is not None:
                setattr(self, name, value)
                self.reports[name] = value

    def __repr__(self) -> str:
        integration = self.integration
        who = f"{getattr(integration, 'provider', None)!r} {getattr(integration, 'id', None)}"
        return (
            f"<RequestContext integration={who} attempt={self.attempt} "
            f"idempotency_key={self.idempotency_key!r} request_id={self.request_id}>"
        )


def current_context() -> RequestContext | None:
    """The context of the outbound call running right now, or None outside one."""
    return _current.get()


@contextmanager
def activate(ctx: RequestContext) -> Iterator[RequestContext]:
    """Make `ctx` the current context for the duration of the block (nesting restores the outer one)."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def wants_context(fn: Callable[..., Any]) -> bool:
    """True when `fn` has a required positional parameter, which then receives the context.

    Bound methods and `functools.partial` count what is left to pass; `*args`
    alone is not a request for the context; a callable whose signature cannot
    be read (some builtins) is called without arguments.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(
        p.kind in positional and p.default is inspect.Parameter.empty for p in signature.parameters.values()
    )
