"""The OAuth2 routes, under ``INTEGRATIONS_URL_PREFIX``:

- ``GET <id>/oauth/authorize``: the access rule, then a redirect to the provider
  with a fresh single-use state and a PKCE S256 challenge (see `flow`).
- ``GET oauth/callback``: the state is taken (400 when missing, unknown, used,
  expired or from another browser session; nothing changes), the code is
  exchanged with the verifier, the tokens are merged into the encrypted
  credentials and committed, `oauth_completed` is sent, and the browser goes to
  `success_redirect`.
- ``POST <id>/oauth/revoke``: the access rule and this package's CSRF token;
  the provider revokes, the token fields are removed, `oauth_revoked` is sent.

The access rule is `INTEGRATIONS_OAUTH_AUTH(request, integration)`, else the
dashboard's `INTEGRATIONS_DASHBOARD_AUTH(request)`, else debug/testing only.
Error pages name what went wrong in one sentence and never show a token,
code, verifier or secret.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, abort, redirect, render_template, request, url_for

from .. import signals
from ..db.models import Integration
from ..errors import CredentialsDecryptionError, IntegrationsError, ProviderNotRegistered, StoreUnavailable
from ..oauth import flow, tokens
from ..providers import OAuth2
from ..redaction import failure_kind, one_line, scrub_for
from ..state import AppState, current_state
from .access import add_security_headers, csrf_token, denied, exempt_from_app_csrf, require_csrf
from .routing import add_converters

logger = logging.getLogger("flask_integrations")

BLUEPRINT_NAME = "integrations_oauth"

blueprint = Blueprint(BLUEPRINT_NAME, __name__, template_folder="templates")
blueprint.add_app_template_global(csrf_token, "integrations_csrf_token")
blueprint.after_request(add_security_headers)


def register(app: Flask, url_prefix: str) -> None:
    """Register the OAuth routes on `app`; revoke checks its own CSRF token, not Flask-WTF's."""
    add_converters(app)
    app.register_blueprint(blueprint, url_prefix=url_prefix.rstrip("/") or None)
    exempt_from_app_csrf(app, blueprint)


@blueprint.get("/<id:integration_id>/oauth/authorize")
def authorize(integration_id: int) -> Any:
    state = current_state()
    integration = _allowed_integration(state, integration_id)
    if isinstance(integration, Response):
        return integration
    unreadable = _unreadable(integration)
    if unreadable is not None:
        return unreadable
    redirect_uri = state.setting("OAUTH")["redirect_uri"] or url_for(".callback", _external=True)
    try:
        value, challenge = flow.begin(state, integration, redirect_uri)
    except StoreUnavailable:
        return _page(503, "The authorization could not be started: shared storage is unavailable. Retry.")
    provider = integration.provider_instance
    try:
        url = provider.authorization_url(integration, redirect_uri, value, challenge)
    except Exception as exc:
        logger.warning(
            "flask-integrations: authorization_url() of integration %s raised %s", integration.id, _kind(exc)
        )
        return _page(502, "The provider's authorization address could not be built.")
    return redirect(url, 302)


@blueprint.get("/oauth/callback")
def callback() -> Any:
    state = current_state()
    try:
        pending = flow.take(state, request.args.get("state"))
    except flow.StateRejected as rejected:
        return _page(400, str(rejected))
    except StoreUnavailable:
        return _page(503, "The authorization could not be checked: shared storage is unavailable. Retry.")
    error = request.args.get("error")
    if error:
        integration = state.db.session.get(Integration, pending.integration_id)
        shown = scrub_for(integration, one_line(error, 100))
        return _page(400, f"The provider did not authorize the connection ({shown}).")
    code = request.args.get("code")
    if not code:
        return _page(400, "The provider's answer has no authorization code; start the connection again.")
    integration = state.db.session.get(Integration, pending.integration_id)
    if integration is None or not _is_oauth(state, integration):
        return _page(404, "The integration of this authorization no longer exists.")
    unreadable = _unreadable(integration)
    if unreadable is not None:
        return unreadable
    provider = integration.provider_instance
    try:
        answer = provider.exchange_code(integration, code, pending.redirect_uri, pending.code_verifier)
    except Exception as exc:
        logger.warning(
            "flask-integrations: the code exchange of integration %s failed: %s", integration.id, _kind(exc)
        )
        return _page(
            502, f"The provider did not accept the authorization code ({_kind(exc)}); nothing was stored."
        )
    try:
        credentials = tokens.merge_tokens(integration.credentials_dict(), answer, integration.id)
    except IntegrationsError:
        logger.warning("flask-integrations: integration %s got no token from the exchange", integration.id)
        return _page(502, "The provider's answer has no access token; nothing was stored.")
    integration.update(credentials=credentials, replace=True)
    signals.oauth_completed.send(state.app, integration=integration)
    return redirect(state.setting("OAUTH")["success_redirect"], 302)


