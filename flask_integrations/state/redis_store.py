"""Shared state in Redis, for every web and worker process (see store.py for the primitives)."""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreUnavailable
from .store import Store
from .tracking import TrackedReads

if TYPE_CHECKING:  # pragma: no cover
    import redis

logger = logging.getLogger("flask_integrations")

T = TypeVar("T")

#: Seconds between two "Redis is unavailable" warnings of one store.
WARNING_INTERVAL = 60.0
#: After a connection failure, Redis is not tried again for this many seconds: a dead or
#: black-holed server must not cost every request a connect timeout.
RETRY_INTERVAL = 1.0

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

# One sorted set of slot members scored by time per window (KEYS[i], with ARGV limit and
# window pairs after now and the member): every window is checked before any takes a slot.
# Answers the wait as a string (Lua numbers returned to Redis are truncated to integers).
_WINDOWS_ACQUIRE = """
local now, member = tonumber(ARGV[1]), ARGV[2]
local wait = 0
for i, key in ipairs(KEYS) do
  local limit, window = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[2 + 2 * i]) * 1000))
end
return '0'
"""

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_SCRIPTS = {
    "set_max": _SET_MAX,
    "hash_take": _HASH_TAKE,
    "windows": _WINDOWS_ACQUIRE,
    "release": _RELEASE_LOCK,
}


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
    again in a forked child, never shared across a fork.
    """

    shared = True

    def __init__(self, url: str, prefix: str = "integrations:", clock: Callable[[], float] | None = None):
        super().__init__(clock)
        self.url = url
        self.prefix = prefix
        self._redis: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._down_until = float("-inf")
        self._failing = False
        self._last_warning = float("-inf")
        self._warn_lock = threading.Lock()
        self._tracked: TrackedReads | None = None

    def __repr__(self) -> str:
        return f"<RedisStore {safe_url(self.url)} prefix={self.prefix!r}>"

    # -- connection and failure handling ---------------------------------------------------------

    def _client(self) -> redis.Redis:
        if self._redis is None:
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
            self._redis = client
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
        if tracked is not None:
            tracked.close()
        client, self._redis = self._redis, None
        if client is not None:
            client.close()

    def after_fork(self) -> bool:
        """The parent's client and invalidation listener stay the parent's: connect anew on first use."""
        self._redis, self._tracked = None, None
        self._warn_lock = threading.Lock()
        return super().after_fork()

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
        if self._tracked is None:
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

    def hash_incr(self, key: str, amounts: Mapping[str, int], ttl: float | None = None) -> None:
        if not amounts:
            return

        def work(r: redis.Redis) -> None:
            if len(amounts) == 1 and ttl is None:
                ((field, amount),) = amounts.items()
                r.hincrby(self._k(key), field, amount)
                return
            pipe = r.pipeline(transaction=True)
            for field, amount in amounts.items():
                pipe.hincrby(self._k(key), field, amount)
            if ttl is not None:
                pipe.pexpire(self._k(key), _ms(ttl))
            pipe.execute()

        self._run(work)

    def hash_get(self, key: str) -> dict[str, int]:
        return {field: int(value) for field, value in self._run(lambda r: r.hgetall(self._k(key))).items()}

    def hash_take(self, key: str) -> dict[str, int]:
        flat = self._run(lambda r: self._scripts["hash_take"](keys=[self._k(key)]))
        return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}

    def windows_acquire(self, windows: list[tuple[str, int, float]]) -> float:
        now = self.clock()
        args: list[Any] = [repr(now), f"{now:.6f}:{uuid.uuid4().hex[:12]}"]
        for _, limit, window in windows:
            args += [int(limit), repr(float(window))]
        keys = [self._k(key) for key, _, _ in windows]
        wait = self._run(lambda r: self._scripts["windows"](keys=keys, args=args))
        return max(float(wait), 0.001) if wait != "0" else 0.0

    def acquire_lock(self, name: str, ttl: float) -> str | None:
        token = uuid.uuid4().hex
        return token if self.set_if_absent(name, token, ttl) else None

    def release_lock(self, name: str, token: str) -> bool:
        return bool(self._run(lambda r: self._scripts["release"](keys=[self._k(name)], args=[token])))
