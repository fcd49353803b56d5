"""The webhook routes: ``POST {prefix}/<provider>/webhook`` and ``.../<id>/webhook``.

Order of checks: unknown provider, provider without `HandlesWebhooks` or
unknown integration -> 404; GET without `webhook_challenge` -> 405; body over
`max_payload_bytes` -> 413 (from Content-Length, and counted while reading);
truncated or non-UTF-8 body -> 400; signature not verified -> 401 (nothing
stored, a warning logged). Then the row is committed, the job enqueued, and
the answer is 202 (200 for a duplicate delivery). No route answers 500: an
unexpected error is logged and answered 400 (bad input) or 503 (storage).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, jsonify, make_response, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from .. import signals
from ..db.models import Integration, IntegrationWebhook
from ..db.transactions import plain_session
from ..providers import HandlesWebhooks
from ..redaction import integration_secrets
from ..state import AppState, current_state
from ..webhooks import refusals
from ..webhooks.intake import filter_headers, store_webhook
from ..webhooks.jobs import enqueue_processing
from .access import exempt_from_app_csrf
from .routing import add_converters

logger = logging.getLogger("flask_integrations")

BLUEPRINT_NAME = "integrations_webhooks"
_CHUNK = 65536

blueprint = Blueprint(BLUEPRINT_NAME, __name__)

#: Database errors that mean "unavailable, retry later" (503), not "bad webhook" (400).
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


class _Reject(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


def register(app: Flask, url_prefix: str) -> None:
    """Register the webhook routes on `app`, exempt from Flask-WTF's CSRFProtect when present."""
    add_converters(app)
    app.register_blueprint(blueprint, url_prefix=url_prefix.rstrip("/") or None)
    exempt_from_app_csrf(app, blueprint)


@blueprint.route("/<provider>/webhook", methods=["GET", "POST"])
@blueprint.route("/<provider>/<id:integration_id>/webhook", methods=["GET", "POST"])
def receive(provider: str, integration_id: int | None = None) -> Any:
    response = _answer(provider, integration_id)
    state = current_state()
    if response.status_code in refusals.COUNTED and provider in state.providers:
        refusals.count(state, provider, integration_id, response.status_code)
    return response


def _answer(provider: str, integration_id: int | None) -> Any:
    try:
        return make_response(_receive(current_state(), provider, integration_id))
    except _Reject as reject:
        return _error(reject.status, reject.message)
    except HTTPException as exc:  # e.g. abort(403) in a provider hook: kept unless it is a 5xx
        if exc.code is not None and exc.code < 500:
            raise
        logger.error("flask-integrations: a %r webhook hook raised %s", provider, exc)
        return _error(400, "the webhook could not be read")
    except Exception as exc:
        if _storage_unavailable(exc):  # the database is down or restarting: the provider must retry
            _rollback()
            logger.error("flask-integrations: could not receive a %r webhook: database unavailable", provider)
            return _error(503, "the webhook could not be stored; retry later")
        logger.exception("flask-integrations: unexpected error receiving a %r webhook", provider)
        return _error(400, "the webhook could not be read")


def _receive(state: AppState, provider_key: str, integration_id: int | None) -> Any:
    provider = state.providers.get(provider_key)
    if provider is None or not isinstance(provider, HandlesWebhooks):
        raise _Reject(404, "unknown webhook provider")
    _statements_commit_alone(state)
    integration = _integration(state, provider, provider_key, integration_id)

    if request.method in ("GET", "HEAD"):
        return _challenge(provider, integration)

    body = _read_body(int(state.setting("WEBHOOK")["max_payload_bytes"]))
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject(400, "the body is not UTF-8") from None
    if "\x00" in payload:
        raise _Reject(400, "the body contains NUL characters")

    _verify(provider, provider_key, integration)
    try:
        event_type = provider.webhook_event(request)
        delivery_id = provider.webhook_delivery_id(request)
    except Exception:
        logger.warning(
            "flask-integrations: %r webhook_event/webhook_delivery_id raised", provider_key, exc_info=True
        )
        raise _Reject(400, "the webhook's event or delivery id could not be read") from None

    secrets = integration_secrets(integration)
    try:
        received = store_webhook(
            state,
            provider=provider_key,
            integration_id=integration.id if integration is not None else None,
            payload=payload,
            headers=filter_headers(request.headers.items(), secrets),
            event_type=None if event_type is None else str(event_type),
            delivery_id=None if delivery_id in (None, "") else str(delivery_id),
            secrets=secrets,
        )
    except Exception:
        state.db.session.rollback()
        logger.exception("flask-integrations: could not store a %r webhook", provider_key)
        raise _Reject(503, "the webhook could not be stored; retry later") from None

    if received.duplicate:
        return jsonify(id=received.id, status="duplicate"), 200
    # Enqueue while no transaction is open (a signal receiver's query would begin one and hold
    # the job until a commit that may never come); the job itself runs after the response.
    enqueue_processing(state, received.webhook_id, 0)
    _announce(state, received.webhook_id)
    return jsonify(id=received.webhook_id, status="pending"), 202


