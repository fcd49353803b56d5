"""Connect an integration with OAuth2: authorize, consent, callback, API calls, refresh, revoke.

Run it from the repository root:

    pip install -e . && python examples/oauth_demo.py

then open http://127.0.0.1:5070/. The example serves its own fake
authorization server and API on 127.0.0.1:5071 (nothing leaves 127.0.0.1):

1. "Connect" goes to the package's ``/integrations/<id>/oauth/authorize`` route,
   which redirects to the fake consent page with a single-use state and a PKCE
   challenge.
2. "Allow" sends the browser back to ``/integrations/oauth/callback``; the
   package exchanges the code (the fake server checks the PKCE verifier) and
   stores the tokens encrypted in SQLite (``examples/instance/oauth_demo.db``).
3. "Call the API" makes ``integration.at(...).get("/api/profile")``: the package
   adds ``Authorization: Bearer ...``. Access tokens live 30 seconds and the
   provider refreshes them 25 seconds before expiry, so a call made 5 seconds
   after connecting refreshes the token first (the page counts refreshes).
4. "Disconnect" posts to ``/integrations/<id>/oauth/revoke`` with the CSRF token;
   the fake server revokes the tokens and the package forgets them.

The `flask` command loads the same app without the fake server
(`flask --app examples/oauth_demo integrations list`); `DEMO_INSTANCE_PATH` (or
``--instance-path``) keeps the database and key elsewhere.

Read it top to bottom: the fake authorization server, the provider, the app.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import html
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import (
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template_string,
    request,
    session,
    url_for,
)
from flask_sqlalchemy import SQLAlchemy

from flask_integrations import HasHealthCheck, Integration, Integrations, IntegrationsError, OAuth2, Provider

#: Ports browsers open (Chromium and Firefox refuse 5060 and 5061, SIP's ports).
DEFAULT_PORT = 5070
DEFAULT_AUTH_PORT = 5071
DEFAULT_INSTANCE_PATH = Path(__file__).resolve().parent / "instance"

#: The app's registration at the fake provider (a real provider gives you these).
CLIENT_ID = "demo-client"
CLIENT_SECRET = "demo-client-secret-4b7c1e"
ACCESS_TOKEN_LIFETIME = 30  # seconds


# -- 1. The fake authorization server and API on 127.0.0.1 -------------------------------------


class FakeAuthServer(ThreadingHTTPServer):
    """`GET /authorize` (consent page), `POST /authorize` (the user's answer), `POST /token`,
    `POST /revoke` and `GET /api/profile` (wants a live bearer token)."""

    daemon_threads = True

    def __init__(self, port: int = DEFAULT_AUTH_PORT, token_lifetime: int = ACCESS_TOKEN_LIFETIME):
        super().__init__(("127.0.0.1", port), _AuthHandler)
        self.token_lifetime = token_lifetime
        self.lock = threading.Lock()
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (PKCE challenge, redirect_uri)
        self.access_tokens: dict[str, float] = {}  # token -> expiry
        self.refresh_tokens: set[str] = set()
        self.refreshes = 0
        self.revocations = 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeAuthServer:
        threading.Thread(target=self.serve_forever, args=(0.1,), name="fake-oauth", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def new_tokens(self) -> dict[str, Any]:
        """Mint an access token and a (rotated) refresh token; the caller holds `lock`."""
        access, refresh = "demo-at-" + secrets.token_hex(8), "demo-rt-" + secrets.token_hex(8)
        self.access_tokens[access] = time.time() + self.token_lifetime
        self.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
        }


def s256(verifier: str) -> str:
    """The PKCE S256 transform the server checks the verifier with."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


CONSENT_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Demo Provider</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem}}
button{{font:inherit;padding:.4rem 1rem;margin-right:.5rem;cursor:pointer}}</style></head><body>
<h1>Demo Provider</h1><p><strong>{client}</strong> wants to read your profile.</p>
<form method="post" action="/authorize">{fields}
<button name="decision" value="allow">Allow</button><button name="decision" value="deny">Deny</button>
</form></body></html>"""


class _AuthHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeAuthServer

    def do_GET(self) -> None:
        parsed = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        if parsed.path == "/authorize":
            return self._consent_page(query)
        if parsed.path == "/api/profile":
            return self._profile()
        self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        path = urlparse(self.path).path
        if path == "/authorize":
            return self._decision(form)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return self._json(401, {"error": "invalid_client"})
        if path == "/token" and form.get("grant_type") == "authorization_code":
            return self._exchange(form)
        if path == "/token" and form.get("grant_type") == "refresh_token":
            return self._refresh(form)
        if path == "/revoke":
            with self.server.lock:
                self.server.revocations += 1
                self.server.refresh_tokens.discard(form.get("token", ""))
                self.server.access_tokens.pop(form.get("token", ""), None)
            return self._json(200, {})
        self._json(400, {"error": "unsupported_grant_type"})

    def _consent_page(self, query: dict[str, str]) -> None:
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return self._json(400, {"error": "invalid_request"})
        names = ("client_id", "redirect_uri", "state", "code_challenge")
        fields = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(query.get(name, ""))}">'
            for name in names
        )
        body = CONSENT_PAGE.format(client=html.escape(query["client_id"]), fields=fields).encode()
        self._send(200, body, "text/html; charset=utf-8")

    def _decision(self, form: dict[str, str]) -> None:
        redirect_uri, state = form.get("redirect_uri", ""), form.get("state", "")
        if form.get("decision") != "allow":
            answer = {"error": "access_denied", "state": state}
        else:
            code = "demo-code-" + secrets.token_hex(8)
            with self.server.lock:
                self.server.codes[code] = (form.get("code_challenge", ""), redirect_uri)
            answer = {"code": code, "state": state}
        self._send(302, b"", "text/plain", {"Location": f"{redirect_uri}?{urlencode(answer)}"})

    def _exchange(self, form: dict[str, str]) -> None:
        with self.server.lock:
            challenge, redirect_uri = self.server.codes.pop(form.get("code", ""), ("", ""))
            if not challenge or redirect_uri != form.get("redirect_uri"):
                return self._json(400, {"error": "invalid_grant"})
            if s256(form.get("code_verifier", "")) != challenge:
                return self._json(400, {"error": "invalid_grant", "error_description": "PKCE check failed"})
            tokens = self.server.new_tokens()
        self._json(200, tokens)

    def _refresh(self, form: dict[str, str]) -> None:
        with self.server.lock:
            if form.get("refresh_token") not in self.server.refresh_tokens:
                return self._json(400, {"error": "invalid_grant"})
            self.server.refresh_tokens.discard(form["refresh_token"])  # rotated: the old one is spent
            self.server.refreshes += 1
            tokens = self.server.new_tokens()
        self._json(200, tokens)

    def _profile(self) -> None:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        with self.server.lock:
            expiry = self.server.access_tokens.get(token)
        if expiry is None or expiry <= time.time():
            return self._json(401, {"error": "invalid_token"})
        self._json(200, {"name": "Ada Lovelace", "plan": "demo"})

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the terminal for the app's own log."""


