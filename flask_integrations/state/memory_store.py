"""The embedded mode's shared state: process memory (see store.py for the primitives)."""

from __future__ import annotations

import threading
import uuid
from bisect import bisect_right, insort
from collections.abc import Callable, Mapping
from typing import Any

from .store import Store


class MemoryStore(Store):
    """Process-local state for the embedded mode: one dict behind one lock.

    Expired keys are dropped when read and swept at most once a minute on writes.
    """

    shared = False

    def __init__(self, clock: Callable[[], float] | None = None):
        super().__init__(clock)
        self._data: dict[str, Any] = {}
        self._expires: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def __repr__(self) -> str:
        return f"<MemoryStore keys={len(self._data)}>"

    @property
    def _guard(self) -> threading.Lock:
        return self._lock

    def after_fork(self) -> bool:
        """A forked child keeps the data it inherited; the parent's lock may have been held at fork time."""
        self._lock = threading.Lock()
        return super().after_fork()

    def _live(self, key: str, now: float) -> Any:
        expires = self._expires.get(key)
        if expires is not None and expires <= now:
            self._data.pop(key, None)
            self._expires.pop(key, None)
            return None
        return self._data.get(key)

    def _put(self, key: str, value: Any, ttl: float | None, now: float) -> None:
        self._data[key] = value
        if ttl is None:
            self._expires.pop(key, None)
        else:
            self._expires[key] = now + ttl
        if now >= self._next_sweep:
            self._next_sweep = now + 60
            for expired in [k for k, at in self._expires.items() if at <= now]:
                self._data.pop(expired, None)
                self._expires.pop(expired, None)

    def get(self, key: str) -> str | None:
        with self._guard:
            return self._live(key, self.clock())

    def get_many(self, keys: list[str]) -> list[str | None]:
        with self._guard:
            now = self.clock()
            return [self._live(key, now) for key in keys]

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        with self._guard:
            self._put(key, value, ttl, self.clock())

    def set_if_absent(self, key: str, value: str, ttl: float) -> bool:
        with self._guard:
            now = self.clock()
            if self._live(key, now) is not None:
                return False
            self._put(key, value, ttl, now)
            return True

    def set_max(self, key: str, value: float, ttl: float) -> float:
        with self._guard:
            now = self.clock()
            current = self._live(key, now)
            if current is not None and float(current) >= value:
                return float(current)
            self._put(key, repr(float(value)), ttl, now)
            return value

    def delete(self, *keys: str) -> int:
        with self._guard:
            now = self.clock()
            found = 0
            for key in keys:
                found += self._live(key, now) is not None
                self._data.pop(key, None)
                self._expires.pop(key, None)
            return found

    def delete_prefix(self, prefix: str) -> int:
        with self._guard:
            doomed = [key for key in self._data if key.startswith(prefix)]
            for key in doomed:
                self._data.pop(key, None)
                self._expires.pop(key, None)
            return len(doomed)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        with self._guard:
            now = self.clock()
            value = int(self._live(key, now) or 0) + amount
            self._put(key, str(value), ttl, now)
            return value

    def hash_incr(self, key: str, amounts: Mapping[str, int], ttl: float | None = None) -> None:
        with self._guard:
            now = self.clock()
            counters = self._live(key, now)
            if counters is None:
                counters = self._data[key] = {}
            for field, amount in amounts.items():
                counters[field] = counters.get(field, 0) + amount
            if ttl is not None:
                self._expires[key] = now + ttl

    def hash_get(self, key: str) -> dict[str, int]:
        with self._guard:
            return dict(self._live(key, self.clock()) or {})

    def hash_take(self, key: str) -> dict[str, int]:
        with self._guard:
            self._expires.pop(key, None)
            return self._data.pop(key, None) or {}

    def windows_acquire(self, windows: list[tuple[str, int, float]]) -> float:
        with self._guard:
            now = self.clock()
            logs = []
            wait = 0.0
            for key, limit, window in windows:
                stamps: list[float] = self._live(key, now) or []
                del stamps[: bisect_right(stamps, now - window)]
                if len(stamps) >= limit:
                    wait = max(wait, stamps[len(stamps) - limit] + window - now, 0.001)
                logs.append((key, stamps, window))
            if wait:
                return wait
            for key, stamps, window in logs:
                insort(stamps, now)
                self._put(key, stamps, window, now)
            return 0.0

    def acquire_lock(self, name: str, ttl: float) -> str | None:
        token = uuid.uuid4().hex
        return token if self.set_if_absent(name, token, ttl) else None

    def release_lock(self, name: str, token: str) -> bool:
        with self._guard:
            if self._live(name, self.clock()) != token:
                return False
            self._data.pop(name, None)
            self._expires.pop(name, None)
            return True
