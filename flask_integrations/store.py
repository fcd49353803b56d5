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
import logging
import math
import os
import threading
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .errors import IntegrationsError
from .store_tracking import TrackedReads

if TYPE_CHECKING:  # pragma: no cover
    import redis

    from .state import AppState

logger = logging.getLogger("flask_integrations")

P = ParamSpec("P")
T = TypeVar("T")

#: Seconds between two "Redis is unavailable" warnings of one store.
WARNING_INTERVAL = 60.0
#: After a connection failure, Redis is not tried again for this many seconds: a dead or
#: black-holed server must not cost every request a connect timeout.
RETRY_INTERVAL = 1.0


class StoreUnavailable(IntegrationsError):
    """The shared state store (Redis) could not be reached or refused a command."""


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

    @abstractmethod
    def get(self, key: str) -> str | None:
        """The value, or None when absent or expired."""

    @abstractmethod
    def get_many(self, keys: list[str]) -> list[str | None]:
        """Several values in one round trip."""

    def get_many_tracked(self, keys: list[str]) -> list[str | None]:
        """Like `get_many`, for hot keys read on every call: may be served from a local copy
        that any write, in any process, invalidates at once (see store_tracking.py)."""
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
    def hash_incr(self, key: str, amounts: Mapping[str, int]) -> None:
        """Add to counters held in one hash (one field per counter)."""

    @abstractmethod
    def hash_take(self, key: str) -> dict[str, int]:
        """Read a hash of counters and delete it, atomically: each count is taken by one caller."""

    @abstractmethod
    def window_acquire(self, key: str, limit: int, window: float) -> float:
        """Sliding window log: take a slot if fewer than `limit` were taken in the last `window` s.

        Returns 0.0 when a slot was taken, else the seconds until one frees (nothing is taken).
        """

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


# -- memory -----------------------------------------------------------------------------------


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
        self._pid = os.getpid()
        self._next_sweep = 0.0

    def __repr__(self) -> str:
        return f"<MemoryStore keys={len(self._data)}>"

    @property
    def _guard(self) -> threading.Lock:
        if self._pid != os.getpid():  # forked: the parent's lock may have been held at fork time
            self._lock = threading.Lock()
            self._pid = os.getpid()
        return self._lock

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

    def hash_incr(self, key: str, amounts: Mapping[str, int]) -> None:
        with self._guard:
            counters = self._live(key, self.clock())
            if counters is None:
                counters = self._data[key] = {}
            for field, amount in amounts.items():
                counters[field] = counters.get(field, 0) + amount

    def hash_take(self, key: str) -> dict[str, int]:
        with self._guard:
            self._expires.pop(key, None)
            return self._data.pop(key, None) or {}

    def window_acquire(self, key: str, limit: int, window: float) -> float:
        with self._guard:
            now = self.clock()
            stamps: list[float] = self._live(key, now) or []
            del stamps[: bisect_right(stamps, now - window)]
            if len(stamps) < limit:
                insort(stamps, now)
                self._put(key, stamps, window, now)
                return 0.0
            return max(stamps[len(stamps) - limit] + window - now, 0.001)

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


# -- Redis ------------------------------------------------------------------------------------

_SET_MAX = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= tonumber(ARGV[1]) then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""

_HASH_TAKE = """
local counters = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return counters
"""

# Sorted set of slot members scored by time; answers the wait as a string (Lua numbers
# returned to Redis are truncated to integers).
_WINDOW_ACQUIRE = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_SCRIPTS = {"set_max": _SET_MAX, "hash_take": _HASH_TAKE, "window": _WINDOW_ACQUIRE, "release": _RELEASE_LOCK}


