"""Tracked reads: local copies of hot Redis keys, invalidated by Redis (store_tracking.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from flask_integrations import CircuitOpenError
from flask_integrations.pipeline import breaker
from flask_integrations.state.redis_store import RedisStore
from flask_integrations.state.tracking import MAX_AGE

pytestmark = pytest.mark.redis


@pytest.fixture
def stores(redis_url: str) -> Iterator[tuple[RedisStore, RedisStore]]:
    """Two stores on one prefix: two processes' views of the same Redis state."""
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    first, second = RedisStore(redis_url, prefix=prefix), RedisStore(redis_url, prefix=prefix)
    yield first, second
    first.delete_prefix("")
    first.close()
    second.close()


def mget_calls(redis_url: str) -> int:
    stats = redis.Redis.from_url(redis_url).info("commandstats")
    return stats.get("cmdstat_mget", {}).get("calls", 0)


def read_until(store: RedisStore, keys: list[str], expected: list, timeout: float = 2.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        values = store.get_many_tracked(keys)
        if values == expected or time.monotonic() > deadline:
            return values
        time.sleep(0.01)


def wait_for_listener(store: RedisStore) -> None:
    tracked = store._tracked_reads()
    deadline = time.monotonic() + 5
    while tracked.listener_id is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tracked.listener_id is not None


def test_repeated_reads_are_served_locally(stores, redis_url):
    first, _ = stores
    wait_for_listener(first)
    first.get_many_tracked(["a", "b"])
    before = mget_calls(redis_url)
    for _ in range(50):
        assert first.get_many_tracked(["a", "b"]) == [None, None]
    assert mget_calls(redis_url) - before == 0


def test_a_write_by_another_process_is_seen_at_once(stores):
    first, second = stores
    wait_for_listener(first)
    assert first.get_many_tracked(["a"]) == [None]
    second.set("a", "1")
    assert read_until(first, ["a"], ["1"], timeout=0.2) == ["1"]
    second.delete("a")
    assert read_until(first, ["a"], [None], timeout=0.2) == [None]


def test_a_breaker_opened_elsewhere_stops_this_process_at_once(stores):
    first, second = stores
    settings = {"enabled": True, "threshold": 1, "cooldown": 60}
    wait_for_listener(first)
    assert (
        breaker.before_attempt(first, 7, settings, known=first.get_many_tracked(breaker.read_keys(7)))
        is False
    )
    breaker.after_attempt(second, 7, "upstream", settings, probe=False)
    deadline = time.monotonic() + 0.2
    with pytest.raises(CircuitOpenError):
        while time.monotonic() < deadline:
            breaker.before_attempt(first, 7, settings, known=first.get_many_tracked(breaker.read_keys(7)))
            time.sleep(0.005)


def test_flushing_the_database_drops_every_copy(stores, redis_url):
    first, second = stores
    wait_for_listener(first)
    second.set("a", "1")
    assert read_until(first, ["a"], ["1"]) == ["1"]
    redis.Redis.from_url(redis_url).flushdb()
    assert read_until(first, ["a"], [None], timeout=0.2) == [None]


def test_a_lost_listener_sends_every_read_to_redis_until_it_is_back(stores, redis_url):
    first, second = stores
    wait_for_listener(first)
    first.get_many_tracked(["a"])
    tracked = first._tracked_reads()
    redis.Redis.from_url(redis_url).client_kill_filter(_id=tracked.listener_id)
    deadline = time.monotonic() + 2
    while tracked.copies and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not tracked.copies
    second.set("a", "2")  # no listener may be there to hear this: the read must not be a copy
    assert first.get_many_tracked(["a"]) == ["2"]
    wait_for_listener(first)
    second.set("a", "3")
    assert read_until(first, ["a"], ["3"]) == ["3"]


def test_no_copy_outlives_its_max_age_even_without_messages(stores, monkeypatch):
    first, _ = stores
    wait_for_listener(first)
    tracked = first._tracked_reads()
    monkeypatch.setattr(tracked, "_invalidate", lambda keys: None)  # every message lost
    first.get_many_tracked(["a"])
    raw = redis.Redis.from_url(first.url)
    raw.set(first.prefix + "a", "4")
    assert first.get_many_tracked(["a"]) == [None]  # the stale copy, within its age
    time.sleep(MAX_AGE + 0.05)
    assert first.get_many_tracked(["a"]) == ["4"]


def test_closing_the_store_stops_the_listener(stores):
    first, _ = stores
    wait_for_listener(first)
    tracked = first._tracked_reads()
    first.close()
    tracked.thread.join(timeout=5)
    assert not tracked.thread.is_alive()
