"""A small Flask app using flask-integrations with two demo providers.

Run it from the repository root:

    pip install -e . && python examples/demo_app.py

It uses SQLite in `examples/instance/` (the embedded default: no Redis, no
other server) and serves a fake JSON API on 127.0.0.1 that stands in for the
providers' upstream, so you can run health checks, make the upstream fail and
watch health degrade. Nothing leaves 127.0.0.1.

The `flask` command loads the same app, without serving the fake upstream:

    flask --app examples/demo_app integrations list
    flask --app examples/demo_app integrations health
    flask --app examples/demo_app integrations test     # calls the upstream of a running demo

A command that calls out reaches the upstream of a running `python examples/demo_app.py`
(each integration's metadata names its port) and fails clearly when none runs. Set
`DEMO_INSTANCE_PATH` (or `--instance-path`) to keep the database and keys elsewhere.

Read it top to bottom: the fake upstream, the two providers, the app.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
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
    IntegrationsError,
    Provider,
    SyncSession,
    auth,
    on_sync_item,
    pagination,
)

DEFAULT_PORT = 5050
DEFAULT_UPSTREAM_PORT = 5051
DEFAULT_INSTANCE_PATH = Path(__file__).resolve().parent / "instance"

#: The demo's credentials. The fake upstream accepts exactly these; the app
#: stores them encrypted and never shows them.
WEATHER_API_KEY = "wx-demo-7c41f09a2b"
TICKETS_API_TOKEN = "tk-demo-5e92d13b8f"

#: Tickets per page of the upstream's change list (small, so a sync reads several pages).
PAGE_SIZE = 2


# -- 1. The fake upstream: a tiny JSON API on 127.0.0.1 ------------------------------------------


class FakeUpstream(ThreadingHTTPServer):
    """Two APIs. Weather: `GET /weather/status`, wants `X-Api-Key`. Tickets, one per account:
    `GET /<subdomain>/api/me` and `GET /<subdomain>/api/tickets/changes?since=V&after=C` (a page
    of the tickets changed after version V, and the cursor of the next page), want
    `Authorization: Bearer`.

    Set `failing = True` to answer 503 to everything, as an outage would.
    """

    daemon_threads = True

    def __init__(self, port: int = DEFAULT_UPSTREAM_PORT):
        super().__init__(("127.0.0.1", port), _UpstreamHandler)
        self.failing = False
        self.expected_headers = {
            "weather": ("X-Api-Key", WEATHER_API_KEY),
            "tickets": ("Authorization", f"Bearer {TICKETS_API_TOKEN}"),
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

    def changes(self, since: int, after: int) -> dict[str, Any]:
        """One page of the tickets changed since version `since`, starting after version `after`."""
        changed = [t for t in self.tickets if t["version"] > max(since, after)]
        page = changed[:PAGE_SIZE]
        return {"tickets": page, "next": page[-1]["version"] if len(changed) > PAGE_SIZE else None}

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
        url = urlparse(self.path)
        found = re.fullmatch(r"/(?:(weather)|[\w-]+/api)(/.*)", url.path)  # /<subdomain>/api/...
        if found is None:
            return self._answer(404, {"error": "not found"})
        api, route = found[1] or "tickets", found[2]
        header, expected = self.server.expected_headers[api]
        if self.server.failing:
            return self._answer(503, {"error": "service unavailable"})
        if self.headers.get(header) != expected:
            return self._answer(401, {"error": f"missing or wrong {header} header"})
        if (api, route) in (("weather", "/status"), ("tickets", "/me")):
            return self._answer(200, {"status": "ok"})
        if (api, route) == ("tickets", "/tickets/changes"):
            query = parse_qs(url.query)
            since, after = (int(query.get(name, ["0"])[-1] or 0) for name in ("since", "after"))
            return self._answer(200, self.server.changes(since, after))
        self._answer(404, {"error": "not found"})

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
#
# Each is declared: where its API lives, how a call authenticates, what its health check GETs.
# A real provider names its host in `base_url` (`https://{subdomain}.tickets.example/api`); the
# demo's upstream listens on 127.0.0.1 at the port each integration's metadata names.


@dataclasses.dataclass
class WeatherCredentials:
    api_key: str


@dataclasses.dataclass
class WeatherMetadata:
    upstream_port: int = DEFAULT_UPSTREAM_PORT


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
    upstream_port: int = DEFAULT_UPSTREAM_PORT


class Weather(Provider, HasHealthCheck):
    """An API key in a header; the health check GETs `/status`."""

    name = "Weather"
    credential_class = WeatherCredentials
    metadata_class = WeatherMetadata
    base_url = "http://127.0.0.1:{upstream_port}/weather"
    auth = auth.Header("X-Api-Key", "api_key")
    health_check_endpoint = "/status"


class Tickets(Provider, HasHealthCheck, IncrementalSync):
    """A bearer token, a host per account (`{subdomain}`, from the credentials), and an incremental
    sync of the tickets changed since its cursor, page by page."""

    name = "Tickets"
    credential_class = TicketsCredentials
    metadata_class = TicketsMetadata
    base_url = "http://127.0.0.1:{upstream_port}/{subdomain}/api"
    auth = auth.Bearer("api_token")
    health_check_endpoint = "/me"
    sync_interval = 5  # minutes, for `flask integrations sync` run from cron

    def sync_incremental(self, integration: Integration, session: SyncSession) -> None:
        """Only enumerates: each changed ticket becomes one item, its version the checkpoint."""
        changes = integration.at("tickets.changes").with_data({"since": session.cursor or 0})
        pages = pagination.Cursor("next", param="after")
        for ticket in changes.paginate("/tickets/changes", items="tickets", pages=pages):
            session.dispatch("ticket", ticket, checkpoint=ticket["version"], external_id=str(ticket["id"]))

    @on_sync_item("ticket")
    def store(self, integration: Integration, ticket: dict[str, Any]) -> None:
        """Idempotent: the mapping finds the row a previous delivery of this ticket created."""
        integration.upsert_by_external_id(str(ticket["id"]), DemoTicket, {"subject": ticket["subject"]})


# -- 3. The app ----------------------------------------------------------------------------------

db = SQLAlchemy()
integrations = Integrations(db=db)


class DemoTicket(db.Model):
    """The app's own copy of upstream tickets, filled by the sync."""

    __tablename__ = "demo_tickets"
    id = db.Column(db.Integer, primary_key=True)
    subject = db.Column(db.String(200), nullable=False)


