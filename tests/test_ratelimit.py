"""Rate limiter: a sliding window per integration shared by all processes, and upstream suppression."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flask_integrations.errors import RateLimitExceeded
from flask_integrations.pipeline import ratelimit
from flask_integrations.state.redis_store import RedisStore
from flask_integrations.state.store import Store
from tests.helpers.app import FakeClock
from tests.helpers.processes import results_of

ID = 3


def allowed(store: Store, per_minute: int | None, integration_id: int = ID) -> bool:
    try:
        ratelimit.acquire(store, integration_id, per_minute, max_wait=0)
    except RateLimitExceeded:
        return False
    return True


def test_allows_per_minute_then_refuses_at_once(store: Store) -> None:
    assert [allowed(store, 3) for _ in range(3)] == [True, True, True]
    started = time.monotonic()
    with pytest.raises(RateLimitExceeded) as raised:
        ratelimit.acquire(store, ID, 3, max_wait=0)
    assert time.monotonic() - started < 1  # refusing never sleeps (a wait would be 60 s)
    assert raised.value.integration_id == ID
    assert raised.value.retry_after == pytest.approx(60)


def test_window_slides_rather_than_resetting_each_minute(store: Store, clock: FakeClock) -> None:
    assert allowed(store, 3) and allowed(store, 3)
    clock.advance(30)
    assert allowed(store, 3)
    clock.advance(29.9)
    assert not allowed(store, 3)
    clock.advance(0.2)  # the two first slots are 60.1 s old
    assert allowed(store, 3) and allowed(store, 3)
    assert not allowed(store, 3)  # the third is only 30.1 s old


def test_refused_acquisitions_take_no_slot(store: Store, clock: FakeClock) -> None:
    assert allowed(store, 2) and allowed(store, 2)
    assert not any(allowed(store, 2) for _ in range(5))
    clock.advance(60.1)
    assert allowed(store, 2) and allowed(store, 2)


def test_windows_are_per_integration(store: Store) -> None:
    assert allowed(store, 1)
    assert not allowed(store, 1)
    assert allowed(store, 1, integration_id=ID + 1)


def test_no_per_minute_means_no_window(store: Store) -> None:
    assert all(allowed(store, None) for _ in range(100))


def test_waits_for_capacity_within_max_wait(store: Store) -> None:
    store.clock = time.time
    ratelimit.report(store, ID, retry_after=0.3)
    started = time.monotonic()
    ratelimit.acquire(store, ID, 10, max_wait=2)
    assert 0.25 <= time.monotonic() - started < 2


def test_a_wait_known_to_exceed_max_wait_raises_at_once(store: Store) -> None:
    ratelimit.report(store, ID, retry_after=30)
    started = time.monotonic()
    with pytest.raises(RateLimitExceeded) as raised:
        ratelimit.acquire(store, ID, 10, max_wait=5)
    assert time.monotonic() - started < 1  # a known 30 s wait is not started
    assert raised.value.retry_after == pytest.approx(30)


def test_suppression_applies_without_a_window(store: Store, clock: FakeClock) -> None:
    ratelimit.report(store, ID, retry_after=10)
    assert not allowed(store, None)
    clock.advance(10.1)
    assert allowed(store, None)


@pytest.mark.parametrize(
    "reset_at",
    [
        pytest.param(lambda now: datetime.fromtimestamp(now, UTC) + timedelta(seconds=20), id="datetime"),
        pytest.param(lambda now: datetime.fromtimestamp(now + 20, UTC).replace(tzinfo=None), id="naive-utc"),
        pytest.param(lambda now: now + 20, id="unix-time"),
        pytest.param(lambda now: 20, id="seconds-from-now"),
    ],
)
def test_remaining_zero_suppresses_until_the_reset_time(
    store: Store, clock: FakeClock, reset_at: Any
) -> None:
    ratelimit.report(store, ID, remaining=0, reset_at=reset_at(clock.now))
    with pytest.raises(RateLimitExceeded) as raised:
        ratelimit.acquire(store, ID, None, max_wait=0)
    assert raised.value.retry_after == pytest.approx(20, abs=0.01)
    clock.advance(20.1)
    assert allowed(store, None)


def test_remaining_above_zero_or_without_reset_time_does_not_suppress(store: Store, clock: FakeClock) -> None:
    ratelimit.report(store, ID, remaining=5, reset_at=clock.now + 20)
    ratelimit.report(store, ID, remaining=0)
    assert allowed(store, None)


def test_the_longest_reported_wait_wins(store: Store, clock: FakeClock) -> None:
    ratelimit.report(store, ID, retry_after=10)
    ratelimit.report(store, ID, retry_after=2)
    clock.advance(5)
    assert not allowed(store, None)
    clock.advance(5.1)
    assert allowed(store, None)


def test_reported_waits_are_capped(store: Store) -> None:
    ratelimit.report(store, ID, retry_after=10**9, cap=600)
    with pytest.raises(RateLimitExceeded) as raised:
        ratelimit.acquire(store, ID, None, max_wait=0)
    assert raised.value.retry_after == pytest.approx(600)


def test_reset_forgets_window_and_suppression(store: Store) -> None:
    assert allowed(store, 1)
    ratelimit.report(store, ID, retry_after=30)
    ratelimit.reset(store, ID)
    assert allowed(store, 1)


# -- one limit across real processes -------------------------------------------------------------


def _acquire_worker(url: str, prefix: str, tries: int, barrier: Any, results: Any) -> None:
    store = RedisStore(url, prefix=prefix)
    store.get("warm-up")
    barrier.wait(timeout=60)
    granted = 0
    for _ in range(tries):
        try:
            ratelimit.acquire(store, ID, 20, max_wait=0)
            granted += 1
        except RateLimitExceeded:
            pass
    results.put(granted)


@pytest.mark.slow
@pytest.mark.redis
def test_limit_holds_across_four_processes(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    processes = [
        context.Process(target=_acquire_worker, args=(redis_url, prefix, 10, barrier, results))
        for _ in range(4)
    ]
    try:
        granted = results_of(processes, results, 60)
        assert sum(granted) == 20
    finally:
        RedisStore(redis_url, prefix=prefix).delete_prefix("")
