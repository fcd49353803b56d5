"""`Limit` windows (SPEC 15): per second, minute, hour and day, all enforced at once, atomically."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from typing import Any

import pytest

from flask_integrations import ConfigurationError, Limit, Provider, RateLimitExceeded
from flask_integrations.pipeline import ratelimit
from flask_integrations.providers.limits import limits_of, parse_limit
from flask_integrations.state.redis_store import RedisStore
from flask_integrations.state.store import Store
from tests.helpers.app import FakeClock
from tests.helpers.processes import results_of

ID = 7
TWO_PER_SECOND_THREE_PER_MINUTE = [Limit(2, per="second"), Limit(3, per="minute")]


def allowed(store: Store, limits: Any) -> bool:
    try:
        ratelimit.acquire(store, ID, limits, max_wait=0)
    except RateLimitExceeded:
        return False
    return True


def test_a_limit_names_its_wrong_value():
    with pytest.raises(ConfigurationError, match="n must be a positive integer"):
        Limit(0, per="hour")
    with pytest.raises(ConfigurationError, match="per must be one of second, minute, hour, day"):
        Limit(5, per="week")


def test_rate_limit_values():
    assert limits_of(None) == ()
    assert limits_of(60) == (Limit(60, "minute"),)
    assert limits_of(Limit(5, "day")) == (Limit(5, "day"),)
    with pytest.raises(ConfigurationError, match="two Limits per the same period"):
        limits_of([Limit(1, "hour"), Limit(2, "hour")])
    for wrong in ("60", 0, True, [], [60]):
        with pytest.raises(ConfigurationError, match="rate_limit must be a positive integer, a Limit"):
            limits_of(wrong)


def test_limits_read_from_text():
    assert parse_limit("100/hour") == Limit(100, "hour")
    assert parse_limit(" 5 / seconds ") == Limit(5, "second")
    for wrong in ("100", "1²/hour", "100/week", "-1/day", ""):
        with pytest.raises(ConfigurationError, match="must read like 100/hour"):
            parse_limit(wrong)


def test_every_window_is_enforced(store: Store, clock: FakeClock):
    assert allowed(store, TWO_PER_SECOND_THREE_PER_MINUTE)
    assert allowed(store, TWO_PER_SECOND_THREE_PER_MINUTE)
    with pytest.raises(RateLimitExceeded) as refused:
        ratelimit.acquire(store, ID, TWO_PER_SECOND_THREE_PER_MINUTE, max_wait=0)
    assert refused.value.retry_after == pytest.approx(1.0)  # the second window is full
    clock.advance(1.01)
    assert allowed(store, TWO_PER_SECOND_THREE_PER_MINUTE)
    clock.advance(1.01)
    with pytest.raises(RateLimitExceeded) as refused:
        ratelimit.acquire(store, ID, TWO_PER_SECOND_THREE_PER_MINUTE, max_wait=0)
    assert refused.value.retry_after == pytest.approx(60 - 2.02)  # now the minute window is full
    clock.advance(58)
    assert allowed(store, TWO_PER_SECOND_THREE_PER_MINUTE)


def test_a_refusal_by_one_window_takes_no_slot_in_the_others(store: Store, clock: FakeClock):
    one_per_hour_and_minute = [Limit(1, per="hour"), Limit(5, per="minute")]
    assert allowed(store, one_per_hour_and_minute)
    assert not any(allowed(store, one_per_hour_and_minute) for _ in range(10))
    # the minute window saw one slot taken, not eleven: four more fit in it
    assert all(allowed(store, [Limit(5, per="minute")]) for _ in range(4))
    assert not allowed(store, [Limit(5, per="minute")])


def test_a_day_window_holds_for_a_day(store: Store, clock: FakeClock):
    assert allowed(store, [Limit(2, per="day")]) and allowed(store, [Limit(2, per="day")])
    clock.advance(86_399)
    assert not allowed(store, [Limit(2, per="day")])
    clock.advance(2)
    assert allowed(store, [Limit(2, per="day")])


def test_an_int_is_one_per_minute_window(store: Store):
    assert allowed(store, 1)
    assert not allowed(store, [Limit(1, per="minute")])


def test_a_provider_declares_its_windows_and_wrong_ones_are_refused_at_registration(app_factory):
    class Hourly(Provider):
        rate_limit = [Limit(2, per="second"), Limit(5000, per="hour")]

    class Twice(Provider):
        rate_limit = [Limit(1, per="hour"), Limit(2, per="hour")]

    app = app_factory(INTEGRATIONS_PROVIDERS={"hourly": Hourly})
    with app.app_context():
        assert (
            app.extensions["integrations"].state_for(app).provider("hourly").rate_limit == Hourly.rate_limit
        )
    with pytest.raises(
        ConfigurationError, match=r"\['twice'\]\.rate_limit declares two Limits per the same period"
    ):
        app_factory(INTEGRATIONS_PROVIDERS={"twice": Twice})


def test_calls_through_the_pipeline_are_held_by_every_window(app_factory, upstream_server):
    class Quota(Provider):
        rate_limit = [Limit(100, per="second"), Limit(3, per="hour")]

    app = app_factory(INTEGRATIONS_PROVIDERS={"quota": Quota}, INTEGRATIONS_RATE_LIMIT_MAX_WAIT=0)
    with app.app_context():
        quota = app.extensions["integrations"].create("quota", "Q", {})
        for _ in range(3):
            quota.at("ping").get(upstream_server.url + "/json")
        with pytest.raises(RateLimitExceeded) as refused:
            quota.at("ping").get(upstream_server.url + "/json")
        assert refused.value.retry_after > 3500


# -- several windows across real processes --------------------------------------------------------

PER_SECOND, PER_MINUTE, WANTED = 8, 20, 5


def _acquire_worker(url: str, prefix: str, barrier: Any, results: Any) -> None:
    store = RedisStore(url, prefix=prefix)
    store.get("warm-up")
    barrier.wait(timeout=60)
    limits = [Limit(PER_SECOND, per="second"), Limit(PER_MINUTE, per="minute")]
    granted, refused = 0, 0
    for _ in range(WANTED):
        try:
            ratelimit.acquire(store, ID, limits, max_wait=10)
            granted += 1
        except RateLimitExceeded:
            refused += 1
    results.put((granted, refused))


@pytest.mark.slow
@pytest.mark.redis
def test_windows_hold_across_four_processes_and_none_starves(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    processes = [
        context.Process(target=_acquire_worker, args=(redis_url, prefix, barrier, results)) for _ in range(4)
    ]
    outcomes = results_of(processes, results, 90)
    assert outcomes == [(WANTED, 0)] * 4  # every process got every slot it waited for
    store = RedisStore(redis_url, prefix=prefix)
    try:
        client = store._client()
        stamps = [
            score for _, score in client.zrange(prefix + f"ratelimit:{ID}:per:minute", 0, -1, withscores=True)
        ]
        assert len(stamps) == PER_MINUTE  # the minute window admitted exactly its 20
        stamps.sort()
        busiest = max(sum(1 for s in stamps if start <= s < start + 1.0) for start in stamps)
        assert busiest <= PER_SECOND  # no second ever admitted more than 8
        started = time.monotonic()
        with pytest.raises(RateLimitExceeded) as refused:
            ratelimit.acquire(
                store, ID, [Limit(PER_SECOND, per="second"), Limit(PER_MINUTE, per="minute")], 0
            )
        assert refused.value.retry_after > 50 and time.monotonic() - started < 5
    finally:
        store.delete_prefix("")
        store.close()
