"""Live server and headless Chromium for the dashboard's browser tests.

- `LiveServer(app)`: the app behind werkzeug's threaded WSGI server on 127.0.0.1 (a free port),
  served from a daemon thread (a `LoopbackServer`, servers.py), as a real deployment serves it
  (embedded-mode jobs run after each response is sent). Exceptions the app raises while serving
  are collected in `errors`.
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
from pathlib import Path
from typing import Any

from flask import Flask, got_request_exception
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from tests.helpers.app import ROOT, skip_or_fail
from tests.helpers.servers import HOST, LoopbackServer

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
    if reason is not None:
        skip_or_fail(reason)


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


class LiveServer(LoopbackServer, ThreadedWSGIServer):
    """`app` on a real socket, in a thread; `url` is its root, `errors` what the app raised.

    The server `make_server(HOST, 0, app, threaded=True, request_handler=_QuietHandler)` builds.
    """

    thread_name = "live-server"

    def __init__(self, app: Flask) -> None:
        super().__init__(HOST, 0, app, _QuietHandler)
        self.errors: list[BaseException] = []
        got_request_exception.connect(self._record, app)

    def _record(self, sender: Flask, exception: BaseException, **extra: Any) -> None:
        self.errors.append(exception)

    def stop(self) -> None:
        got_request_exception.disconnect(self._record, self.app)
        super().stop()