@blueprint.post("/<id:integration_id>/oauth/revoke")
def revoke(integration_id: int) -> Any:
    state = current_state()
    integration = _allowed_integration(state, integration_id)
    if isinstance(integration, Response):
        return integration
    require_csrf()
    unreadable = _unreadable(integration)
    if unreadable is not None:
        return unreadable
    credentials = integration.credentials_dict()
    if credentials.get("access_token") or credentials.get("refresh_token"):
        try:
            integration.provider_instance.revoke_token(integration)
        except Exception as exc:
            logger.warning(
                "flask-integrations: revoke_token() of integration %s raised %s", integration.id, _kind(exc)
            )
            return _page(502, "The provider could not revoke the tokens; nothing was changed. Retry.")
    integration.update(credentials=tokens.without_tokens(credentials), replace=True)
    signals.oauth_revoked.send(state.app, integration=integration)
    target = _local_path(request.form.get("next") or request.args.get("next"))
    return redirect(target or state.setting("OAUTH")["success_redirect"], 303)


# -- helpers ---------------------------------------------------------------------------------------


def _allowed_integration(state: AppState, integration_id: int) -> Integration | Response:
    """The integration, once the access rule allows it (403, 404 or the rule's Response otherwise).

    The rule is asked before anyone learns whether the id exists: with the dashboard's rule
    (no `INTEGRATIONS_OAUTH_AUTH`) first of all; with `INTEGRATIONS_OAUTH_AUTH`, which needs
    the integration, an id that is not an OAuth2 integration is refused exactly as the rule
    refuses one (403), so ids cannot be probed.
    """
    rule = state.setting("OAUTH_AUTH")
    if rule is None:
        refusal = denied(state.setting("DASHBOARD_AUTH"))
        if refusal is not None:
            return refusal
    integration = state.db.session.get(Integration, integration_id)
    if integration is None or not _is_oauth(state, integration):
        if rule is not None:
            abort(403)
        return _page(404, "There is no OAuth2 integration with this id.")
    if rule is not None:
        refusal = denied(rule, integration)
        if refusal is not None:
            return refusal
    return integration


def _unreadable(integration: Integration) -> Response | None:
    """A 409 page naming the integration when no configured key can decrypt its credentials."""
    try:
        integration.credentials_dict()
    except CredentialsDecryptionError as exc:
        logger.warning("flask-integrations: %s", exc)
        return _page(409, f"{exc} Nothing was changed.")
    return None


def _is_oauth(state: AppState, integration: Integration) -> bool:
    try:
        return isinstance(state.provider(integration.provider), OAuth2)
    except ProviderNotRegistered:
        return False


def _local_path(target: str | None) -> str | None:
    """`target` when it is a path on this site (no scheme, host or protocol-relative form)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    if any(ord(c) < 32 or c == "\\" for c in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def _kind(exc: BaseException) -> str:
    """What failed: the package's own errors say it safely; others by their kind alone."""
    return str(exc) if isinstance(exc, IntegrationsError) else failure_kind(exc)


_TITLES = {
    400: "The connection could not be completed",
    404: "Not found",
    409: "The integration's credentials cannot be read",
    502: "The provider refused",
}


def _page(status: int, message: str) -> Response:
    title = _TITLES.get(status, "Please retry")
    back = current_state().setting("OAUTH")["success_redirect"]
    html = render_template(
        "flask_integrations/oauth/message.html", title=title, message=message, status=status, back=back
    )
    return Response(html, status=status, mimetype="text/html")