def create_app(upstream: FakeUpstream | None = None, instance_path: str | None = None) -> Flask:
    """The demo app; its database and keys live in the instance folder (`instance_path`, else
    `DEMO_INSTANCE_PATH`, else examples/instance/).

    With `upstream` (as `python examples/demo_app.py` runs it) the integrations call that fake
    upstream and the pages can break it; without (as `flask --app examples/demo_app` loads it)
    they call the port their metadata names.
    """
    instance = Path(instance_path or os.environ.get("DEMO_INSTANCE_PATH") or DEFAULT_INSTANCE_PATH)
    instance = instance.resolve()
    instance.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, instance_path=str(instance))
    app.config.update(
        SECRET_KEY=read_or_create(instance / "secret.key", lambda: secrets.token_hex(32)),
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{instance / 'demo.db'}",
        INTEGRATIONS_ENCRYPTION_KEYS=[read_or_create(instance / "encryption.key", generate_fernet_key)],
        INTEGRATIONS_PROVIDERS={"weather": Weather, "tickets": Tickets},
        # Dict settings are merged over their defaults; low thresholds make the demo quick to watch.
        INTEGRATIONS_HEALTH={"degraded_after": 3, "failing_after": 6, "disabled_after": 10},
        # The breaker stops calling an upstream after 10 failures in a row (the dashboard shows it).
        INTEGRATIONS_BREAKER={"threshold": 10, "cooldown": 30},
        # The dashboard at /integrations/dashboard/ answers this machine only (the demo listens on
        # 127.0.0.1); a real app checks its own login here, e.g. `lambda request: current_user.is_admin`.
        INTEGRATIONS_DASHBOARD_AUTH=local_only,
    )
    app.extensions["demo_upstream"] = upstream
    db.init_app(app)
    integrations.init_app(app)
    with app.app_context():
        db.create_all()  # a real app: `flask integrations publish-migrations` + `flask db upgrade`
        port = upstream.port if upstream else None
        seed_on_first_start(port or DEFAULT_UPSTREAM_PORT)
        point_at(port)
        if upstream is not None:
            sync_tickets_once()
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


