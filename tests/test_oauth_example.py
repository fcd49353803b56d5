"""examples/oauth_demo.py works as its docstring says: connect, call, refresh, disconnect."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from types import ModuleType
from urllib.parse import urlparse

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask

ROOT = Path(__file__).resolve().parents[1]
DEMO_PATH = ROOT / "examples" / "oauth_demo.py"


@pytest.fixture(scope="module")
def demo() -> ModuleType:
    if "oauth_demo" not in sys.modules:
        spec = importlib.util.spec_from_file_location("oauth_demo", DEMO_PATH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["oauth_demo"] = module
        spec.loader.exec_module(module)
    return sys.modules["oauth_demo"]


@pytest.fixture
def server(demo: ModuleType) -> Iterator:
    # Tokens live 20 s and the provider refreshes 25 s before expiry: every call refreshes first.
    auth = demo.FakeAuthServer(port=0, token_lifetime=20).start()
    yield auth
    auth.stop()


@pytest.fixture
def demo_app(demo: ModuleType, server, tmp_path: Path) -> Iterator[Flask]:
    app = demo.create_app(server, instance_path=str(tmp_path / "instance"))
    yield app
    with app.app_context():
        demo.db.session.remove()
        demo.db.engine.dispose()


def form_fields(page: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', page)}


def test_connect_call_refresh_and_disconnect(demo, server, demo_app):
    client = demo_app.test_client()
    home = client.get("/").get_data(as_text=True)
    assert "Not connected." in home
    connect = re.search(r'href="([^"]+/oauth/authorize)"', home).group(1)

    to_provider = client.get(connect)
    assert to_provider.status_code == 302 and to_provider.headers["Location"].startswith(server.url)
    with httpx.Client(trust_env=False) as browser:
        consent = browser.get(to_provider.headers["Location"])
        assert consent.status_code == 200 and "wants to read your profile" in consent.text
        answer = browser.post(
            f"{server.url}/authorize", data={**form_fields(consent.text), "decision": "allow"}
        )
    assert answer.status_code == 302
    callback = urlparse(answer.headers["Location"])
    back = client.get(f"{callback.path}?{callback.query}")
    assert back.status_code == 302 and back.headers["Location"] == "/"

    with demo_app.app_context():
        integration = demo.the_integration()
        credentials = integration.credentials_dict()
        raw = demo.db.session.execute(sa.text("SELECT credentials FROM integrations")).scalar()
        assert credentials["access_token"].startswith("demo-at-") and credentials["access_token"] not in raw
        assert credentials["refresh_token"] not in raw

    home = client.get("/").get_data(as_text=True)
    assert "Connected." in home and credentials["access_token"] not in home
    call_form = re.search(r'action="/call">\s*<input[^>]+value="([^"]+)"', home)
    called = client.post("/call", data={"csrf_token": call_form.group(1)}, follow_redirects=True)
    assert "The API answered: Ada Lovelace" in called.get_data(as_text=True)
    assert server.refreshes == 1  # the 20 s token was within the 25 s refresh threshold
    with demo_app.app_context():
        integration = demo.the_integration()
        assert integration.provider_instance.health_check(integration) is True  # a call with the token
    assert server.refreshes == 2

    revoke_form = re.search(r'action="([^"]+/oauth/revoke)">\s*<input[^>]+value="([^"]+)"', home)
    gone = client.post(revoke_form.group(1), data={"csrf_token": revoke_form.group(2)})
    assert gone.status_code == 303 and server.revocations == 1
    assert "Not connected." in client.get("/").get_data(as_text=True)
    with demo_app.app_context():
        assert set(demo.the_integration().credentials_dict()) == {"client_id", "client_secret"}


def test_denied_consent_is_explained(demo, server, demo_app):
    client = demo_app.test_client()
    location = client.get("/integrations/1/oauth/authorize").headers["Location"]
    with httpx.Client(trust_env=False) as browser:
        fields = form_fields(browser.get(location).text)
        answer = browser.post(f"{server.url}/authorize", data={**fields, "decision": "deny"})
    callback = urlparse(answer.headers["Location"])
    page = client.get(f"{callback.path}?{callback.query}")
    assert page.status_code == 400 and "access_denied" in page.get_data(as_text=True)


#: Ports Chromium refuses to open (net/base/port_util.cc); Firefox refuses these too.
BROWSER_RESTRICTED_PORTS = {
    *(1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95),
    *(101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179),
    *(389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601),
    *(636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566),
    *(6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080),
}


def test_the_default_ports_are_ones_browsers_open(demo):
    assert {demo.DEFAULT_PORT, demo.DEFAULT_AUTH_PORT}.isdisjoint(BROWSER_RESTRICTED_PORTS)
    assert f"open http://127.0.0.1:{demo.DEFAULT_PORT}/" in demo.__doc__
    assert f"on 127.0.0.1:{demo.DEFAULT_AUTH_PORT}" in demo.__doc__


@pytest.mark.slow
def test_the_flask_command_loads_the_demo_from_the_repository_root(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "FLASK_APP"}
    listed = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "examples/oauth_demo", "integrations", "list"],
        cwd=ROOT,
        env={**env, "DEMO_INSTANCE_PATH": str(tmp_path / "instance")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "Demo profile" in listed.stdout
    assert (tmp_path / "instance" / "oauth_demo.db").exists()
