"""Every status the package stores or reports, in one place.

Each is a `StrEnum`: a member is its string (``HealthStatus.HEALTHY == "healthy"``), so it is
stored, compared, rendered and serialised as that string everywhere.
"""

from __future__ import annotations

from enum import StrEnum


class HealthStatus(StrEnum):
    """`integrations.health_status`: healthy → degraded → failing → disabled."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"
    DISABLED = "disabled"


class FailureClass(StrEnum):
    """What kind of failure an attempt was (`requests.failure_class`); see `pipeline.classify`."""

    UPSTREAM = "upstream"
    THROTTLE = "throttle"
    CLIENT = "client"
    UNKNOWN = "unknown"


class BreakerState(StrEnum):
    """A circuit breaker's state, as `integration.breaker_state()` reports it."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Direction(StrEnum):
    """`logs.direction`."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class LogStatus(StrEnum):
    """The statuses the package gives operation logs (apps may log others)."""

    PROCESSING = "processing"
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"


class ItemStatus(StrEnum):
    """`sync_items.status`."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCESS = "success"
    SKIPPED = "skipped"
    FAILED = "failed"


class WebhookStatus(StrEnum):
    """`webhooks.status`."""

    PENDING = "pending"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"
    DUPLICATE = "duplicate"


#: Items whose handling is over: a run finalises once all its items are in one of these.
TERMINAL_ITEM_STATUSES = (ItemStatus.SUCCESS, ItemStatus.SKIPPED, ItemStatus.FAILED)
#: Items a retention run may delete; `failed`, `pending` and `processing` are kept.
DONE_ITEM_STATUSES = (ItemStatus.SUCCESS, ItemStatus.SKIPPED)
#: Webhooks a retention run may delete; `pending`, `processing` and `failed` are kept.
DONE_WEBHOOK_STATUSES = (WebhookStatus.PROCESSED, WebhookStatus.DUPLICATE)