# -- 2. The provider -------------------------------------------------------------------------------


@dataclasses.dataclass
class DemoCredentials:
    """What the app registers at the provider; the OAuth flow adds the token fields."""

    client_id: str
    client_secret: str


@dataclasses.dataclass
class DemoMetadata:
    """Where the fake provider listens (a real provider names its host in `base_url`)."""

    auth_port: int = DEFAULT_AUTH_PORT


class DemoProvider(Provider, OAuth2, HasHealthCheck):
    """The four OAuth2 methods, with plain httpx (not `integration.at`: no bearer on the token URL).

    Calls through `integration.at(...)` carry the access token by themselves, refreshed first when
    it expires within `refresh_threshold`; the health check is one such call.
    """

    name = "Demo Provider"
    credential_class = DemoCredentials
    metadata_class = DemoMetadata
    base_url = "http://127.0.0.1:{auth_port}"
    refresh_threshold = 25  # refresh tokens expiring within 25 s
    health_check_endpoint = "/api/profile"

    def authorization_url(self, integration: Any, redirect_uri: str, state: str, code_challenge: str) -> str:
        query = {
            "response_type": "code",
            "client_id": integration.credentials.client_id,
            "redirect_uri": redirect_uri,
            "scope": "profile",
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.base_url_for(integration)}/authorize?{urlencode(query)}"

    def exchange_code(self, integration: Any, code: str, redirect_uri: str, code_verifier: str) -> dict:
        form = {"code": code, "redirect_uri": redirect_uri, "code_verifier": code_verifier}
        return self._post(integration, "/token", grant_type="authorization_code", **form)

    def refresh_token(self, integration: Any) -> dict:
        refresh = integration.credentials_dict()["refresh_token"]
        return self._post(integration, "/token", grant_type="refresh_token", refresh_token=refresh)

    def revoke_token(self, integration: Any) -> None:
        credentials = integration.credentials_dict()
        self._post(
            integration, "/revoke", token=credentials.get("refresh_token") or credentials["access_token"]
        )

    def _post(self, integration: Any, path: str, **form: str) -> dict:
        credentials = integration.credentials
        form.update(client_id=credentials.client_id, client_secret=credentials.client_secret)
        with httpx.Client(timeout=10, trust_env=False) as client:  # 127.0.0.1 never via a proxy
            response = client.post(self.base_url_for(integration) + path, data=form)
        response.raise_for_status()
        return response.json()