def seed_on_first_start(upstream_port: int) -> None:
    """Two integrations, on the first start only."""
    if db.session.scalar(sa.select(sa.func.count()).select_from(Integration)):
        return
    where = {"upstream_port": upstream_port}
    integrations.create("weather", "Weather (demo)", {"api_key": WEATHER_API_KEY}, metadata=where)
    integrations.create(
        "tickets",
        "Acme support desk",
        {"api_token": TICKETS_API_TOKEN, "subdomain": "acme-demo"},
        metadata={"team": "support", "tags": ["demo", "tier-1"], **where},
    )


def point_at(port: int | None) -> None:
    """Keep each integration's `upstream_port` on the fake upstream's `port` (`--upstream-port`
    moves it); without one, give the default port to an integration that names none yet."""
    for integration in db.session.scalars(sa.select(Integration)).all():
        metadata = integration.metadata or {}
        wanted = port or metadata.get("upstream_port") or DEFAULT_UPSTREAM_PORT
        if metadata.get("upstream_port") != wanted:
            integration.update(metadata={**metadata, "upstream_port": wanted})


def sync_tickets_once() -> None:
    """A first tickets sync, so the dashboard has requests, a run and items from the start."""
    never_synced = sa.select(Integration).filter_by(provider="tickets", sync_cursor=None)
    for tickets in db.session.scalars(never_synced).all():
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


def upstream() -> FakeUpstream | None:
    """The fake upstream this process serves (None when the `flask` command loaded the app)."""
    return current_app.extensions.get("demo_upstream")


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
    """The check is one GET through the pipeline (and its breaker); its outcome counts toward
    health once, recorded here as `flask integrations test` records it."""
    integration = integrations.get(integration_id) or abort(404)
    try:
        passed = integration.provider_instance.health_check(integration)
        outcome = "passed" if passed else "failed"
    except (IntegrationsError, httpx.TransportError) as exc:  # the breaker is open, the integration
        passed, outcome = False, f"failed ({type(exc).__name__}: {exc})"  # disabled, nothing listens
    if passed:
        integration.record_success()
    else:
        integration.record_failure("upstream")
    db.session.commit()
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
        integration.reset_breaker()
        flash(f"{integration.name} enabled: healthy again, failure counter reset, breaker closed.")
    return redirect(url_for(".index"))


@views.post("/upstream/<any(fail, restore):action>")
def set_upstream(action: str) -> Any:
    server = upstream() or abort(404)
    server.failing = action == "fail"
    flash("The fake upstream now answers 503 to everything." if server.failing else "The upstream is back.")
    return redirect(url_for(".index"))


@views.post("/integrations/<int:integration_id>/sync")
def sync_now(integration_id: int) -> Any:
    integration = integrations.get(integration_id) or abort(404)
    run = integration.sync_now()  # embedded mode: runs right after this response is sent
    flash(f"Sync of {integration.name} started (run log {run.id})." if run else "A sync is already running.")
    return redirect(url_for(".index"))


@views.post("/upstream/new-ticket")
def new_upstream_ticket() -> Any:
    (upstream() or abort(404)).add_ticket()
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
  upstream failures (<code>INTEGRATIONS_HEALTH</code>). Every call counts, a health check as much as a
  sync: a success resets the counter; <em>Enable</em> brings a disabled integration back.
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
  {% if upstream %}
  <form method="post" action="{{ url_for('.new_upstream_ticket') }}">
    <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
    <button>Add a ticket upstream</button>
  </form>
  {% endif %}
</p>

<h2>Fake upstream</h2>
{% if not upstream %}
<p>Not served by this process: <code>python examples/demo_app.py</code> serves it with the app.</p>
{% else %}
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
{% endif %}
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
    parser.add_argument(
        "--instance-path",
        help="database and keys folder (default: $DEMO_INSTANCE_PATH, else examples/instance)",
    )
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
