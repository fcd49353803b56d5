"""Shared state: Redis when `INTEGRATIONS_REDIS_URL` is set, process memory otherwise.

The cache, the circuit breaker and the rate limiter keep their state here, so
that every web and worker process sees the same counts. A `Store` offers a few
plain primitives on string values (get/set with a TTL, set-if-absent, counters,
a hash of counters, a sliding window and a token lock); the pipeline modules
build their rules on top of them and never talk to Redis directly.

Failure policy. Every primitive raises `StoreUnavailable` when Redis cannot be
reached or refuses a command, after logging one warning per minute on the
``flask_integrations`` logger. The cache, breaker and limiter catch it and
*fail open* (miss, closed, allowed: see `fail_open`); the lock primitives let
it propagate, so a lock *fails closed*: a caller never proceeds as if it held a
lock it could not take.

Times are wall-clock seconds from `store.clock` (``time.time`` by default), sent
by the client, so the memory and Redis stores behave alike and tests can move
time. Processes sharing one Redis are assumed to have NTP-synchronised clocks.
"""

from __future__ import annotations

import functools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from ..errors import StoreUnavailable
from .forks import forget_after_fork

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["Store", "StoreUnavailable", "fail_open", "import_redis_clients"]


def fail_open(default: T) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Make a store-backed operation return `default` instead of raising `StoreUnavailable`.

    The store has already logged the (rate-limited) warning; a cache, breaker or
    limiter must never turn a Redis outage into a failed request.
    """

    def decorate(function: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return function(*args, **kwargs)
            except StoreUnavailable:
                return default

        return wrapper

    return decorate


class Store(ABC):
    """The primitives shared state is built from. Keys are plain strings; values are strings.

    TTLs are seconds (floats allowed, millisecond precision). `shared` tells
    whether other processes see the same state (True for Redis).
    """

    shared: bool = False

    def __init__(self, clock: Callable[[], float] | None = None):
        self.clock: Callable[[], float] = clock or time.time
        self._local: dict[str, Any] = {}
        self._local_lock = threading.Lock()
        forget_after_fork(self)

    def process_local(self, name: str, make: Callable[[], T]) -> T:
        """What a module built on this store remembers in this process between calls (the
        breaker's probe tokens, say): made by `make()` on first use, never shared, and
        forgotten in a forked child."""
        found = self._local.get(name)
        if found is None:
            with self._local_lock:
                found = self._local.setdefault(name, make())
        return found

    def after_fork(self) -> bool:
        """In a forked child: forget what this process remembered and any connection; keep the store."""
        self._local = {}
        self._local_lock = threading.Lock()
        return True

    @abstractmethod
    def get(self, key: str) -> str | None:
        """The value, or None when absent or expired."""

    @abstractmethod
    def get_many(self, keys: list[str]) -> list[str | None]:
        """Several values in one round trip."""

    def get_many_tracked(self, keys: list[str]) -> list[str | None]:
        """Like `get_many`, for hot keys read on every call: may be served from a local copy
        that any write, in any process, invalidates at once (see tracking.py)."""
        return self.get_many(keys)

    @abstractmethod
    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store a value, replacing any; `ttl` None keeps it until deleted."""

    @abstractmethod
    def set_if_absent(self, key: str, value: str, ttl: float) -> bool:
        """Store the value only if the key is absent; True when this call stored it."""

    @abstractmethod
    def set_max(self, key: str, value: float, ttl: float) -> float:
        """Keep the larger of the stored number and `value` (the TTL is set when `value` wins)."""

    @abstractmethod
    def delete(self, *keys: str) -> int:
        """Remove keys; returns how many existed."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with `prefix`; returns how many. Not atomic, meant for rare use."""

    @abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add to a counter (absent = 0) and return the new value; `ttl` is refreshed on each call."""

    @abstractmethod
    def hash_incr(self, key: str, amounts: Mapping[str, int], ttl: float | None = None) -> None:
        """Add to counters held in one hash (one field per counter); `ttl` is refreshed when given."""

    @abstractmethod
    def hash_get(self, key: str) -> dict[str, int]:
        """Read a hash of counters (empty when absent), leaving it in place."""

    @abstractmethod
    def hash_take(self, key: str) -> dict[str, int]:
        """Read a hash of counters and delete it, atomically: each count is taken by one caller."""

    def window_acquire(self, key: str, limit: int, window: float) -> float:
        """Sliding window log: take a slot if fewer than `limit` were taken in the last `window` s.

        Returns 0.0 when a slot was taken, else the seconds until one frees (nothing is taken).
        """
        return self.windows_acquire([(key, limit, window)])

    @abstractmethod
    def windows_acquire(self, windows: list[tuple[str, int, float]]) -> float:
        """Several sliding windows (key, limit, seconds) at once: a slot is taken in every one of
        them, atomically, only when each has room. Returns 0.0 when taken, else the seconds until
        every full window has a free slot (nothing is taken in any)."""

    @abstractmethod
    def acquire_lock(self, name: str, ttl: float) -> str | None:
        """Take the lock `name` for at most `ttl` seconds: a token, or None when someone holds it.

        Fails closed: raises `StoreUnavailable` when Redis cannot be reached. In the
        memory store the lock serialises the threads of this process only.
        """

    @abstractmethod
    def release_lock(self, name: str, token: str) -> bool:
        """Release the lock if `token` still holds it (it may have expired and been retaken)."""

    def close(self) -> None:  # noqa: B027 - a no-op unless the store holds connections
        """Drop connections (the store stays usable and reconnects on demand)."""


def import_redis_clients() -> None:
    """Import redis and rq now, while the app is being set up in one thread.

    Both are imported on first use so that the embedded mode never pays their
    0.3 s. But imported for the first time by several request threads at once
    (gunicorn --threads), their circular imports can fail with importlib's
    `_DeadlockError`; the Redis mode imports them at `init_app` instead.
    """
    import redis  # noqa: F401
    import rq  # noqa: F401
