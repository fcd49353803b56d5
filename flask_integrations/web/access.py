"""Who may use the dashboard and the OAuth routes, and the CSRF token of their forms.

The rule for both is a callable from the config (`INTEGRATIONS_DASHBOARD_AUTH`,
`INTEGRATIONS_OAUTH_AUTH`) that answers True, False or a `Response` (a redirect
to a login page, say). Without one, access is allowed only while the app runs
in debug or testing mode, read on every request so that flipping `app.debug`
takes effect at once.

The CSRF token is a random value kept in the Flask session (signed with
`SECRET_KEY`) and compared in constant time. It is checked in testing mode too:
a test that forgets it fails the way a browser without it would.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Any

from flask import Response, abort, current_app, request, session

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SESSION_KEY = "_integrations_csrf"

Rule = Callable[..., Any] | None


def denied(rule: Rule, *args: Any) -> Response | None:
    """None when `rule(request, *args)` allows the request, else the response to send instead."""
    if rule is None:
        allowed: Any = current_app.debug or current_app.testing
    else:
        allowed = rule(request, *args)
    if isinstance(allowed, Response):
        return allowed
    if allowed is True:
        return None
    if allowed is False or allowed is None:
        abort(403)
    raise TypeError(f"an access rule must return True, False or a Response, not {type(allowed).__name__}.")


#: Sent with every dashboard and OAuth page: none may be framed (their one-click POST buttons
#: would invite clickjacking), sniffed as another type, or leak its URL to another site.
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def add_security_headers(response: Response) -> Response:
    """`SECURITY_HEADERS` on a response (an app's own values for them are kept)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def csrf_token() -> str:
    """This browser session's CSRF token, created on first use."""
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = token
    return token


def require_csrf() -> None:
    """Abort with 400 unless the POST carries this session's CSRF token (form field or header)."""
    expected = session.get(_SESSION_KEY)
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not isinstance(expected, str) or not expected:
        abort(400, description="The form is missing its CSRF token or it has expired; reload the page.")
    # compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
    if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8")):
        abort(400, description="The form is missing its CSRF token or it has expired; reload the page.")


def exempt_from_app_csrf(app: Any, blueprint: Any) -> None:
    """Leave Flask-WTF's CSRFProtect out of routes that check their own token (or need none)."""
    csrf = app.extensions.get("csrf")
    if csrf is not None and hasattr(csrf, "exempt"):
        csrf.exempt(blueprint)
