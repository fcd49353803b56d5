"""flask-integrations: the connection layer between a Flask app and the third-party APIs it uses."""

from . import auth, pagination, signals, webhooks
from .db.models import (
    Integration,
    IntegrationIdempotencyKey,
    IntegrationLog,
    IntegrationMapping,
    IntegrationRequest,
    IntegrationSyncItem,
    IntegrationWebhook,
)
from .errors import (
    CircuitOpenError,
    ConfigurationError,
    CredentialsDecryptionError,
    IdempotencyConflict,
    IntegrationHTTPError,
    IntegrationsError,
    MappingAlreadyClaimed,
    ProviderNotRegistered,
    RateLimitExceeded,
    RetryableError,
    StoredResponse,
    StoreUnavailable,
    ValidationError,
)
from .extension import Integrations
from .health.summary import FailureSummary, TopError
from .pipeline.context import RequestContext
from .providers import (
    ClassifiesFailures,
    CustomizesRetry,
    HandlesWebhooks,
    HasHealthCheck,
    IncrementalSync,
    Limit,
    OAuth2,
    Provider,
    RedactsRequestData,
    ScheduledSync,
    SupportsIdempotency,
    on_deleted,
    on_sync_item,
    on_webhook,
)
from .sync import SyncSession
from .testing.fake import ResponseSequence

__version__ = "0.1.0.dev0"

__all__ = [
    "CircuitOpenError",
    "ClassifiesFailures",
    "ConfigurationError",
    "CredentialsDecryptionError",
    "CustomizesRetry",
    "FailureSummary",
    "HandlesWebhooks",
    "HasHealthCheck",
    "IdempotencyConflict",
    "IncrementalSync",
    "Integration",
    "IntegrationHTTPError",
    "IntegrationIdempotencyKey",
    "IntegrationLog",
    "IntegrationMapping",
    "IntegrationRequest",
    "IntegrationSyncItem",
    "IntegrationWebhook",
    "Integrations",
    "IntegrationsError",
    "Limit",
    "MappingAlreadyClaimed",
    "OAuth2",
    "Provider",
    "ProviderNotRegistered",
    "RateLimitExceeded",
    "RedactsRequestData",
    "RequestContext",
    "ResponseSequence",
    "RetryableError",
    "ScheduledSync",
    "SupportsIdempotency",
    "StoreUnavailable",
    "StoredResponse",
    "SyncSession",
    "TopError",
    "ValidationError",
    "auth",
    "on_deleted",
    "on_sync_item",
    "on_webhook",
    "pagination",
    "signals",
    "webhooks",
]