def _ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class RedisStore(Store):
    """State in Redis, shared by every process; every key starts with `prefix`.

    Connect and socket timeouts default to 1 s and 2 s; the URL's query
    (``?socket_timeout=5``) overrides them. The client is created lazily and
    again in a forked child (pid check), never shared across a fork.
    """

    shared = True

    def __init__(self, url: str, prefix: str = "integrations:", clock: Callable[[], float] | None = None):
        super().__init__(clock)
        self.url = url
        self.prefix = prefix
        self._redis: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._pid = 0
        self._down_until = float("-inf")
        self._failing = False
        self._last_warning = float("-inf")
        self._warn_lock = threading.Lock()
        self._tracked: TrackedReads | None = None

    def __repr__(self) -> str:
        return f"<RedisStore {safe_url(self.url)} prefix={self.prefix!r}>"

    # -- connection and failure handling ---------------------------------------------------------

    def _client(self) -> redis.Redis:
        pid = os.getpid()
        if self._redis is None or self._pid != pid:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis.Redis.from_url(
                self.url,
                decode_responses=True,
                socket_connect_timeout=1.0,
                socket_timeout=2.0,
                retry=Retry(NoBackoff(), 1),
            )
            self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}
            self._redis, self._pid = client, pid
        return self._redis

    def _run(self, operation: Callable[[redis.Redis], T]) -> T:
        import redis

        if self.clock() < self._down_until:
            self._warn("Redis was unreachable less than a second ago")
            raise StoreUnavailable(f"Redis at {safe_url(self.url)} is unavailable")
        try:
            result = operation(self._client())
        except redis.RedisError as exc:
            if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                self._down_until = self.clock() + RETRY_INTERVAL
            self._warn(f"{type(exc).__name__}: {exc}")
            raise StoreUnavailable(f"Redis at {safe_url(self.url)} is unavailable: {exc}") from exc
        if self._failing:
            self._failing = False
            logger.info("flask-integrations: Redis at %s is reachable again.", safe_url(self.url))
        return result

    def _warn(self, reason: str) -> None:
        self._failing = True
        now = self.clock()
        with self._warn_lock:
            if self._last_warning <= now < self._last_warning + WARNING_INTERVAL:
                return
            self._last_warning = now
        logger.warning(
            "flask-integrations: Redis at %s is unavailable (%s); cache, circuit breaker and rate "
            "limiter fail open, locks fail closed. This warning repeats at most once a minute.",
            safe_url(self.url),
            reason,
        )

    def _k(self, key: str) -> str:
        return self.prefix + key

    def close(self) -> None:
        tracked, self._tracked = self._tracked, None
        if tracked is not None and tracked.pid == os.getpid():
            tracked.close()
        client, self._redis = self._redis, None
        if client is not None and self._pid == os.getpid():
            client.close()

    # -- primitives ----------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        return self._run(lambda r: r.get(self._k(key)))

    def get_many(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        return self._run(lambda r: r.mget([self._k(key) for key in keys]))

    def get_many_tracked(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        tracked = self._tracked_reads()
        return self._run(lambda r: tracked.get_many([self._k(key) for key in keys], r.mget))

    def _tracked_reads(self) -> TrackedReads:
        if self._tracked is None or self._tracked.pid != os.getpid():
            self._tracked = TrackedReads(self.url)
        return self._tracked

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._run(lambda r: r.set(self._k(key), value, px=None if ttl is None else _ms(ttl)))

    def set_if_absent(self, key: str, value: str, ttl: float) -> bool:
        return bool(self._run(lambda r: r.set(self._k(key), value, px=_ms(ttl), nx=True)))

    def set_max(self, key: str, value: float, ttl: float) -> float:
        args = [repr(float(value)), _ms(ttl)]
        return float(self._run(lambda r: self._scripts["set_max"](keys=[self._k(key)], args=args)))

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return self._run(lambda r: r.delete(*(self._k(key) for key in keys)))

    def delete_prefix(self, prefix: str) -> int:
        def work(r: redis.Redis) -> int:
            deleted = 0
            batch: list[str] = []
            for key in r.scan_iter(match=_glob_escape(self._k(prefix)) + "*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += r.unlink(*batch)
                    batch = []
            if batch:
                deleted += r.unlink(*batch)
            return deleted

        return self._run(work)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        def work(r: redis.Redis) -> int:
            pipe = r.pipeline(transaction=True)
            pipe.incrby(self._k(key), amount)
            if ttl is not None:
                pipe.pexpire(self._k(key), _ms(ttl))
            return int(pipe.execute()[0])

        return self._run(work)

    def hash_incr(self, key: str, amounts: Mapping[str, int]) -> None:
        if not amounts:
            return

        def work(r: redis.Redis) -> None:
            if len(amounts) == 1:
                ((field, amount),) = amounts.items()
                r.hincrby(self._k(key), field, amount)
                return
            pipe = r.pipeline(transaction=True)
            for field, amount in amounts.items():
                pipe.hincrby(self._k(key), field, amount)
            pipe.execute()

        self._run(work)

    def hash_take(self, key: str) -> dict[str, int]:
        flat = self._run(lambda r: self._scripts["hash_take"](keys=[self._k(key)]))
        return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}

    def window_acquire(self, key: str, limit: int, window: float) -> float:
        now = self.clock()
        args = [repr(now), repr(float(window)), int(limit), f"{now:.6f}:{uuid.uuid4().hex[:12]}"]
        wait = self._run(lambda r: self._scripts["window"](keys=[self._k(key)], args=args))
        return max(float(wait), 0.001) if wait != "0" else 0.0

    def acquire_lock(self, name: str, ttl: float) -> str | None:
        token = uuid.uuid4().hex
        return token if self.set_if_absent(name, token, ttl) else None

    def release_lock(self, name: str, token: str) -> bool:
        return bool(self._run(lambda r: self._scripts["release"](keys=[self._k(name)], args=[token])))


# -- one store per app per process -------------------------------------------------------------

_stores: weakref.WeakKeyDictionary[AppState, Store] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def _reset_lock_after_fork() -> None:
    global _stores_lock
    _stores_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_after_fork)


def create_store(redis_url: str | None, prefix: str = "integrations:") -> Store:
    """A Redis store for a URL, else a memory store (the embedded mode)."""
    if redis_url:
        return RedisStore(redis_url, prefix)
    return MemoryStore()


def import_redis_clients() -> None:
    """Import redis and rq now, while the app is being set up in one thread.

    Both are imported on first use so that the embedded mode never pays their
    0.3 s. But imported for the first time by several request threads at once
    (gunicorn --threads), their circular imports can fail with importlib's
    `_DeadlockError`; the Redis mode imports them at `init_app` instead.
    """
    import redis  # noqa: F401
    import rq  # noqa: F401


def get_store(state: AppState) -> Store:
    """The store of an app in this process, created on first use.

    A forked child keeps the parent's store object, whose Redis client is
    recreated on first use in the child (memory state is copied by the fork).
    """
    store = _stores.get(state)
    if store is None:
        with _stores_lock:
            store = _stores.get(state)
            if store is None:
                store = create_store(state.setting("REDIS_URL"), state.setting("REDIS_PREFIX"))
                _stores[state] = store
    return store


def drop_stores(states: Iterable[AppState] | None = None) -> None:
    """Forget the stores of some apps (all when None), closing their connections; for tests."""
    with _stores_lock:
        for state in list(_stores) if states is None else list(states):
            store = _stores.pop(state, None)
            if store is not None:
                store.close()
