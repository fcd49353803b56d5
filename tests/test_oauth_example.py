"""examples/oauth_demo.py works as its docstring says: connect, call, refresh, disconnect."""

from __future__ import annotations

import importlib.util
import re
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