def _statements_commit_alone(state: AppState) -> None:
    """Until the delivery is stored, each statement commits as it runs (autocommit).

    The intake is a read (the integration) and one atomic INSERT: without a transaction around
    them, PostgreSQL is spared the BEGIN and COMMIT round trips, which cost as much as the
    statements themselves. The session's transaction that follows (signal receivers, the app's
    teardown) is an ordinary one: the isolation level is restored when the store commits. Left
    alone when the app already opened a transaction in this request (a `before_request` query).
    """
    session = plain_session(state.db.session)
    if not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def _integration(state: AppState, provider: Any, provider_key: str, integration_id: int | None) -> Any:
    if integration_id is not None:
        integration = state.db.session.get(Integration, integration_id)
        if integration is None or integration.provider != provider_key:
            raise _Reject(404, "unknown integration")
        return integration
    try:
        integration = provider.resolve_webhook_integration(request)
    except Exception as exc:
        if _storage_unavailable(exc):
            raise
        logger.warning(
            "flask-integrations: %r resolve_webhook_integration raised", provider_key, exc_info=True
        )
        raise _Reject(400, "the webhook's integration could not be resolved") from None
    if integration is not None and getattr(integration, "provider", None) != provider_key:
        raise _Reject(404, "unknown integration")
    return integration


def _challenge(provider: Any, integration: Any) -> Any:
    challenge = getattr(provider, "webhook_challenge", None)
    if challenge is None:
        response = _error(405, "this route accepts POST")
        response.headers["Allow"] = "POST"
        return response
    try:
        return challenge(integration, request)
    except HTTPException:
        raise  # the provider's own answer (receive() turns a 5xx into a 400)
    except Exception:
        logger.warning("flask-integrations: webhook_challenge raised", exc_info=True)
        raise _Reject(400, "the handshake could not be answered") from None


def _read_body(limit: int) -> bytes:
    """The body, refused past `limit` bytes whatever Content-Length says."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _Reject(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        stream = request.stream
        while True:
            chunk = stream.read(min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _Reject(413, f"the body is larger than {limit} bytes")
    except RequestEntityTooLarge:
        raise _Reject(413, "the body is too large") from None
    except (ClientDisconnected, OSError, ValueError):
        raise _Reject(400, "the body is truncated") from None
    body = b"".join(chunks)
    request._cached_data = body  # get_data(), form and json read this copy from now on
    return body


def _verify(provider: Any, provider_key: str, integration: Any) -> None:
    try:
        verified = provider.verify_webhook(integration, request) is True
    except Exception as exc:
        if _storage_unavailable(exc):
            raise
        logger.warning(
            "flask-integrations: %r webhook rejected: verify_webhook raised %s",
            provider_key,
            type(exc).__name__,
        )
        raise _Reject(401, "the webhook signature could not be verified") from None
    if not verified:
        logger.warning(
            "flask-integrations: %r webhook rejected: signature check failed (integration %s, from %s)",
            provider_key,
            getattr(integration, "id", None),
            request.remote_addr,
        )
        raise _Reject(401, "the webhook signature could not be verified")


def _announce(state: AppState, webhook_id: int) -> None:
    if not signals.webhook_received.receivers:
        return
    try:
        webhook = state.db.session.get(IntegrationWebhook, webhook_id)
        signals.webhook_received.send(state.app, webhook=webhook)
    except Exception:
        logger.exception("flask-integrations: a webhook_received receiver failed")


def _storage_unavailable(exc: BaseException) -> bool:
    """The database could not be reached (down, restarting, pool exhausted), here or in a cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNAVAILABLE):
            return True
        current = current.__cause__ or current.__context__
    return False


def _rollback() -> None:
    try:
        current_state().db.session.rollback()
    except Exception:  # noqa: BLE001 - the session is discarded at teardown anyway
        logger.debug("flask-integrations: rollback after a database outage failed", exc_info=True)


def _error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response
