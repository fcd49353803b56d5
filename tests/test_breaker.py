"""Circuit breaker: closed → open → half-open (one probe across processes) → closed or open."""

from __future__ import annotations

import multiprocessing
import time
import uuid
from typing import Any

import pytest

from flask_integrations.errors import CircuitOpenError
from flask_integrations.pipeline import breaker
from flask_integrations.state.redis_store import RedisStore
from flask_integrations.state.store import Store
from tests.helpers.app import FakeClock

SETTINGS = {"enabled": True, "threshold": 3, "cooldown": 60}
ID = 7


def fail(store: Store, times: int = 1, failure_class: str = "upstream", settings: Any = SETTINGS) -> None:
    for _ in range(times):
        probe = breaker.before_attempt(store, ID, settings)
        breaker.after_attempt(store, ID, failure_class, settings, probe)


def succeed(store: Store) -> None:
    probe = breaker.before_attempt(store, ID, SETTINGS)
    breaker.after_attempt(store, ID, None, SETTINGS, probe)


def open_breaker(store: Store) -> None:
    fail(store, SETTINGS["threshold"])
    assert breaker.breaker_state(store, ID, SETTINGS) == "open"


def test_starts_closed(store: Store) -> None:
    assert breaker.breaker_state(store, ID, SETTINGS) == "closed"
    assert breaker.before_attempt(store, ID, SETTINGS) is False


def test_opens_after_threshold_consecutive_upstream_failures(store: Store) -> None:
    fail(store, 2)
    assert breaker.breaker_state(store, ID, SETTINGS) == "closed"
    fail(store)
    assert breaker.breaker_state(store, ID, SETTINGS) == "open"
    with pytest.raises(CircuitOpenError) as raised:
        breaker.before_attempt(store, ID, SETTINGS)
    assert raised.value.integration_id == ID
    assert raised.value.retry_after == pytest.approx(60)


def test_breakers_are_per_integration(store: Store) -> None:
    open_breaker(store)
    assert breaker.breaker_state(store, ID + 1, SETTINGS) == "closed"
    assert breaker.before_attempt(store, ID + 1, SETTINGS) is False


def test_success_resets_the_failure_count(store: Store) -> None:
    fail(store, 2)
    succeed(store)
    fail(store, 2)
    assert breaker.breaker_state(store, ID, SETTINGS) == "closed"


@pytest.mark.parametrize("failure_class", ["client", "throttle", "unknown"])
def test_other_failures_neither_count_nor_reset(store: Store, failure_class: str) -> None:
    fail(store, 5, failure_class)
    assert breaker.breaker_state(store, ID, SETTINGS) == "closed"
    fail(store, 2)
    fail(store, 1, failure_class)
    fail(store, 1)
    assert breaker.breaker_state(store, ID, SETTINGS) == "open"


def test_half_open_after_cooldown_allows_exactly_one_probe(store: Store, clock: FakeClock) -> None:
    open_breaker(store)
    clock.advance(59)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.before_attempt(store, ID, SETTINGS)
    assert raised.value.retry_after == pytest.approx(1)
    clock.advance(1.5)
    assert breaker.breaker_state(store, ID, SETTINGS) == "half-open"
    assert breaker.before_attempt(store, ID, SETTINGS) is True
    for _ in range(3):
        with pytest.raises(CircuitOpenError):
            breaker.before_attempt(store, ID, SETTINGS)


def test_probe_success_closes(store: Store, clock: FakeClock) -> None:
    open_breaker(store)
    clock.advance(61)
    assert breaker.before_attempt(store, ID, SETTINGS) is True
    breaker.after_attempt(store, ID, None, SETTINGS, probe=True)
    assert breaker.breaker_state(store, ID, SETTINGS) == "closed"
    assert breaker.before_attempt(store, ID, SETTINGS) is False
    fail(store, 2)  # the count started again from zero
    assert breaker.breaker_state(store, ID, SETTINGS) == "closed"


def test_probe_upstream_failure_reopens_with_a_fresh_cooldown(store: Store, clock: FakeClock) -> None:
    open_breaker(store)
    clock.advance(100)
    assert breaker.before_attempt(store, ID, SETTINGS) is True
    breaker.after_attempt(store, ID, "upstream", SETTINGS, probe=True)
    assert breaker.breaker_state(store, ID, SETTINGS) == "open"
    with pytest.raises(CircuitOpenError) as raised:
        breaker.before_attempt(store, ID, SETTINGS)
    assert raised.value.retry_after == pytest.approx(60)
    clock.advance(61)
    assert breaker.before_attempt(store, ID, SETTINGS) is True  # the failed probe released its claim


