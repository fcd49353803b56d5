"""The provider kit: `Provider`, the capability mixins, and how credentials are validated."""

from .base import Provider
from .capabilities import (
    NO_HANDLER,
    OAUTH_TOKEN_FIELDS,
    ClassifiesFailures,
    CustomizesRetry,
    HandlesWebhooks,
    HasHealthCheck,
    IncrementalSync,
    OAuth2,
    RedactsRequestData,
    ScheduledSync,
    SupportsIdempotency,
)
from .handlers import on_deleted, on_sync_item, on_webhook
from .limits import Limit
from .registration import RESERVED_KEYS, check_provider_class, load_provider

__all__ = [
    "NO_HANDLER",
    "OAUTH_TOKEN_FIELDS",
    "RESERVED_KEYS",
    "ClassifiesFailures",
    "CustomizesRetry",
    "HandlesWebhooks",
    "HasHealthCheck",
    "IncrementalSync",
    "Limit",
    "OAuth2",
    "Provider",
    "RedactsRequestData",
    "ScheduledSync",
    "SupportsIdempotency",
    "check_provider_class",
    "load_provider",
    "on_deleted",
    "on_sync_item",
    "on_webhook",
]
