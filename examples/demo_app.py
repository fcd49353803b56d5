"""A small Flask app using flask-integrations with two demo providers.

Run it from the repository root:

    pip install -e . && python examples/demo_app.py

It uses SQLite in `examples/instance/` (the embedded default: no Redis, no
other server) and serves a fake JSON API on 127.0.0.1 that stands in for the
providers' upstream, so you can run health checks, make the upstream fail and
watch health degrade. Nothing leaves 127.0.0.1.

Read it top to bottom: the fake upstream, the two providers, the app.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import (
    Blueprint,
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

from flask_integrations import (
    CredentialsDecryptionError,
    HasHealthCheck,
    IncrementalSync,
    Integration,
    Integrations,
    Provider,
    SyncSession,
)

DEFAULT_PORT = 5050
DEFAULT_UPSTREAM_PORT = 5051
DEFAULT_INSTANCE_PATH = Path(__file__).resolve().parent / "instance"

#: The demo's credentials. The fake upstream accepts exactly these; the app
#: stores them encrypted and never shows them.
WEATHER_API_KEY = "wx-demo-7c41f09a2b"
TICKETS_API_TOKEN = "tk-demo-5e92d13b8f"


# -- 1. The fake upstream: a tiny JSON API on 127.0.0.1 ------------------------------------------


class FakeUpstream(ThreadingHTTPServer):
    """`GET /weather` wants `X-Api-Key`, `GET /tickets` wants `Authorization: Bearer`.

    Set `failing = True` to answer 503 to everything, as an outage would.
    """

    daemon_threads = True

    def __init__(self, port: int = DEFAULT_UPSTREAM_PORT):
        super().__init__(("127.0.0.1", port), _UpstreamHandler)
        self.failing = False
        self.expected_headers = {
            "/weather": ("X-Api-Key", WEATHER_API_KEY),
            "/tickets": ("Authorization", f"Bearer {TICKETS_API_TOKEN}"),
            "/tickets/changes": ("Authorization", f"Bearer {TICKETS_API_TOKEN}"),
        }
        #: the upstream's tickets; `version` grows with every change, like an `updated_at`
        self.tickets = [
            {"id": n, "subject": subject, "version": n}
            for n, subject in enumerate(
                ["Printer on fire", "VPN drops at noon", "Invoice #204 missing"], start=1
            )
        ]

    def add_ticket(self) -> None:
        number = len(self.tickets) + 1
        self.tickets.append({"id": number, "subject": f"New ticket #{number}", "version": number})

    def changes_since(self, version: int) -> list[dict[str, Any]]:
        return [t for t in self.tickets if t["version"] > version]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeUpstream:
        threading.Thread(target=self.serve_forever, args=(0.1,), name="fake-upstream", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeUpstream

    def do_GET(self) -> None:
        expected = self.server.expected_headers.get(self.path.split("?")[0].rstrip("/"))
        if expected is None:
            self._answer(404, {"error": "not found"})
        elif self.server.failing:
            self._answer(503, {"error": "service unavailable"})
        elif self.headers.get(expected[0]) != expected[1]:
            self._answer(401, {"error": f"missing or wrong {expected[0]} header"})
        elif self.path.startswith("/tickets/changes"):
            since = parse_qs(urlparse(self.path).query).get("since", ["0"])[0]
            self._answer(200, {"tickets": self.server.changes_since(int(since or 0))})
        else:
            self._answer(200, {"status": "ok"})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the terminal for the app's own log."""


# -- 2. The providers ----------------------------------------------------------------------------


@dataclasses.dataclass
class WeatherCredentials:
    api_key: str


@dataclasses.dataclass
class TicketsCredentials:
    api_token: str
    subdomain: str
    verify_tls: bool = True


@dataclasses.dataclass
class TicketsMetadata:
    team: str
    tags: list[str] = dataclasses.field(default_factory=list)
    escalation_email: str | None = None


def ping(provider: Provider, integration: Integration) -> bool:
    """GET the provider's `base_url` with its auth header; True on a 200."""
    outgoing = httpx.Request("GET", provider.base_url)
    provider.prepare_request(integration, outgoing)
    # trust_env=False: never route 127.0.0.1 through a proxy from the environment.
    with httpx.Client(timeout=5, trust_env=False) as client:
        try:
            return client.send(outgoing).status_code == 200
        except httpx.HTTPError:
            return False