@pytest.mark.parametrize("failure_class", ["client", "throttle", "unknown"])
def test_probe_with_other_outcome_releases_the_claim(
    store: Store, clock: FakeClock, failure_class: str
) -> None:
    open_breaker(store)
    clock.advance(61)
    assert breaker.before_attempt(store, ID, SETTINGS) is True
    breaker.after_attempt(store, ID, failure_class, SETTINGS, probe=True)
    assert breaker.breaker_state(store, ID, SETTINGS) == "half-open"
    assert breaker.before_attempt(store, ID, SETTINGS) is True


def test_probe_claim_of_a_dead_probe_expires_after_twice_the_cooldown(store: Store) -> None:
    store.clock = time.time
    settings = {"enabled": True, "threshold": 1, "cooldown": 0.2}
    fail(store, 1, settings=settings)
    time.sleep(0.25)
    assert breaker.before_attempt(store, ID, settings) is True  # this probe never reports back
    time.sleep(0.25)
    with pytest.raises(CircuitOpenError):
        breaker.before_attempt(store, ID, settings)
    time.sleep(0.2)
    assert breaker.before_attempt(store, ID, settings) is True


def test_a_late_claim_after_the_probe_closed_is_not_a_second_probe(store: Store, clock: FakeClock) -> None:
    open_breaker(store)
    clock.advance(61)
    seen_open_until = float(store.get(f"breaker:{ID}:open"))
    assert breaker.before_attempt(store, ID, SETTINGS) is True
    breaker.after_attempt(store, ID, None, SETTINGS, probe=True)
    # A caller that read "half-open" before the probe closed the breaker claims now.
    assert breaker._claim_probe(store, ID, seen_open_until, SETTINGS) is False
    assert store.get(f"breaker:{ID}:probe") is None


def test_disabled_breaker_never_opens(store: Store) -> None:
    settings = dict(SETTINGS, enabled=False)
    fail(store, 10, settings=settings)
    assert breaker.breaker_state(store, ID, settings) == "closed"
    assert breaker.before_attempt(store, ID, settings) is False


def test_reset_closes_an_open_breaker(store: Store) -> None:
    open_breaker(store)
    breaker.reset(store, ID)
    assert breaker.breaker_state(store, ID, SETTINGS) == "closed"
    fail(store, 2)
    assert breaker.breaker_state(store, ID, SETTINGS) == "closed"


class CountingStore:
    """Counts the store primitives a breaker call uses (what it keeps in process memory is no primitive)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @property
    def clock(self) -> Any:
        return self.inner.clock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute) or name == "process_local":
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return attribute(*args, **kwargs)

        return counted


def test_success_path_costs_one_round_trip(store: Store) -> None:
    counting = CountingStore(store)
    for _ in range(3):
        probe = breaker.before_attempt(counting, ID, SETTINGS)  # type: ignore[arg-type]
        breaker.after_attempt(counting, ID, None, SETTINGS, probe)  # type: ignore[arg-type]
    assert counting.calls == ["get_many"] * 3


def test_first_success_after_failures_resets_them(store: Store) -> None:
    fail(store, 2)
    counting = CountingStore(store)
    probe = breaker.before_attempt(counting, ID, SETTINGS)  # type: ignore[arg-type]
    breaker.after_attempt(counting, ID, None, SETTINGS, probe)  # type: ignore[arg-type]
    assert counting.calls == ["get_many", "delete"]
    assert store.get(f"breaker:{ID}:failures") is None


# -- one probe across real processes -------------------------------------------------------------


def _probe_worker(url: str, prefix: str, settings: dict[str, Any], barrier: Any, results: Any) -> None:
    store = RedisStore(url, prefix=prefix)
    store.get("warm-up")  # connect and load the scripts before the race, not during it
    barrier.wait(timeout=60)
    try:
        results.put("probe" if breaker.before_attempt(store, ID, settings) else "closed")
    except CircuitOpenError:
        results.put("rejected")


@pytest.mark.slow
@pytest.mark.redis
def test_exactly_one_of_eight_processes_gets_the_probe(redis_url: str) -> None:
    settings = {"enabled": True, "threshold": 2, "cooldown": 1}
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix=prefix)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(9), context.Queue()
    processes = [
        context.Process(target=_probe_worker, args=(redis_url, prefix, settings, barrier, results))
        for _ in range(8)
    ]
    try:
        fail(store, 2, settings=settings)
        assert breaker.breaker_state(store, ID, settings) == "open"
        for process in processes:
            process.start()
        time.sleep(max(0.0, float(store.get(f"breaker:{ID}:open")) - time.time() + 0.05))
        assert breaker.breaker_state(store, ID, settings) == "half-open"
        barrier.wait(timeout=60)  # every process is ready: all ask at once
        outcomes = sorted(results.get(timeout=30) for _ in processes)
        assert outcomes == ["probe"] + ["rejected"] * 7
    finally:
        for process in processes:
            process.join(timeout=10)
        store.delete_prefix("")
