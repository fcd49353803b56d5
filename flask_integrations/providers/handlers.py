"""Handlers as provider methods: ``@on_webhook("task.created")``, ``@on_sync_item("task")`` and
``@on_deleted(Task)``.

The decorators only mark a method with the events it handles; `handler_methods` finds the
marked methods of a provider class (its bases too) and refuses two methods claiming one
event, which registration checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])

#: The marks the decorators leave, by kind of handler.
_MARKS = {
    "webhook": "_fi_webhook_events",
    "sync_item": "_fi_sync_item_events",
    "deleted": "_fi_deleted_models",
}


def on_webhook(*events: str) -> Callable[[F], F]:
    """Make a provider method ``method(self, integration, webhook)`` the handler of these webhook events."""
    return _marker("webhook", events)


def on_sync_item(*events: str) -> Callable[[F], F]:
    """Make a provider method ``method(self, integration, payload)`` the handler of the sync items
    dispatched with these events (by this provider's runs; before `@integrations.sync_handler`)."""
    return _marker("sync_item", events)


def on_deleted(*models: type) -> Callable[[F], F]:
    """Make a provider method ``method(self, integration, external_ids)`` the handler of records of
    these models deleted upstream (a provider with ``detects_deletions = True``): after a full run
    whose items all succeeded, the external ids mapped to a model that the run did not dispatch
    arrive in chunks; their mappings are removed once the method returns."""
    if not models or not all(isinstance(model, type) for model in models):
        raise ConfigurationError("@on_deleted() needs one or more model classes, e.g. @on_deleted(Task).")
    return _mark("deleted", models)


def _marker(kind: str, events: tuple[str, ...]) -> Callable[[F], F]:
    if not events or not all(isinstance(e, str) and e for e in events):
        raise ConfigurationError(f"@on_{kind}() needs one or more event names (non-empty strings).")
    return _mark(kind, events)


def _mark(kind: str, events: tuple[Any, ...]) -> Callable[[F], F]:
    def mark(method: F) -> F:
        marked = (*getattr(method, _MARKS[kind], ()), *events)
        setattr(method, _MARKS[kind], marked)
        return method

    return mark


@functools.cache
def handler_methods(cls: type, kind: str) -> dict[Any, str]:
    """``{event: method name}`` of the methods of `cls` marked for `kind` ("webhook", "sync_item";
    "deleted": ``{model: method name}``).

    Raises `ConfigurationError` when two methods claim one event.
    """
    found: dict[Any, str] = {}
    for name in dir(cls):
        events = getattr(getattr(cls, name, None), _MARKS[kind], ())
        for event in events:
            if event in found and found[event] != name:
                what = (
                    f"deletions of {event.__name__}"
                    if kind == "deleted"
                    else f"{kind.replace('_', ' ')} event {event!r}"
                )
                raise ConfigurationError(
                    f"{cls.__name__}.{found[event]}() and {cls.__name__}.{name}() both handle "
                    f"{what}; give it to one of them."
                )
            found[event] = name
    return found


def bound_handlers(provider: Any, kind: str) -> dict[Any, Callable[..., Any]]:
    """``{event: bound method}`` of a provider instance's marked methods."""
    return {event: getattr(provider, name) for event, name in handler_methods(type(provider), kind).items()}