class Weather(Provider, HasHealthCheck):
    """API-key credentials, any metadata."""

    name = "Weather"
    credential_class = WeatherCredentials
    base_url = f"http://127.0.0.1:{DEFAULT_UPSTREAM_PORT}/weather"

    def prepare_request(self, integration: Integration, request: httpx.Request) -> None:
        request.headers["X-Api-Key"] = integration.credentials.api_key

    def health_check(self, integration: Integration) -> bool:
        return ping(self, integration)


class Tickets(Provider, HasHealthCheck, IncrementalSync):
    """Typed credentials and typed metadata; syncs the tickets changed since its cursor."""

    sync_interval = 5  # minutes, for `flask integrations sync` run from cron

    name = "Tickets"
    credential_class = TicketsCredentials
    metadata_class = TicketsMetadata
    base_url = f"http://127.0.0.1:{DEFAULT_UPSTREAM_PORT}/tickets"

    def prepare_request(self, integration: Integration, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {integration.credentials.api_token}"

    def health_check(self, integration: Integration) -> bool:
        return ping(self, integration)

    def sync_incremental(self, integration: Integration, session: SyncSession) -> None:
        """Only enumerates: each changed ticket becomes one item, its version the checkpoint."""
        answer = integration.at("tickets.changes").with_data({"since": session.cursor or 0}).get("/changes")
        for ticket in answer["tickets"]:
            session.dispatch(
                "tickets.ticket", ticket, checkpoint=ticket["version"], external_id=str(ticket["id"])
            )


def with_base_url(provider: type[Provider], url: str) -> type[Provider]:
    """The provider pointed at another upstream (a real provider just names its API in `base_url`)."""
    return type(provider.__name__, (provider,), {"base_url": url})


# -- 3. The app ----------------------------------------------------------------------------------

db = SQLAlchemy()
integrations = Integrations(db=db)


class DemoTicket(db.Model):
    """The app's own copy of upstream tickets, filled by the sync."""

    __tablename__ = "demo_tickets"
    id = db.Column(db.Integer, primary_key=True)
    subject = db.Column(db.String(200), nullable=False)


@integrations.sync_handler("tickets.ticket")
def ingest_ticket(integration: Integration, payload: dict[str, Any]) -> None:
    """Idempotent: the mapping finds the row a previous delivery of this ticket created."""
    integration.upsert_by_external_id(str(payload["id"]), DemoTicket, {"subject": payload["subject"]})


def create_app(upstream: FakeUpstream, instance_path: str | None = None) -> Flask:
    """The demo app, talking to `upstream`; its database and keys live in the instance folder."""
    instance = Path(instance_path or DEFAULT_INSTANCE_PATH).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, instance_path=str(instance))
    app.config.update(
        SECRET_KEY=read_or_create(instance / "secret.key", lambda: secrets.token_hex(32)),
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{instance / 'demo.db'}",
        INTEGRATIONS_ENCRYPTION_KEYS=[read_or_create(instance / "encryption.key", generate_fernet_key)],
        INTEGRATIONS_PROVIDERS={
            "weather": with_base_url(Weather, f"{upstream.url}/weather"),
            "tickets": with_base_url(Tickets, f"{upstream.url}/tickets"),
        },
        # Dict settings are merged over their defaults; low thresholds make the demo quick to watch.
        INTEGRATIONS_HEALTH={"degraded_after": 3, "failing_after": 6, "disabled_after": 10},
        # The dashboard at /integrations/dashboard/ answers this machine only (the demo listens on
        # 127.0.0.1); a real app checks its own login here, e.g. `lambda request: current_user.is_admin`.
        INTEGRATIONS_DASHBOARD_AUTH=local_only,
    )
    app.extensions["demo_upstream"] = upstream
    db.init_app(app)
    integrations.init_app(app)
    with app.app_context():
        db.create_all()  # a real app: `flask integrations publish-migrations` + `flask db upgrade`
        seed_on_first_start()
    app.register_blueprint(views)
    app.jinja_env.globals["csrf_token"] = csrf_token
    return app


def generate_fernet_key() -> str:
    return Fernet.generate_key().decode()


def read_or_create(path: Path, generate: Callable[[], str]) -> str:
    """The secret stored in `path`, generated (readable by the owner only) on first use."""
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(generate())
    return path.read_text().strip()


