"""The shared state store: one contract, held by the memory store and by real Redis."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from flask_integrations.errors import IntegrationsError, StoreUnavailable
from flask_integrations.pipeline import breaker, cache, ratelimit
from flask_integrations.state.memory_store import MemoryStore
from flask_integrations.state.redis_store import RedisStore, safe_url
from flask_integrations.state.store import Store
from tests.helpers.app import FakeClock, make_app

DEAD_REDIS = "redis://127.0.0.1:1/0"
BREAKER = {"enabled": True, "threshold": 1, "cooldown": 60}


def test_get_set_delete(store: Store) -> None:
    assert store.get("a") is None
    store.set("a", "1")
    store.set("b", "2", ttl=60)
    assert store.get_many(["a", "b", "c"]) == ["1", "2", None]
    assert store.delete("a", "c") == 1
    assert store.get("a") is None


def pass_time(store: Store, clock: FakeClock, seconds: float) -> None:
    """Let `seconds` go by for the store's TTLs: the fake clock moves the memory store's; Redis
    expires keys by its own clock."""
    if isinstance(store, MemoryStore):
        clock.advance(seconds)
    else:
        time.sleep(seconds)


def test_values_expire_after_their_ttl(store: Store, clock: FakeClock) -> None:
    store.set("short", "x", ttl=0.05)
    store.set("long", "y", ttl=60)
    pass_time(store, clock, 0.1)
    assert store.get("short") is None
    assert store.get("long") == "y"


def test_set_if_absent_stores_only_once(store: Store) -> None:
    assert store.set_if_absent("k", "first", ttl=60) is True
    assert store.set_if_absent("k", "second", ttl=60) is False
    assert store.get("k") == "first"


def test_set_max_keeps_the_larger_number(store: Store) -> None:
    assert store.set_max("m", 10.5, ttl=60) == 10.5
    assert store.set_max("m", 3, ttl=60) == 10.5
    assert store.set_max("m", 20, ttl=60) == 20
    assert float(store.get("m")) == 20


def test_incr_counts_from_zero(store: Store) -> None:
    assert store.incr("n") == 1
    assert store.incr("n", 5, ttl=60) == 6


def test_delete_prefix_removes_only_matching_keys(store: Store) -> None:
    for key in ("p:1:a", "p:1:b", "p:10:a", "p*:1:c", "other"):
        store.set(key, "v")
    assert store.delete_prefix("p:1:") == 2
    assert store.delete_prefix("p*:") == 1  # glob characters are literal
    assert store.get_many(["p:1:a", "p:1:b", "p:10:a", "p*:1:c", "other"]) == [None, None, "v", None, "v"]


def test_hash_take_reads_and_resets_atomically(store: Store) -> None:
    store.clock = time.time
    per_thread, threads = 300, 4
    taken: list[dict[str, int]] = []
    done = threading.Event()

    def count() -> None:
        for _ in range(per_thread):
            store.hash_incr("hits", {"1": 1, "2": 2})

    def take() -> None:
        while not done.is_set():
            taken.append(store.hash_take("hits"))

    counters = [threading.Thread(target=count) for _ in range(threads)]
    taker = threading.Thread(target=take)
    taker.start()
    for thread in counters:
        thread.start()
    for thread in counters:
        thread.join()
    done.set()
    taker.join()
    taken.append(store.hash_take("hits"))
    assert sum(t.get("1", 0) for t in taken) == per_thread * threads
    assert sum(t.get("2", 0) for t in taken) == 2 * per_thread * threads
    assert store.hash_take("hits") == {}


def test_window_allows_limit_per_window_then_says_how_long_to_wait(store: Store, clock: FakeClock) -> None:
    assert [store.window_acquire("w", 2, 60) for _ in range(2)] == [0.0, 0.0]
    clock.advance(10)
    assert store.window_acquire("w", 2, 60) == pytest.approx(50)
    clock.advance(50.01)
    assert store.window_acquire("w", 2, 60) == 0.0
    assert store.window_acquire("w", 2, 60) == pytest.approx(0.0, abs=0.01)  # second slot frees now
    assert store.window_acquire("w", 2, 60) > 59


def test_lock_is_exclusive_until_released_or_expired(store: Store, clock: FakeClock) -> None:
    token = store.acquire_lock("lock:x", ttl=60)
    assert token
    assert store.acquire_lock("lock:x", ttl=60) is None
    assert store.release_lock("lock:x", "not-the-token") is False
    assert store.release_lock("lock:x", token) is True
    short = store.acquire_lock("lock:x", ttl=0.05)
    pass_time(store, clock, 0.1)
    again = store.acquire_lock("lock:x", ttl=60)
    assert again and again != short
    assert store.release_lock("lock:x", short) is False  # an expired holder cannot free the new one
    assert store.get("lock:x") == again


@pytest.mark.redis
def test_redis_keys_carry_the_prefix(redis_url: str) -> None:
    import redis

    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix=prefix)
    store.set("a", "1")
    store.hash_incr("h", {"f": 1})
    store.window_acquire("w", 5, 60)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert sorted(client.keys(prefix + "*")) == [prefix + "a", prefix + "h", prefix + "w"]
    finally:
        store.delete_prefix("")
        client.close()


# -- one store per app per process --------------------------------------------------------------


def _state(tmp_path, **config):
    app = make_app(f"sqlite:///{tmp_path / 'app.db'}", **config)
    return app.extensions["integrations"].state_for(app)


def test_embedded_mode_uses_one_memory_store_per_app(tmp_path) -> None:
    first, second = _state(tmp_path), _state(tmp_path)
    assert isinstance(first.store, MemoryStore)
    assert first.store is first.store
    assert first.store is not second.store


@pytest.mark.redis
def test_redis_url_gives_a_redis_store_with_the_configured_prefix(tmp_path, redis_url: str) -> None:
    state = _state(tmp_path, INTEGRATIONS_REDIS_URL=redis_url, INTEGRATIONS_REDIS_PREFIX="myapp:")
    store = state.store
    assert isinstance(store, RedisStore) and store.shared
    assert store.prefix == "myapp:" and store.url == redis_url
    assert state.store is store
    store.close()


@pytest.mark.redis
def test_redis_client_is_recreated_in_a_forked_child(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=f"test:{uuid.uuid4().hex[:8]}:")
    store.set("k", "v")
    parent_client = store._client()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = store.get("k") == "v" and store._client() is not parent_client
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert store._client() is parent_client and store.get("k") == "v"
    store.delete_prefix("")


def test_safe_url_hides_the_password() -> None:
    assert safe_url("redis://:s3cret@host:6380/2") == "redis://:***@host:6380/2"
    assert safe_url("redis://user:s3cret@host/0") == "redis://user:***@host/0"
    assert safe_url("redis://host:6379/0") == "redis://host:6379/0"


# -- Redis unreachable ---------------------------------------------------------------------------


@pytest.fixture
def dead_store(clock: FakeClock) -> Iterator[RedisStore]:
    store = RedisStore(DEAD_REDIS, prefix="dead:", clock=clock)
    yield store
    store.close()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "flask_integrations" and r.levelno == logging.WARNING]


def test_unreachable_redis_fails_open_for_cache_breaker_and_limiter(dead_store: RedisStore) -> None:
    key = cache.cache_key(1, "GET", "/x", "https://example.test/x", None)
    cache.put(dead_store, key, {"a": 1}, 60, 60, request_id=1)
    assert cache.get(dead_store, key) is None
    assert cache.get_stale(dead_store, key) is None
    cache.count_hit(dead_store, 1)
    cache.forget(dead_store, 1)
    assert cache.flush_hits(dead_store, connection=None, requests_table=None) == 0  # type: ignore[arg-type]
    assert breaker.before_attempt(dead_store, 1, BREAKER) is False
    breaker.after_attempt(dead_store, 1, "upstream", BREAKER, probe=False)
    assert breaker.breaker_state(dead_store, 1, BREAKER) == "closed"
    breaker.reset(dead_store, 1)
    ratelimit.report(dead_store, 1, retry_after=30)
    assert ratelimit.acquire(dead_store, 1, limits=1, max_wait=0) is None
    assert ratelimit.acquire(dead_store, 1, limits=1, max_wait=0) is None


def test_unreachable_redis_fails_locks_closed(dead_store: RedisStore) -> None:
    with pytest.raises(StoreUnavailable) as raised:
        dead_store.acquire_lock("oauth:1", ttl=30)
    assert isinstance(raised.value, IntegrationsError)
    with pytest.raises(StoreUnavailable):
        dead_store.release_lock("oauth:1", "token")


def test_unreachable_redis_logs_one_warning_per_minute(
    dead_store: RedisStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="flask_integrations")
    for _ in range(5):
        assert cache.get(dead_store, "cache:1:x:y") is None
        clock.advance(2)  # past the 1 s pause between connection attempts: each call tries Redis
    assert len(_warnings(caplog)) == 1
    assert "redis://127.0.0.1:1/0" in _warnings(caplog)[0].getMessage()
    clock.advance(49)  # 59 s after the first warning
    breaker.before_attempt(dead_store, 1, BREAKER)
    assert len(_warnings(caplog)) == 1
    clock.advance(1.5)
    breaker.before_attempt(dead_store, 1, BREAKER)
    assert len(_warnings(caplog)) == 2


def test_unreachable_redis_is_not_retried_within_a_second(dead_store: RedisStore, clock: FakeClock) -> None:
    with pytest.raises(StoreUnavailable):
        dead_store.get("k")
    dead_store._client = None  # type: ignore[assignment]  # any connection attempt would now fail loudly
    with pytest.raises(StoreUnavailable):
        dead_store.get("k")


def test_warning_never_shows_the_redis_password(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="flask_integrations")
    store = RedisStore("redis://:hunter2@127.0.0.1:1/0", clock=clock)
    assert cache.get(store, "k") is None
    assert _warnings(caplog) and all("hunter2" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("redis_url", "imported"), [(None, False), ("redis://127.0.0.1:1/0", True)])
def test_redis_clients_are_imported_at_init_app_in_redis_mode_only(redis_url, imported):
    """Imported first by several request threads at once, redis's and rq's circular imports can
    fail with importlib's _DeadlockError (seen under gunicorn --threads); the embedded mode never
    pays for them. A fresh interpreter, since this one has imported both long ago."""
    import subprocess
    import sys

    from tests.helpers.app import ROOT

    script = (
        "import sys\n"
        "from tests.helpers.app import make_app\n"
        f"make_app('sqlite://', INTEGRATIONS_REDIS_URL={redis_url!r})\n"
        "print('redis' in sys.modules, 'rq' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == [str(imported)] * 2


def test_hash_get_reads_counters_without_taking_them(store: Store) -> None:
    store.hash_incr("h", {"a": 2, "b": 1}, ttl=60)
    store.hash_incr("h", {"a": 1})
    assert store.hash_get("h") == {"a": 3, "b": 1}
    assert store.hash_get("h") == {"a": 3, "b": 1}  # still there
    assert store.hash_get("absent") == {}
