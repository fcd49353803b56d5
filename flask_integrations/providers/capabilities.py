"""The capability mixins a provider opts into, with the hooks each one calls.

Each mixin's required methods raise `NotImplementedError` until the provider defines
them; registration refuses a provider that declares a capability without its methods.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import IntegrationHTTPError
from ..parsing import dotted
from .handlers import bound_handlers

if TYPE_CHECKING:  # pragma: no cover
    from flask import Request

    from ..db.models import Integration, IntegrationWebhook
    from ..sync.session import SyncSession

#: Credential fields every OAuth2 provider accepts besides its own.
OAUTH_TOKEN_FIELDS: dict[str, Any] = {
    "access_token": str | None,
    "refresh_token": str | None,
    "token_expires_at": int | float | str | None,
}

#: A webhook handler: ``handler(integration, webhook)``.
WebhookHandler = Callable[["Integration | None", "IntegrationWebhook"], Any]


class _Syncs:
    #: minutes between runs; None = not scheduled unless the integration sets one
    sync_interval: ClassVar[int | None] = None

    def reduce_checkpoints(self, values: Iterable[Any]) -> Any:
        """Fold the previous cursor and the completed items' checkpoints into the next cursor.

        The default keeps the largest value (ISO timestamps and numbers both order well);
        the cursor never moves backward whatever this returns.
        """
        present = [v for v in values if v is not None]
        return max(present) if present else None

    def sync_item_handler(self, event: str) -> Callable[..., Any] | None:
        """The `@on_sync_item` method of this provider for `event`, bound, or None."""
        return bound_handlers(self, "sync_item").get(event)


class ScheduledSync(_Syncs):
    """Runs `sync(integration, session)` on a schedule (every `sync_interval` minutes).

    With ``detects_deletions = True``, a run that dispatched every record (all its items
    succeeded) reports the mapped records it did not dispatch to the `@on_deleted` methods.
    """

    #: report records mapped for this integration that a complete run no longer lists
    detects_deletions: ClassVar[bool] = False

    def deletion_handlers(self) -> dict[type, Callable[..., Any]]:
        """``{model: bound method}`` of the `@on_deleted` methods."""
        return bound_handlers(self, "deleted")

    def sync(self, integration: Integration, session: SyncSession) -> None:
        """Enumerate the records to sync: `session.dispatch(event, payload, ...)` for each."""
        raise NotImplementedError(f"{type(self).__name__} must define sync(integration, session)")


class IncrementalSync(_Syncs):
    """Runs `sync_incremental(integration, session)` on every sync, with `session.cursor`."""

    def sync_incremental(self, integration: Integration, session: SyncSession) -> None:
        """Enumerate what changed since `session.cursor` (None on the first run)."""
        raise NotImplementedError(f"{type(self).__name__} must define sync_incremental(integration, session)")


class HandlesWebhooks:
    """Receives webhooks on the ``{prefix}/<provider>/webhook`` routes.

    Declare what most providers need instead of writing it: `webhook_verifier` (a verifier of
    `flask_integrations.webhooks`: `Hmac`, `StandardWebhooks`) instead of `verify_webhook()`,
    `webhook_event_key` / `webhook_delivery_key` instead of `webhook_event()` /
    `webhook_delivery_id()`, and ``@on_webhook(event)`` methods instead of `webhook_handlers()`.
    """

    #: checks each delivery's signature (with the integration's credentials)
    webhook_verifier: ClassVar[Any] = None
    #: where a delivery says its event: a dotted path into the JSON body, or ``"header:Name"``
    webhook_event_key: ClassVar[str | None] = None
    #: where a delivery says its id (used to drop redeliveries), in the same form
    webhook_delivery_key: ClassVar[str | None] = None

    def verify_webhook(self, integration: Integration | None, request: Request) -> bool:
        """True when the request is authentic (its signature checks out). `integration` is None
        on the generic route unless `resolve_webhook_integration` found one. The default asks
        `webhook_verifier`."""
        if self.webhook_verifier is None:
            raise NotImplementedError(
                f"{type(self).__name__} must define verify_webhook() or webhook_verifier"
            )
        return self.webhook_verifier.verify(integration, request)

    def webhook_event(self, request: Request) -> str | None:
        """The event type of a delivery, used to route it to a handler (default: `webhook_event_key`)."""
        return read_key(request, self.webhook_event_key)

    def webhook_delivery_id(self, request: Request) -> str | None:
        """The provider's id of a delivery, used to drop redeliveries (None: no deduplication;
        default: `webhook_delivery_key`)."""
        return read_key(
            request, self.webhook_delivery_key or getattr(self.webhook_verifier, "delivery_key", None)
        )

    def webhook_handlers(self) -> dict[str, WebhookHandler]:
        """``{event type: handler(integration, webhook)}`` (default: the `@on_webhook` methods)."""
        return bound_handlers(self, "webhook")

    def handle_webhook(self, integration: Integration | None, webhook: IntegrationWebhook) -> Any:
        """Fallback for events without a handler in `webhook_handlers()`; the default has none
        (it returns `NO_HANDLER` and the webhook ends `processed`, noted in its log)."""
        return NO_HANDLER

    def resolve_webhook_integration(self, request: Request) -> Integration | None:
        """The integration a delivery to the generic route is for, or None."""
        return None


#: What the default `handle_webhook` returns: the event had no handler.
NO_HANDLER = object()


def read_key(request: Request, key: str | None) -> str | None:
    """The value a `webhook_event_key` / `webhook_delivery_key` names in a delivery, as text."""
    if not key:
        return None
    if key.startswith("header:"):
        return request.headers.get(key.removeprefix("header:")) or None
    try:
        body = json.loads(request.get_data())
    except ValueError:
        return None
    value = dotted(body, key)
    return None if value is None or isinstance(value, dict | list) else str(value)


class HasHealthCheck:
    """`health_check(integration) -> bool`, run by `flask integrations test`, install and the dashboard.

    Declare `health_check_endpoint` instead of writing it: the check then GETs that path
    through the pipeline (one attempt, no cache): True on a 2xx answer, False on a 4xx/5xx
    one, and an exception when no answer came (connection refused, breaker open). Like a
    hand-written check, its call does not count toward health: `flask integrations test`,
    install and the dashboard record the check's outcome.
    """

    #: a path (or URL) whose 2xx answer means the integration is healthy
    health_check_endpoint: ClassVar[str | None] = None

    def health_check(self, integration: Integration) -> bool:
        """True when the integration can reach its upstream with its credentials."""
        endpoint = self.health_check_endpoint
        if endpoint is None:
            raise NotImplementedError(
                f"{type(self).__name__} must define health_check() or health_check_endpoint"
            )
        check = integration.at(endpoint).with_attempts(1).raw_response()
        check.records_health = False  # who runs the check records its outcome, once
        try:
            response = check.get(endpoint)
        except IntegrationHTTPError:
            return False
        return 200 <= response.status_code < 300


class OAuth2:
    """OAuth2 authorization-code flow with PKCE and token refresh."""

    #: refresh when the token expires within this many seconds
    refresh_threshold: ClassVar[int] = 300

    def authorization_url(
        self, integration: Integration, redirect_uri: str, state: str, code_challenge: str
    ) -> str:
        """The provider's authorization URL carrying `state` and the S256 `code_challenge`."""
        raise NotImplementedError(f"{type(self).__name__} must define authorization_url()")

    def exchange_code(
        self, integration: Integration, code: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        """The token endpoint's answer for `code` (a dict with `access_token`, ...)."""
        raise NotImplementedError(f"{type(self).__name__} must define exchange_code()")

    def refresh_token(self, integration: Integration) -> dict[str, Any]:
        """The token endpoint's answer to a refresh with the stored refresh token."""
        raise NotImplementedError(f"{type(self).__name__} must define refresh_token()")

    def revoke_token(self, integration: Integration) -> None:
        """Revoke the stored tokens at the provider."""
        raise NotImplementedError(f"{type(self).__name__} must define revoke_token()")


class RedactsRequestData:
    """Dot paths (``*`` for list items) redacted from stored request/response bodies."""

    sensitive_request_fields: ClassVar[tuple[str, ...] | list[str]] = ()
    sensitive_response_fields: ClassVar[tuple[str, ...] | list[str]] = ()


class CustomizesRetry:
    """Decide retries before the defaults: None means "no opinion"."""

    def is_retryable(self, exc: BaseException) -> bool | None:
        """True or False to decide whether the failed attempt is retried; None for the defaults."""
        return None

    def retry_delay(self, exc: BaseException, attempt: int, status: int | None) -> float | None:
        """Seconds to wait before the next attempt; None for the default delay."""
        return None


class ClassifiesFailures:
    """Say what kind of failure an attempt was, before the default classifier.

    The class decides everything downstream alike: only ``"upstream"`` failures count
    toward the breaker and health; ``"upstream"`` and ``"throttle"`` are retried
    (with ``Retry-After`` when there is one); ``"client"`` failures are neither.
    """

    def classify_failure(self, exc: BaseException | None, response: Any) -> str | None:
        """``"upstream"``, ``"throttle"``, ``"client"``, or None to let the default classifier decide.

        Called for every failed attempt: `exc` is the exception (None for an HTTP error
        answer) and `response` the `httpx.Response` when there is one (else None).
        """
        return None


class SupportsIdempotency:
    """Marker: the upstream dedupes by an idempotency header set from `ctx.idempotency_key`."""


#: What a provider must define for each capability it declares: each method, or (where a
#: declaration can stand in for it) the class attribute named beside it.
REQUIRED_METHODS: dict[type, tuple[tuple[str, str | None], ...]] = {
    ScheduledSync: (("sync", None),),
    ClassifiesFailures: (("classify_failure", None),),
    IncrementalSync: (("sync_incremental", None),),
    HandlesWebhooks: (("verify_webhook", "webhook_verifier"),),
    HasHealthCheck: (("health_check", "health_check_endpoint"),),
    OAuth2: tuple(
        (name, None) for name in ("authorization_url", "exchange_code", "refresh_token", "revoke_token")
    ),
}
