"""Live server and headless Chromium for the dashboard's browser tests.

- `LiveServer(app)`: the app behind werkzeug's threaded `make_server` on 127.0.0.1 (a free port),
  served from a daemon thread, as a real deployment serves it (embedded-mode jobs run after
  each response is sent). Exceptions the app raises while serving are collected in `errors`.
- `launch_chromium(playwright)`: Debian's `/usr/bin/chromium` (or `INTEGRATIONS_TEST_CHROMIUM`)
  driven headless through the `playwright` package; `playwright install` is never needed.
- `require_browser()`: skips with the reason when Chromium or playwright is missing, or fails
  when `INTEGRATIONS_TEST_REQUIRE_SERVERS=1` (as CI sets), like the other server fixtures.
- `screenshot_dir()`: `$INTEGRATIONS_TEST_ARTIFACTS/screenshots`, default
  `test-artifacts/screenshots/` at the repository root.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, got_request_exception
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.helpers.app import REQUIRE_SERVERS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("INTEGRATIONS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    path = CHROMIUM if os.path.isabs(CHROMIUM) else shutil.which(CHROMIUM)
    if not path or not os.access(path, os.X_OK):
        return f"Chromium is not installed at {CHROMIUM} (`apt-get install chromium`; `bash .ci/run` does it)"
    return None


def require_browser() -> None:
    reason = browser_missing()
    if reason is None:
        return
    if REQUIRE_SERVERS:
        pytest.fail(reason)
    pytest.skip(reason)


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def screenshot_dir() -> Path:
    base = os.environ.get("INTEGRATIONS_TEST_ARTIFACTS")
    path = (Path(base) if base else ROOT / "test-artifacts") / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return


class LiveServer:
    """`app` on a real socket, in a thread; `url` is its root, `errors` what the app raised."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.errors: list[BaseException] = []
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)
        got_request_exception.connect(self._record, app)

    def _record(self, sender: Flask, exception: BaseException, **extra: Any) -> None:
        self.errors.append(exception)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        got_request_exception.disconnect(self._record, self.app)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def eventually(check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.2) -> bool:
    """Poll `check` until it is true or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
