"""A real HTTP server on 127.0.0.1 that answers what a test asks for.

Paths: `/json` echoes the request as JSON; `/status/<code>` answers that status
(with `?retry_after=N` for a Retry-After header); `/slow?delay=S` waits;
`/drop` closes the connection without answering; `/empty` answers 204.
`server.script(path, [(status, body, headers), ...])` queues answers for a path
(each request takes the next one; "drop" drops). `server.requests` records
every request (method, path, query, headers, body).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict, deque
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.helpers.servers import LoopbackHTTPServer, QuietHandler


class _Handler(QuietHandler):
    server: UpstreamServer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parsed = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        record = {
            "method": self.command,
            "path": parsed.path,
            "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        self.server.record(record)
        answer = self.server.next_scripted(parsed.path)
        if answer is None:
            answer = self._builtin(parsed.path, query, record)
        if answer == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, payload, headers = answer
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        if not isinstance(payload, bytes):
            self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _builtin(self, path: str, query: dict[str, str], record: dict[str, Any]) -> Any:
        if path == "/drop":
            return "drop"
        if path == "/empty":
            return (204, b"", {})
        if path == "/slow":
            time.sleep(float(query.get("delay", "1")))
            return (200, {"slow": True}, {})
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            headers = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
            return (status, {"status": status}, headers)
        if path == "/text":
            return (200, b"plain text", {"Content-Type": "text/plain"})
        return (
            200,
            {
                "method": record["method"],
                "path": path,
                "query": record["query"],
                "body": record["body"],
                "headers": record["headers"],
            },
            {"X-Request-Id": "req-1"},
        )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class UpstreamServer(LoopbackHTTPServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self._lock = threading.Lock()
        self._scripts: dict[str, deque] = defaultdict(deque)
        self.requests: list[dict[str, Any]] = []

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()

    def record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def script(self, path: str, answers: list[Any]) -> None:
        """Queue answers for `path`: (status, body, headers), (status, body), or "drop"."""
        with self._lock:
            for answer in answers:
                if answer != "drop" and len(answer) == 2:
                    answer = (*answer, {})
                self._scripts[path].append(answer)

    def next_scripted(self, path: str) -> Any:
        with self._lock:
            queue = self._scripts.get(path)
            return queue.popleft() if queue else None

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r["path"] == path)
