"""What the tests' loopback servers share: 127.0.0.1 on a free port, served from a daemon thread.

- `LoopbackServer`: mixed in ahead of a `socketserver` server class bound to 127.0.0.1; gives it
  `url`, `start()` (serves from a daemon thread, returns the server) and `stop()` (shutdown,
  close, join the thread). `LiveServer` (browser.py) mixes it into werkzeug's threaded WSGI server.
- `LoopbackHTTPServer`: a `ThreadingHTTPServer` on 127.0.0.1 port 0 (daemon request threads,
  reuse address) with `LoopbackServer`'s methods: the base of `UpstreamServer` (upstream.py) and
  `AuthServer` (oauth.py).
- `QuietHandler`: the base of their `http.server` handlers: HTTP/1.1 (keep-alive), no Nagle delay
  (without it every small answer waits ~40 ms for the client's delayed ACK), no access log.
- `free_port()`: a port nothing listens on now, for servers that a test starts in another process.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class LoopbackServer:
    """`url`, `start()` and `stop()` for a `socketserver` server bound to 127.0.0.1."""

    #: the serving thread's name (None: threading's default)
    thread_name: str | None = None

    server_address: Any
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Say nothing when the client hung up (a test's timeout); print anything else as usual.

        Besides the noise, a traceback printed from a request thread runs `ast.parse` (3.11's caret
        lines), which on CPython 3.11.7 can race the main thread's and fail an unrelated test with
        "AST constructor recursion depth mismatch" (python/cpython#106905).
        """
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)  # type: ignore[misc]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(10)


class LoopbackHTTPServer(LoopbackServer, ThreadingHTTPServer):
    """A threading `http.server` on 127.0.0.1 port 0 whose requests `handler` answers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__((HOST, 0), handler)


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, no Nagle delay, no access log."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return
