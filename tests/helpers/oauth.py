"""A fake OAuth2 authorization server + API on 127.0.0.1, and a provider that uses it.

The server is strict the way real ones are: the code is single-use and bound
to the redirect URI and the PKCE challenge (S256 checked against the verifier),
refresh tokens rotate (the old one stops working), and the API answers 401 to
an unknown, revoked or expired access token.

`GET /authorize?...&decision=allow` answers the consent at once with a 302 to
the redirect URI (``deny`` answers ``error=access_denied``). `POST /token`
(authorization_code or refresh_token grants), `POST /revoke`, `GET /api/me`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx

from flask_integrations import OAuth2, Provider
from tests.helpers.servers import LoopbackHTTPServer, QuietHandler

CLIENT_ID = "client-abc"
CLIENT_SECRET = "client-secret-9f8e7d6c5b"


class AuthServer(LoopbackHTTPServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.codes: dict[str, dict[str, str]] = {}
            self.access: dict[str, float] = {}  # token -> expires at
            self.refresh: set[str] = set()
            self.revoked: list[str] = []
            self.hits: dict[str, int] = {}
            self.verifiers: list[str] = []
            self.access_ttl = 3600
            self.refresh_delay = 0.0
            self.refresh_answers: list[tuple[int, dict[str, Any]]] = []  # scripted answers, in order
            self.rotate = True

    def issue(self, refresh: bool = True) -> dict[str, Any]:
        """New tokens, as the token endpoint answers them (caller holds the lock)."""
        access = "at-" + secrets.token_hex(12)
        self.access[access] = time.time() + self.access_ttl
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
        }
        if refresh:
            token = "rt-" + secrets.token_hex(12)
            self.refresh.add(token)
            answer["refresh_token"] = token
        return answer

    def tokens(self, access_ttl: int = 3600) -> dict[str, Any]:
        """Tokens minted directly, to store in an integration without the browser flow."""
        with self.lock:
            self.access_ttl, saved = access_ttl, self.access_ttl
            answer = self.issue()
            self.access_ttl = saved
            return answer

    def count(self, name: str) -> int:
        with self.lock:
            return self.hits.get(name, 0)


class _Handler(QuietHandler):
    server: AuthServer

    def _answer(self, status: int, payload: Any = None, location: str | None = None) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _hit(self, name: str) -> None:
        with self.server.lock:
            self.server.hits[name] = self.server.hits.get(name, 0) + 1

    def do_GET(self) -> None:
        parsed = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        if parsed.path == "/authorize":
            self._hit("authorize")
            return self._authorize(query)
        if parsed.path == "/api/me":
            self._hit("api")
            return self._api()
        self._answer(404, {"error": "not_found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        path = urlparse(self.path).path
        if path == "/token":
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                return self._answer(401, {"error": "invalid_client"})
            if form.get("grant_type") == "authorization_code":
                self._hit("exchange")
                return self._exchange(form)
            if form.get("grant_type") == "refresh_token":
                self._hit("refresh")
                return self._refresh(form)
        if path == "/revoke":
            self._hit("revoke")
            with self.server.lock:
                token = form.get("token", "")
                self.server.revoked.append(token)
                self.server.refresh.discard(token)
                self.server.access.pop(token, None)
            return self._answer(200, {})
        self._answer(400, {"error": "unsupported_grant_type"})

    def _authorize(self, query: dict[str, str]) -> None:
        redirect_uri = query.get("redirect_uri", "")
        if (
            query.get("client_id") != CLIENT_ID
            or query.get("code_challenge_method") != "S256"
            or not query.get("code_challenge")
            or not query.get("state")
        ):
            return self._answer(400, {"error": "invalid_request"})
        if query.get("decision") == "deny":
            location = redirect_uri + "?" + urlencode({"error": "access_denied", "state": query["state"]})
            return self._answer(302, location=location)
        code = "code-" + secrets.token_hex(8)
        with self.server.lock:
            self.server.codes[code] = {"challenge": query["code_challenge"], "redirect_uri": redirect_uri}
        self._answer(302, location=redirect_uri + "?" + urlencode({"code": code, "state": query["state"]}))

    def _exchange(self, form: dict[str, str]) -> None:
        with self.server.lock:
            grant = self.server.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                return self._answer(400, {"error": "invalid_grant"})
            if s256(verifier) != grant["challenge"]:
                return self._answer(400, {"error": "invalid_grant", "error_description": "PKCE failed"})
            self.server.verifiers.append(verifier)
            answer = self.server.issue()
        self._answer(200, answer)

    def _refresh(self, form: dict[str, str]) -> None:
        time.sleep(self.server.refresh_delay)
        with self.server.lock:
            if self.server.refresh_answers:
                status, payload = self.server.refresh_answers.pop(0)
                return self._answer(status, payload)
            token = form.get("refresh_token", "")
            if token not in self.server.refresh:
                return self._answer(400, {"error": "invalid_grant"})
            if self.server.rotate:
                self.server.refresh.discard(token)
            answer = self.server.issue(refresh=self.server.rotate)
        self._answer(200, answer)

    def _api(self) -> None:
        header = self.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        with self.server.lock:
            expires = self.server.access.get(token)
        if not header.startswith("Bearer ") or expires is None or expires <= time.time():
            return self._answer(401, {"error": "invalid_token"})
        self._answer(200, {"me": "acme", "token_seen": True})


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclasses.dataclass
class ConnectCredentials:
    client_id: str
    client_secret: str


class Connect(Provider, OAuth2):
    """An OAuth2 provider for `AuthServer`; the server's URL is in the integration's metadata."""

    credential_class = ConnectCredentials
    refresh_threshold = 60

    def _server(self, integration: Any) -> str:
        return integration.metadata["server"]

    def authorization_url(self, integration: Any, redirect_uri: str, state: str, code_challenge: str) -> str:
        query = {
            "response_type": "code",
            "client_id": integration.credentials.client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        return f"{self._server(integration)}/authorize?{urlencode(query)}"

    def _token(self, integration: Any, form: dict[str, str]) -> dict[str, Any]:
        credentials = integration.credentials
        form = {**form, "client_id": credentials.client_id, "client_secret": credentials.client_secret}
        response = httpx.post(f"{self._server(integration)}/token", data=form, timeout=10)
        response.raise_for_status()
        return response.json()

    def exchange_code(self, integration: Any, code: str, redirect_uri: str, code_verifier: str) -> dict:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        return self._token(integration, form)

    def refresh_token(self, integration: Any) -> dict:
        refresh = integration.credentials_dict()["refresh_token"]
        return self._token(integration, {"grant_type": "refresh_token", "refresh_token": refresh})

    def revoke_token(self, integration: Any) -> None:
        credentials = integration.credentials_dict()
        token = credentials.get("refresh_token") or credentials.get("access_token")
        httpx.post(
            f"{self._server(integration)}/revoke", data={"token": token}, timeout=10
        ).raise_for_status()


PROVIDERS = {"connect": "tests.helpers.oauth:Connect", "loose": "tests.helpers.app:Loose"}


def create_connect(app: Any, auth: AuthServer, **tokens: Any) -> int:
    """The id of a new `Connect` integration on `auth` (committed; `tokens` join its credentials)."""
    from tests.helpers.app import db

    with app.app_context():
        integration = app.extensions["integrations"].create(
            "connect",
            "Connect",
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **tokens},
            metadata={"server": auth.url},
        )
        integration_id = integration.id
        db.session.remove()
    return integration_id
