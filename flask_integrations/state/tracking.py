"""Local copies of the keys every call reads, dropped the moment any process writes them.

Before each attempt the pipeline reads the breaker's and the limiter's keys.
Nearly always they say "all clear" and nearly never change, yet reading them
costs a Redis round trip per attempt. This module keeps a copy of the values
it read and relies on Redis's server-assisted client-side caching to forget
them: a reader connection runs ``CLIENT TRACKING ON REDIRECT <listener>``, so
Redis remembers which keys it read and, when any client writes, expires or
flushes one of them, sends the key's name to the listener connection
(subscribed to ``__redis__:invalidate``), whose thread drops the copy. Redis
7.0 (Debian 12) is enough: RESP2 with a redirect, not redis-py's own client
cache, which needs Redis 7.4.

Freshness: a write by another process is seen as soon as its invalidation
message is read, normally well under a millisecond. A read that races a write
is not kept (a generation counter), and no copy is older than `MAX_AGE`
seconds, in case a message is lost with a half-dead connection. While the
listener is not connected, every read goes to Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

logger = logging.getLogger("flask_integrations")

INVALIDATE_CHANNEL = "__redis__:invalidate"
#: Oldest local copy served, in seconds: a bound if an invalidation message is ever lost.
MAX_AGE = 1.0
#: More copies than this and they are all forgotten (keys of integrations long unused).
MAX_COPIES = 50_000
#: Seconds between two attempts to connect the listener after a failure.
RECONNECT_DELAY = 1.0
#: How long the listener blocks on its socket before it checks whether it should stop.
POLL = 1.0


class TrackedReads:
    """Reads through a tracked connection; serves repeated reads from local copies."""

    def __init__(self, url: str):
        self.url = url
        self.lock = threading.Lock()
        self.copies: dict[str, tuple[str | None, float]] = {}
        self.generation = 0
        self.reader: Any = None  # the tracked connection, used under `reader_lock`
        self.reader_lock = threading.Lock()
        self.listener_id: int | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._listen, name="flask-integrations-tracking", daemon=True)
        self.thread.start()

    def __repr__(self) -> str:
        return f"<TrackedReads copies={len(self.copies)} live={self.listener_id is not None}>"

    def get_many(self, keys: list[str], fetch: Any) -> list[str | None]:
        """Values of `keys` (full Redis keys): local copies when fresh, else one MGET.

        `fetch(keys)` is the plain read used while tracking is not available.
        """
        now = time.monotonic()
        with self.lock:
            found = [self.copies.get(key) for key in keys]
            if all(entry is not None and now - entry[1] < MAX_AGE for entry in found):
                return [entry[0] for entry in found]  # type: ignore[index]
            generation, listening = self.generation, self.listener_id
        if listening is None:
            return fetch(keys)
        values = self._tracked_mget(keys, listening)
        if values is None:
            return fetch(keys)
        with self.lock:
            if len(self.copies) > MAX_COPIES:
                self.copies.clear()
            if self.generation == generation:  # no invalidation arrived while we read
                for key, value in zip(keys, values, strict=True):
                    self.copies[key] = (value, now)
        return values

    def close(self) -> None:
        self.stopped.set()
        self._forget_all()

    # -- the tracked reader ---------------------------------------------------------------

    def _tracked_mget(self, keys: list[str], listener_id: int) -> list[str | None] | None:
        with self.reader_lock:
            try:
                if self.reader is None:
                    self.reader = self._connect()
                    self._command(self.reader, "CLIENT", "TRACKING", "ON", "REDIRECT", listener_id)
                return self._command(self.reader, "MGET", *keys)
            except Exception:  # noqa: BLE001 - the caller falls back to a plain read
                self._drop_reader()
                return None

    def _drop_reader(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            try:
                reader.disconnect()
            except Exception:  # noqa: BLE001
                logger.debug("flask-integrations: closing the tracked Redis connection failed")

    def _connect(self) -> Any:
        import redis

        pool = redis.ConnectionPool.from_url(
            self.url, decode_responses=True, protocol=2, socket_connect_timeout=1.0, socket_timeout=2.0
        )
        connection = pool.make_connection()
        connection.connect()
        return connection

    @staticmethod
    def _command(connection: Any, *args: Any) -> Any:
        connection.send_command(*args)
        return connection.read_response()

    # -- the listener thread --------------------------------------------------------------

    def _listen(self) -> None:
        while not self.stopped.is_set():
            connection = None
            try:
                connection = self._connect()
                listener_id = self._command(connection, "CLIENT", "ID")
                self._command(connection, "SUBSCRIBE", INVALIDATE_CHANNEL)
                with self.lock:
                    self.listener_id = listener_id
                self._receive(connection)
            except Exception as exc:  # noqa: BLE001 - reconnect; reads go to Redis meanwhile
                logger.debug("flask-integrations: Redis invalidation listener stopped: %s", exc)
            finally:
                self._forget_all()
                if connection is not None:
                    connection.disconnect()
            self.stopped.wait(RECONNECT_DELAY)

    def _receive(self, connection: Any) -> None:
        while not self.stopped.is_set():
            if not connection.can_read(timeout=POLL):
                continue
            message = connection.read_response()
            if isinstance(message, list) and len(message) == 3 and message[0] == "message":
                self._invalidate(message[2])

    def _invalidate(self, keys: list[str] | None) -> None:
        with self.lock:
            self.generation += 1
            if keys is None:  # FLUSHDB / FLUSHALL
                self.copies.clear()
            else:
                for key in keys:
                    self.copies.pop(key, None)

    def _forget_all(self) -> None:
        """The listener is gone: no copy can be trusted, and the reader's tracking points nowhere."""
        with self.lock:
            self.listener_id = None
            self.generation += 1
            self.copies.clear()
        with self.reader_lock:
            self._drop_reader()