# -- 3. The app --------------------------------------------------------------------------------------

db = SQLAlchemy()
integrations = Integrations()


def allow_signed_in_user(request: Any, integration: Integration) -> bool:
    """Who may connect or disconnect `integration`. A real app checks its own user here,
    e.g. ``current_user.is_authenticated and integration.owner == current_user``."""
    return True


def create_app(auth_server: FakeAuthServer | None = None, instance_path: str | None = None) -> Flask:
    """The demo app; with `auth_server` (as `python examples/oauth_demo.py` runs it) the integration
    uses that fake provider, without (as `flask --app examples/oauth_demo` loads it) the port its
    metadata names. Its database and key live in `instance_path`, else `DEMO_INSTANCE_PATH`, else
    examples/instance/."""
    instance = Path(instance_path or os.environ.get("DEMO_INSTANCE_PATH") or DEFAULT_INSTANCE_PATH)
    instance.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, instance_path=str(instance.resolve()))
    app.config.update(
        SECRET_KEY=secrets.token_hex(16),  # sessions end on restart: fine for a demo
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{instance.resolve() / 'oauth_demo.db'}",
        INTEGRATIONS_ENCRYPTION_KEYS=[_key(instance / "oauth_demo.key")],
        INTEGRATIONS_PROVIDERS={"demo": DemoProvider},
        INTEGRATIONS_OAUTH_AUTH=allow_signed_in_user,
        INTEGRATIONS_BLUEPRINTS={"dashboard": False},
    )
    app.extensions["demo_auth_server"] = auth_server
    db.init_app(app)
    integrations.init_app(app)
    with app.app_context():
        db.create_all()  # a real app: `flask integrations publish-migrations` + `flask db upgrade`
        port = auth_server.server_address[1] if auth_server else DEFAULT_AUTH_PORT
        integration = db.session.scalars(sa.select(Integration).order_by(Integration.id)).first()
        stored = (integration.metadata or {}).get("auth_port") if integration else None
        if integration is None:
            credentials = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
            integrations.create("demo", "Demo profile", credentials, metadata={"auth_port": port})
        elif stored is None or (auth_server and stored != port):  # `--auth-port` moved the provider
            integration.update(metadata={"auth_port": port})
    app.add_url_rule("/", view_func=index)
    app.add_url_rule("/call", view_func=call_api, methods=["POST"])
    return app


def _key(path: Path) -> str:
    if not path.exists():
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