def seed_on_first_start() -> None:
    """Two integrations and a first tickets sync, so the dashboard has a request, a run and items."""
    if db.session.scalar(sa.select(sa.func.count()).select_from(Integration)):
        return
    integrations.create("weather", "Weather (demo)", {"api_key": WEATHER_API_KEY})
    tickets = integrations.create(
        "tickets",
        "Acme support desk",
        {"api_token": TICKETS_API_TOKEN, "subdomain": "acme-demo"},
        metadata={"team": "support", "tags": ["demo", "tier-1"]},
    )
    tickets.sync_now()  # embedded mode: the run and its items go through right after its commit


def local_only(request: Any) -> bool:
    """The demo's INTEGRATIONS_DASHBOARD_AUTH: requests from this machine only."""
    return request.remote_addr in ("127.0.0.1", "::1")


def csrf_token() -> str:
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    return session["csrf_token"]


def check_csrf() -> None:
    if request.method != "POST":
        return
    expected = session.get("csrf_token")
    if not expected or not secrets.compare_digest(request.form.get("csrf_token", ""), expected):
        abort(400, "Missing or stale form token: reload the page and try again.")


# -- 4. The views --------------------------------------------------------------------------------

views = Blueprint("demo", __name__)
views.before_request(check_csrf)  # the demo's own forms; the dashboard checks its own token


def upstream() -> FakeUpstream:
    return current_app.extensions["demo_upstream"]


def credential_field_names(integration: Integration) -> str:
    """The stored credential fields, by name only."""
    try:
        return ", ".join(sorted(integration.credentials_dict()))
    except CredentialsDecryptionError:
        return "(cannot be decrypted with the configured keys)"


@views.get("/")
def index() -> str:
    rows = db.session.scalars(sa.select(Integration).order_by(Integration.id)).all()
    return render_template_string(
        PAGE,
        rows=rows,
        field_names=credential_field_names,
        upstream=upstream(),
        health=current_app.config["INTEGRATIONS_HEALTH"],
        syncs=syncs,
        tickets=db.session.scalars(sa.select(DemoTicket).order_by(DemoTicket.id)).all(),
    )


@views.post("/integrations/<int:integration_id>/health-check")
def run_health_check(integration_id: int) -> Any:
    integration = integrations.get(integration_id) or abort(404)
    if integration.provider_instance.health_check(integration):
        integration.record_success()
        outcome = "passed"
    else:
        integration.record_failure("upstream")
        outcome = "failed"
    flash(
        f"{integration.name}: health check {outcome}. Health is now {integration.health_status} "
        f"({integration.consecutive_failures} consecutive failures)."
    )
    return redirect(url_for(".index"))


@views.post("/integrations/<int:integration_id>/toggle")
def toggle(integration_id: int) -> Any:
    integration = integrations.get(integration_id) or abort(404)
    if integration.is_active:
        integration.disable()
        flash(f"{integration.name} disabled.")
    else:
        integration.enable()
        flash(f"{integration.name} enabled: healthy again, failure counter reset.")
    return redirect(url_for(".index"))


@views.post("/upstream/<any(fail, restore):action>")
def set_upstream(action: str) -> Any:
    upstream().failing = action == "fail"
    flash(
        "The fake upstream now answers 503 to everything." if upstream().failing else "The upstream is back."
    )
    return redirect(url_for(".index"))


@views.post("/integrations/<int:integration_id>/sync")
def sync_now(integration_id: int) -> Any:
    integration = integrations.get(integration_id) or abort(404)
    run = integration.sync_now()  # embedded mode: runs right after this response is sent
    flash(f"Sync of {integration.name} started (run log {run.id})." if run else "A sync is already running.")
    return redirect(url_for(".index"))


@views.post("/upstream/new-ticket")
def new_upstream_ticket() -> Any:
    upstream().add_ticket()
    flash("The upstream has a new ticket; sync to fetch it.")
    return redirect(url_for(".index"))


