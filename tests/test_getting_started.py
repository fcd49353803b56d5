"""docs/getting-started.md followed as written, in an empty directory: the stand-in API, app.py,
the key, `flask db init`, publish-migrations, upgrade, install; then `flask run --debug`, the
app's call and the dashboard showing both logged calls (and never the API key)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "getting-started.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)

pytestmark = pytest.mark.slow


def blocks() -> list[tuple[str, str, str]]:
    return [(lang, tag.strip(), code) for lang, tag, code in BLOCK.findall(PAGE.read_text())]


def wait_for(url: str, seconds: float = 20) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_page_has_one_app_and_the_steps_in_order():
    python = [code for lang, tag, code in blocks() if lang == "python" and tag != "fragment"]
    assert len(python) == 1 and "Save as `app.py`" in PAGE.read_text()
    commands = "\n".join(code for lang, tag, code in blocks() if lang == "bash" and tag != "fragment")
    order = [
        "http.server",
        "INTEGRATIONS_KEY",
        "db init",
        "publish-migrations",
        "db upgrade",
        "install local",
    ]
    assert [commands.index(step) for step in order] == sorted(commands.index(step) for step in order)


def test_following_getting_started_ends_on_a_dashboard_with_the_first_logged_call(tmp_path):
    api_port, app_port = free_port(), free_port()
    (tmp_path / "app.py").write_text(
        next(code for lang, tag, code in blocks() if lang == "python" and tag != "fragment")
    )
    steps = [code for lang, tag, code in blocks() if lang == "bash" and tag != "fragment"]
    steps = [step for step in steps if step.strip() != "kill %1"]  # the API serves the app's run below
    script = "set -euo pipefail\n" + "\n".join(steps).replace("8000", str(api_port))
    script += '\necho "INTEGRATIONS_KEY=$INTEGRATIONS_KEY" > key.env\n'
    env = {**os.environ, "LOCAL_API_URL": f"http://127.0.0.1:{api_port}", "PATH": os.environ["PATH"]}
    env.pop("FLASK_APP", None)
    server = None
    try:
        done = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Created integration 1 (local, 'Local API'); health check passed." in done.stdout
        env["INTEGRATIONS_KEY"] = (tmp_path / "key.env").read_text().strip().split("=", 1)[1]
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "app",
                "run",
                "--debug",
                "--no-reload",
                "--port",
                str(app_port),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{app_port}"
        assert wait_for(f"{base}/profile").json() == {"login": "acme", "plan": "pro"}
        dashboard = httpx.get(f"{base}/integrations/dashboard/", timeout=10)
        assert dashboard.status_code == 200 and "Local API" in dashboard.text
        page = httpx.get(f"{base}/integrations/dashboard/integrations/1", timeout=10).text
        assert "/me.json" in page and "demo-key" not in page
        listed = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "integrations", "list"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0 and "Local API" in listed.stdout, listed.stderr
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        subprocess.run(["pkill", "-f", f"http.server {api_port}"], check=False)
