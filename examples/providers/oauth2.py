"""OAuth2: a user connects their account, and every call carries their access token.

Calendar is a made-up calendar API with an authorization server, in the usual shape: an
authorize page, a token endpoint (authorization-code and refresh-token grants, PKCE S256) and a
revoke endpoint (RFC 7009). The `OAuth2` capability asks for four methods, each a few lines;
the package does the rest:

- its routes send the browser to `authorization_url` with a single-use state and a PKCE
  challenge, and hand the code that comes back to `exchange_code`; the tokens are stored
  encrypted with the integration's credentials;
- a call through `integration.at(...)` carries ``Authorization: Bearer <access token>`` by
  itself, refreshed first (`refresh_token`, once across processes) when it expires within
  `refresh_threshold` seconds, and once more after a 401;
- the revoke route calls `revoke_token`, then forgets the tokens.

The token and revoke endpoints are called with plain httpx, not through `integration.at`: a
token endpoint wants the client's credentials, not the user's bearer token. Put a *Connect*
link to ``url_for("integrations_oauth.authorize", integration_id=integration.id)`` on a page
(see docs/oauth.md, and examples/oauth_demo.py for the whole flow in a browser).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlencode

import httpx

import flask_integrations as fi
from flask_integrations import pagination


@dataclasses.dataclass
class CalendarCredentials:
    """The app's registration at the provider; the flow adds `access_token`, `refresh_token` and
    `token_expires_at`."""

    client_id: str
    client_secret: str


class Calendar(fi.Provider, fi.OAuth2, fi.HasHealthCheck):
    name = "Calendar"
    credential_class = CalendarCredentials
    base_url = "https://api.calendar.example/v1"
    oauth_url = "https://accounts.calendar.example/oauth"  # /authorize, /token and /revoke
    scope = "events.read"
    refresh_threshold = 300  # refresh a token that expires within 5 minutes
    health_check_endpoint = "/me"

    def authorization_url(self, integration: Any, redirect_uri: str, state: str, code_challenge: str) -> str:
        query = {
            "response_type": "code",
            "client_id": integration.credentials.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.scope,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.oauth_url}/authorize?{urlencode(query)}"

    def exchange_code(self, integration: Any, code: str, redirect_uri: str, code_verifier: str) -> dict:
        return self._post(
            integration,
            "/token",
            grant_type="authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
        )

    def refresh_token(self, integration: Any) -> dict:
        refresh = integration.credentials_dict()["refresh_token"]
        return self._post(integration, "/token", grant_type="refresh_token", refresh_token=refresh)

    def revoke_token(self, integration: Any) -> None:
        credentials = integration.credentials_dict()
        token = credentials.get("refresh_token") or credentials["access_token"]
        self._post(integration, "/revoke", token=token)

    def _post(self, integration: Any, path: str, **form: str) -> dict:
        """POST a form to the authorization server with the client's credentials; its JSON answer."""
        credentials = integration.credentials
        form.update(client_id=credentials.client_id, client_secret=credentials.client_secret)
        response = httpx.post(f"{self.oauth_url}{path}", data=form, timeout=10)
        response.raise_for_status()
        return response.json()


def upcoming_events(integration: Any, days: int = 7) -> list[dict[str, Any]]:
    """The events of the next `days` days, every page of them; each page is one logged call."""
    listing = integration.at("events.list").with_data({"days": days})
    pages = pagination.Cursor("next_page_token", param="page_token")
    return list(listing.paginate("/events", items="items", pages=pages))