def the_integration() -> Integration:
    return db.session.scalars(sa.select(Integration).order_by(Integration.id)).first() or abort(404)


def index() -> str:
    integration = the_integration()
    credentials = integration.credentials_dict()
    expires_at = credentials.get("token_expires_at")
    server = app_server()
    return render_template_string(
        PAGE,
        integration=integration,
        connected=bool(credentials.get("access_token")),
        expires_in=None if expires_at is None else int(float(expires_at) - time.time()),
        server=server,
        demo_csrf=demo_csrf(),
    )


def call_api() -> Any:
    if not secrets.compare_digest(request.form.get("csrf_token", ""), demo_csrf()):
        abort(400, "Missing or stale form token: reload the page and try again.")
    integration = the_integration()
    try:
        profile = integration.at("profile").with_attempts(1).get("/api/profile")
        flash(f"The API answered: {profile['name']} ({profile['plan']} plan).")
    except (IntegrationsError, httpx.TransportError) as exc:  # refused, or the provider is not running
        flash(f"The call failed: {exc}")
    return redirect(url_for("index"))


def demo_csrf() -> str:
    return session.setdefault("demo_csrf", secrets.token_urlsafe(24))


def app_server() -> FakeAuthServer | None:
    """The fake provider this process serves (None when the `flask` command loaded the app)."""
    return current_app.extensions.get("demo_auth_server")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>OAuth2 demo</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem; }
  .flash { background: #eef6ff; border: 1px solid #b6d4fe; padding: .5rem .8rem; }
  form { display: inline; } button, .button { font: inherit; padding: .35rem .9rem; cursor: pointer; }
  dt { font-weight: 600; } dd { margin: 0 0 .5rem; }
</style></head><body>
<h1>OAuth2 demo</h1>
{% for message in get_flashed_messages() %}<p class="flash">{{ message }}</p>{% endfor %}
<dl>
  <dt>{{ integration.name }}</dt>
  <dd>{% if connected %}Connected. The access token (stored encrypted, never shown)
      {% if expires_in is not none %}expires in {{ expires_in }} s{% endif %}.
      {% else %}Not connected.{% endif %}</dd>
  <dt>Fake provider</dt>
  <dd>{% if server %}{{ server.url }}: {{ server.refreshes }} token refreshes, {{ server.revocations }}
      revocations.{% else %}not served by this process (<code>python examples/oauth_demo.py</code>
      serves it).{% endif %}</dd>
</dl>
{% if connected %}
  <form method="post" action="{{ url_for('call_api') }}">
    <input type="hidden" name="csrf_token" value="{{ demo_csrf }}"><button>Call the API</button>
  </form>
  <form method="post" action="{{ url_for('integrations_oauth.revoke', integration_id=integration.id) }}">
    <input type="hidden" name="csrf_token" value="{{ integrations_csrf_token() }}">
    <button>Disconnect</button>
  </form>
{% else %}
  <a class="button"
     href="{{ url_for('integrations_oauth.authorize', integration_id=integration.id) }}">Connect</a>
{% endif %}
</body></html>
"""


# -- 4. Run it ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the flask-integrations OAuth2 demo on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the demo app")
    parser.add_argument("--auth-port", type=int, default=DEFAULT_AUTH_PORT, help="port of the fake provider")
    parser.add_argument(
        "--instance-path", help="database and key folder (default: $DEMO_INSTANCE_PATH or examples/instance)"
    )
    parser.add_argument("--temporary", action="store_true", help="keep the database in a temporary folder")
    args = parser.parse_args(argv)
    try:
        server = FakeAuthServer(args.auth_port).start()
    except OSError as exc:
        sys.exit(f"Cannot listen on 127.0.0.1:{args.auth_port} ({exc.strerror}); try --auth-port.")
    instance = tempfile.mkdtemp(prefix="oauth-demo-") if args.temporary else args.instance_path
    app = create_app(server, instance_path=instance)
    print(f"OAuth2 demo: open http://127.0.0.1:{args.port}/  (Ctrl-C to stop)", flush=True)
    app.run(host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
