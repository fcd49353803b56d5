"""The logging context of work done for an integration (SPEC section 4).

`operation_context(integration, operation)` marks the code inside it as work for that
integration; `IntegrationContextFilter` copies the marks onto every `logging` record
(installed on the ``flask_integrations`` logger at import; add it to your own handlers
for your records).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..db.models import Integration

logger = logging.getLogger("flask_integrations")

_operation: ContextVar[tuple[int | None, str | None, str | None] | None] = ContextVar(
    "flask_integrations_operation", default=None
)
CONTEXT_FIELDS = ("integration_id", "integration_provider", "integration_operation")


@contextmanager
def operation_context(integration: Integration, operation: str) -> Iterator[None]:
    """Inside the block, log records carry the integration's id, provider key and `operation`.

    The values are read once on entry, so the filter never touches the database.
    """
    token = _operation.set((integration.id, integration.provider, operation))
    try:
        yield
    finally:
        _operation.reset(token)


def current_operation() -> dict[str, Any]:
    """The context fields in effect here (all None outside `operation_context`)."""
    return dict(zip(CONTEXT_FIELDS, _operation.get() or (None, None, None), strict=True))


class IntegrationContextFilter(logging.Filter):
    """Adds `integration_id`, `integration_provider` and `integration_operation` to every record.

    The values come from the innermost `operation_context` (None outside one);
    values a caller passed through ``extra=`` are kept. Never filters anything out.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_operation().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def install_context_filter(
    target: logging.Logger | logging.Handler | None = None,
) -> IntegrationContextFilter:
    """Add the filter to a logger or handler (default: the ``flask_integrations`` logger), once."""
    target = target if target is not None else logger
    for existing in target.filters:
        if isinstance(existing, IntegrationContextFilter):
            return existing
    installed = IntegrationContextFilter()
    target.addFilter(installed)
    return installed


install_context_filter()