def syncs(integration: Integration) -> bool:
    return isinstance(integration.provider_instance, IncrementalSync)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>flask-integrations demo</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 68rem; margin: 2rem auto; padding: 0 1rem; }
  table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
  th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #ddd; vertical-align: top; }
  th { background: #f4f4f4; }
  .flash { background: #eef6ff; border: 1px solid #b6d4fe; padding: .5rem .8rem; margin: .3rem 0; }
  .healthy { color: #146c2e; } .degraded { color: #8a5a00; } .failing, .disabled { color: #b02a37; }
  form { display: inline; } button { font: inherit; cursor: pointer; }
  code { background: #f4f4f4; padding: 0 .25rem; }
</style>
</head>
<body>
<h1>flask-integrations demo</h1>
<p>
  <a href="{{ url_for('integrations_dashboard.overview') }}">Open the integrations dashboard</a>:
  requests, error rates and latency, health, the circuit breaker, syncs and webhooks of every integration.
</p>
{% for message in get_flashed_messages() %}<p class="flash">{{ message }}</p>{% endfor %}

<h2>Integrations</h2>
<table>
  <tr>
    <th>Provider</th><th>Name</th><th>Health</th><th>Active</th><th>Consecutive failures</th>
    <th>Credential fields</th><th>Metadata</th><th>Sync cursor</th><th>Actions</th>
  </tr>
  {% for integration in rows %}
  <tr>
    <td>{{ integration.provider }}</td>
    <td>{{ integration.name }}</td>
    <td class="{{ integration.health_status }}">{{ integration.health_status }}</td>
    <td>{{ "yes" if integration.is_active else "no" }}</td>
    <td>{{ integration.consecutive_failures }}</td>
    <td><code>{{ field_names(integration) }}</code></td>
    <td><code>{{ integration.metadata | tojson if integration.metadata else "-" }}</code></td>
    <td>{{ integration.sync_cursor if integration.sync_cursor is not none else "-" }}</td>
    <td>
      <form method="post" action="{{ url_for('.run_health_check', integration_id=integration.id) }}">
        <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
        <button>Run health check</button>
      </form>
      {% if syncs(integration) %}
      <form method="post" action="{{ url_for('.sync_now', integration_id=integration.id) }}">
        <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
        <button>Sync now</button>
      </form>
      {% endif %}
      <form method="post" action="{{ url_for('.toggle', integration_id=integration.id) }}">
        <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
        <button>{{ "Disable" if integration.is_active else "Enable" }}</button>
      </form>
    </td>
  </tr>
  {% endfor %}
</table>
<p>
  Health becomes <em>degraded</em> after {{ health.degraded_after }}, <em>failing</em> after
  {{ health.failing_after }} and <em>disabled</em> (inactive) after {{ health.disabled_after }} consecutive
  upstream failures (<code>INTEGRATIONS_HEALTH</code>). A passing check resets the counter;
  <em>Enable</em> brings a disabled integration back.
</p>

<h2>Synced tickets</h2>
{% if tickets %}
<table>
  <tr><th>Id</th><th>Subject</th></tr>
  {% for ticket in tickets %}<tr><td>{{ ticket.id }}</td><td>{{ ticket.subject }}</td></tr>{% endfor %}
</table>
{% else %}
<p>None yet: press <em>Sync now</em> on the tickets integration.</p>
{% endif %}
<p>
  The sync fetches the tickets changed since the cursor, one item per ticket; the cursor moves to the
  highest version once every item is stored.
  <form method="post" action="{{ url_for('.new_upstream_ticket') }}">
    <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
    <button>Add a ticket upstream</button>
  </form>
</p>

<h2>Fake upstream</h2>
<div>
  {{ upstream.url }} is
  {% if upstream.failing %}<strong class="failing">failing</strong> (503 to every request){% else %}
  <strong class="healthy">up</strong>{% endif %}.
  {% set action = "restore" if upstream.failing else "fail" %}
  <form method="post" action="{{ url_for('.set_upstream', action=action) }}">
    <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
    <button>{{ "Restore the upstream" if upstream.failing else "Make the upstream fail" }}</button>
  </form>
</div>
</body>
</html>
"""


# -- 5. Run it -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the flask-integrations demo on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the demo app")
    parser.add_argument(
        "--upstream-port", type=int, default=DEFAULT_UPSTREAM_PORT, help="port of the fake upstream (0 = any)"
    )
    parser.add_argument("--instance-path", help="database and keys folder (default: examples/instance)")
    args = parser.parse_args(argv)
    try:
        fake_upstream = FakeUpstream(args.upstream_port).start()
    except OSError as exc:
        sys.exit(f"Cannot listen on 127.0.0.1:{args.upstream_port} ({exc.strerror}); try --upstream-port.")
    app = create_app(fake_upstream, instance_path=args.instance_path)
    print(f"flask-integrations demo: open http://127.0.0.1:{args.port}/  (Ctrl-C to stop)", flush=True)
    app.run(host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
