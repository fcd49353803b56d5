"""One exception hierarchy: everything the package raises on purpose is an `IntegrationsError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class IntegrationsError(Exception):
    """Base class of every error raised by flask-integrations."""


class ConfigurationError(IntegrationsError):
    """A setting, provider or registration is wrong; raised at `init_app` or `register`."""


class ValidationError(IntegrationsError, ValueError):
    """Credentials, metadata or another input failed validation.

    ``ValidationError(subject, errors)``: `subject` says what was checked
    (``"credentials for provider 'acme'"``) and `errors` maps each bad field to
    what is wrong with it (``{"api_key": "must start with sk_"}``); the message
    reads ``Invalid credentials for provider 'acme': api_key: must start with sk_``.
    A subject already starting with "Invalid" is kept as it is. Values are never
    included, so the message is safe to log even for credential fields.
    """

    def __init__(self, subject: str, errors: dict[str, str] | None = None):
        self.subject = subject
        self.errors = dict(errors or {})
        detail = "; ".join(f"{field}: {problem}" for field, problem in sorted(self.errors.items()))
        head = subject if subject[:8].lower() == "invalid " else f"Invalid {subject}"
        super().__init__(f"{head}: {detail}" if detail else head.rstrip(".") + ".")


class CredentialsDecryptionError(IntegrationsError):
    """No configured key can decrypt an integration's stored credentials."""

    def __init__(self, integration_id: int | None):
        self.integration_id = integration_id
        super().__init__(
            f"Credentials of integration {integration_id} cannot be decrypted with any key in "
            "INTEGRATIONS_ENCRYPTION_KEYS; add the key they were written with."
        )


class StoreUnavailable(IntegrationsError):
    """The shared state store (Redis) could not be reached or refused a command.

    The cache, circuit breaker and rate limiter fail open and never raise it; locks fail closed
    and do (an OAuth token refresh, say, is not attempted without its lock).
    """


class ProviderNotRegistered(IntegrationsError, LookupError):
    """A provider key that is not in `INTEGRATIONS_PROVIDERS` nor registered."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(
            f"Provider {key!r} is not registered; add it to INTEGRATIONS_PROVIDERS "
            "or call integrations.register()."
        )


class CircuitOpenError(IntegrationsError):
    """The circuit breaker of an integration is open: the call was not sent."""

    def __init__(self, integration_id: int, retry_after: float | None = None, forced: bool = False):
        self.integration_id = integration_id
        self.retry_after = retry_after
        #: an operator's override holds it open (`integration.override(breaker="open")`)
        self.forced = forced
        why = " (forced open by an override)" if forced else ""
        super().__init__(f"Circuit breaker of integration {integration_id} is open{why}.")


class RateLimitExceeded(IntegrationsError):
    """No capacity within `INTEGRATIONS_RATE_LIMIT_MAX_WAIT`: the call was not sent."""

    def __init__(self, integration_id: int, retry_after: float | None = None):
        self.integration_id = integration_id
        self.retry_after = retry_after
        wait = f" for {retry_after:.1f}s" if retry_after is not None else ""
        super().__init__(f"Rate limit of integration {integration_id} exhausted{wait}.")


@dataclass(frozen=True)
class StoredResponse:
    """What the first call of an idempotency key answered, as its request row stored it.

    `body` is the logged body: redacted and size-capped as every stored body (None when
    body logging was off for that call), decoded from JSON where the stored text is JSON.
    `request_id` is the row of the call's last attempt.
    """

    status_code: int | None
    body: Any
    request_id: int


class IdempotencyConflict(IntegrationsError):
    """A keyed call whose key was already used: the call did not run again.

    `request_id` is the first call's first request row; `response` what that call
    answered (a `StoredResponse`) once it completed, None while it runs.
    """

    def __init__(
        self,
        integration_id: int,
        key: str,
        request_id: int | None = None,
        response: StoredResponse | None = None,
    ):
        self.integration_id = integration_id
        self.key = key
        self.request_id = request_id
        self.response = response
        super().__init__(
            f"Idempotency key {key!r} was already used on integration {integration_id}"
            + (f" by request {request_id}." if request_id else ".")
        )


class RetryableError(IntegrationsError):
    """Raise from a callable target to ask for a retry."""

    def __init__(
        self,
        message: str = "retryable error",
        retry_after: float | None = None,
        max_attempts: int | None = None,
    ):
        self.retry_after = retry_after
        self.max_attempts = max_attempts
        super().__init__(message)


class MappingAlreadyClaimed(IntegrationsError):
    """Another object of the same type already holds this external id."""

    def __init__(self, integration_id: int, external_id: str, internal_type: str, internal_id: Any):
        self.integration_id = integration_id
        self.external_id = external_id
        self.internal_type = internal_type
        self.internal_id = internal_id
        super().__init__(
            f"External id {external_id!r} of integration {integration_id} is already mapped "
            f"to {internal_type} {internal_id}."
        )


class IntegrationHTTPError(IntegrationsError):
    """The upstream answered 4xx/5xx and retries are spent."""

    def __init__(self, status_code: int, response: Any = None, message: str | None = None):
        self.status_code = status_code
        self.response = response
        super().__init__(message or f"Upstream answered HTTP {status_code}.")
