"""The demo app in examples/ works as its README says, against its own fake upstream."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from flask_integrations import Integration, IntegrationRequest

ROOT = Path(__file__).resolve().parents[1]
DEMO_PATH = ROOT / "examples" / "demo_app.py"


def _load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_app", DEMO_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_app"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    return sys.modules.get("demo_app") or _load_demo()


@pytest.fixture
def upstream(demo: ModuleType) -> Iterator:
    server = demo.FakeUpstream(port=0).start()
    yield server
    server.stop()


@pytest.fixture
def demo_app(demo: ModuleType, upstream, tmp_path: Path) -> Iterator[Flask]:
    app = demo.create_app(upstream, instance_path=str(tmp_path / "instance"))
    app.config["TESTING"] = True
    yield app
    with app.app_context():
        demo.db.session.remove()
        demo.db.engine.dispose()


@pytest.fixture
def client(demo_app: Flask) -> FlaskClient:
    return demo_app.test_client()


def _csrf_token(client: FlaskClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert match
    return match.group(1)


def _integration(app: Flask, provider: str) -> Integration:
    with app.app_context():
        db = app.extensions["sqlalchemy"]
        integration = db.session.scalars(sa.select(Integration).where(Integration.provider == provider)).one()
        db.session.expunge(integration)
        return integration


def _run_health_check(client: FlaskClient, app: Flask, provider: str) -> str:
    integration_id = _integration(app, provider).id
    response = client.post(
        f"/integrations/{integration_id}/health-check",
        data={"csrf_token": _csrf_token(client)},
        follow_redirects=True,
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_front_page_lists_both_integrations_by_field_names_only(demo_app: Flask, client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)

    assert "Weather (demo)" in html and "Acme support desk" in html
    assert "api_key" in html and "api_token, subdomain, verify_tls" in html
    secrets_stored = []
    with demo_app.app_context():
        db = demo_app.extensions["sqlalchemy"]
        for integration in db.session.scalars(sa.select(Integration)):
            secrets_stored += [v for v in integration.credentials_dict().values() if isinstance(v, str)]
    assert len(secrets_stored) == 3
    for value in secrets_stored:
        assert value not in html


def test_credentials_are_seeded_encrypted_once(demo: ModuleType, demo_app: Flask, upstream, tmp_path) -> None:
    again = demo.create_app(upstream, instance_path=str(tmp_path / "instance"))
    with again.app_context():
        db = again.extensions["sqlalchemy"]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Integration)) == 2
        stored = db.session.scalars(sa.text("SELECT credentials FROM integrations")).all()
    assert all(demo.WEATHER_API_KEY not in token and demo.TICKETS_API_TOKEN not in token for token in stored)


def test_health_check_passes_against_the_fake_upstream(demo_app: Flask, client: FlaskClient) -> None:
    for provider in ("weather", "tickets"):
        html = _run_health_check(client, demo_app, provider)

        assert "health check passed" in html
        integration = _integration(demo_app, provider)
        assert (integration.health_status, integration.consecutive_failures) == ("healthy", 0)


def test_upstream_rejects_a_wrong_api_key(demo_app: Flask, client: FlaskClient) -> None:
    with demo_app.app_context():
        demo_app.extensions["integrations"].get(_integration(demo_app, "weather").id).update(
            credentials={"api_key": "wrong"}
        )

    assert "health check failed" in _run_health_check(client, demo_app, "weather")


def test_failing_upstream_degrades_health_after_the_threshold(demo_app: Flask, client: FlaskClient) -> None:
    threshold = demo_app.config["INTEGRATIONS_HEALTH"]["degraded_after"]
    client.post("/upstream/fail", data={"csrf_token": _csrf_token(client)})

    for _ in range(threshold - 1):
        assert "health check failed" in _run_health_check(client, demo_app, "tickets")
    assert _integration(demo_app, "tickets").health_status == "healthy"
    html = _run_health_check(client, demo_app, "tickets")

    assert f"Health is now degraded ({threshold} consecutive failures)" in html
    assert _integration(demo_app, "weather").health_status == "healthy"

    client.post("/upstream/restore", data={"csrf_token": _csrf_token(client)})
    assert "Health is now healthy (0 consecutive failures)" in _run_health_check(client, demo_app, "tickets")


def test_disabled_after_the_last_threshold_and_enabled_again(demo_app: Flask, client: FlaskClient) -> None:
    health = demo_app.config["INTEGRATIONS_HEALTH"]
    client.post("/upstream/fail", data={"csrf_token": _csrf_token(client)})
    for _ in range(health["disabled_after"]):
        _run_health_check(client, demo_app, "weather")
    weather = _integration(demo_app, "weather")
    assert (weather.health_status, weather.is_active) == ("disabled", False)

    client.post(f"/integrations/{weather.id}/toggle", data={"csrf_token": _csrf_token(client)})

    weather = _integration(demo_app, "weather")
    assert (weather.health_status, weather.is_active, weather.consecutive_failures) == ("healthy", True, 0)


def test_buttons_need_the_form_token(demo_app: Flask, client: FlaskClient) -> None:
    weather_id = _integration(demo_app, "weather").id

    assert client.post(f"/integrations/{weather_id}/health-check").status_code == 400
    assert client.post("/upstream/fail", data={"csrf_token": "forged"}).status_code == 400
    assert _integration(demo_app, "weather").consecutive_failures == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_readme_command_serves_the_front_page(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "python examples/demo_app.py" in readme
    port = _free_port()
    command = [sys.executable, str(DEMO_PATH), "--port", str(port), "--upstream-port", "0"]
    process = subprocess.Popen(
        [*command, "--instance-path", str(tmp_path / "instance")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2, trust_env=False)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the demo did not answer within 30 s"
                time.sleep(0.2)
        assert response.status_code == 200
        assert "Weather (demo)" in response.text
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert f"open http://127.0.0.1:{port}/" in output


def _sync(client: FlaskClient, app: Flask) -> str:
    from flask_integrations.testing import run_queued_jobs

    integration_id = _integration(app, "tickets").id
    response = client.post(f"/integrations/{integration_id}/sync", data={"csrf_token": _csrf_token(client)})
    response.close()  # the embedded runner starts the run once the response is done
    run_queued_jobs()
    return client.get("/").get_data(as_text=True)


def test_sync_now_copies_upstream_tickets_and_moves_the_cursor(demo_app: Flask, client, upstream) -> None:
    html = _sync(client, demo_app)
    assert "Printer on fire" in html and "Invoice #204 missing" in html
    assert _integration(demo_app, "tickets").sync_cursor == 3
    assert _pages_read(demo_app) == 3  # two pages on start (two tickets, then one); one, empty, now
    client.post("/upstream/new-ticket", data={"csrf_token": _csrf_token(client)})
    html = _sync(client, demo_app)
    assert "New ticket #4" in html
    assert _integration(demo_app, "tickets").sync_cursor == 4
    with demo_app.app_context():
        db = demo_app.extensions["sqlalchemy"]
        assert db.session.scalar(sa.text("SELECT count(*) FROM demo_tickets")) == 4  # nothing twice


def _pages_read(app: Flask) -> int:
    with app.app_context():
        db = app.extensions["sqlalchemy"]
        endpoint = IntegrationRequest.endpoint
        return db.session.scalar(sa.select(sa.func.count()).where(endpoint == "tickets.changes"))


def test_a_restart_on_another_upstream_port_points_the_integrations_at_it(demo, demo_app, tmp_path) -> None:
    moved = demo.FakeUpstream(port=0).start()
    try:
        again = demo.create_app(moved, instance_path=str(tmp_path / "instance"))
        client = again.test_client()
        for provider in ("weather", "tickets"):
            assert _integration(again, provider).metadata["upstream_port"] == moved.port
            assert "health check passed" in _run_health_check(client, again, provider)
    finally:
        moved.stop()


def test_without_its_upstream_the_app_serves_its_pages_and_says_where_the_upstream_is(
    demo: ModuleType, demo_app: Flask, upstream, tmp_path: Path
) -> None:
    loaded = demo.create_app(instance_path=str(tmp_path / "instance"))  # as `flask --app` loads it
    client = loaded.test_client()
    html = client.get("/").get_data(as_text=True)
    assert "Acme support desk" in html and "Not served by this process" in html
    assert client.post("/upstream/fail", data={"csrf_token": _csrf_token(client)}).status_code == 404
    upstream.stop()  # nothing listens where the integrations call
    assert "health check failed (ConnectError" in _run_health_check(client, loaded, "weather")


def _flask(*args: str, instance: Path) -> subprocess.CompletedProcess:
    """`flask --app examples/demo_app ARGS` from the repository root, on its own instance folder."""
    env = {key: value for key, value in os.environ.items() if key != "FLASK_APP"}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "examples/demo_app", *args],
        cwd=ROOT,
        env={**env, "DEMO_INSTANCE_PATH": str(instance)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_the_flask_command_loads_the_demo_from_the_repository_root(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    listed = _flask("integrations", "list", instance=instance)
    assert listed.returncode == 0, listed.stderr
    assert "Weather (demo)" in listed.stdout and "Acme support desk" in listed.stdout
    assert (instance / "demo.db").exists()
    health = _flask("integrations", "health", instance=instance)
    assert health.returncode == 0, health.stderr


@pytest.mark.slow
def test_the_flask_command_checks_the_upstream_of_a_running_demo(demo, demo_app, upstream, tmp_path) -> None:
    instance = tmp_path / "instance"  # the instance `demo_app` seeded, pointed at `upstream`
    checked = _flask("integrations", "test", instance=instance)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("health check passed") == 2
    upstream.stop()  # the demo is not running: the checks fail, and say why
    failed = _flask("integrations", "test", instance=instance)
    assert failed.returncode == 1
    assert "ConnectError" in failed.stdout and "2 health check(s) failed" in failed.stderr
