"""Response cache: keys, fresh and stale copies, forgetting, and hit counts flushed in batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_integrations import IntegrationRequest
from flask_integrations.pipeline import cache
from flask_integrations.state.store import Store
from tests.helpers.app import FakeClock, db, make_app, recorded_statements


def key(integration_id: int = 1, endpoint: str = "issues", data: Any = None) -> str:
    return cache.cache_key(integration_id, "GET", endpoint, "https://api.test/" + endpoint, data)


# -- keys ----------------------------------------------------------------------------------------


def test_key_is_stable_whatever_the_dict_order() -> None:
    first = cache.cache_key(
        1, "GET", "issues", "https://api.test/issues", {"a": 1, "b": [1, {"x": 2, "y": 3}]}
    )
    second = cache.cache_key(
        1, "get", "issues", "https://api.test/issues", {"b": [1, {"y": 3, "x": 2}], "a": 1}
    )
    assert first == second


@pytest.mark.parametrize(
    "other",
    [
        (2, "GET", "issues", "https://api.test/issues", {"a": 1}),
        (1, "POST", "issues", "https://api.test/issues", {"a": 1}),
        (1, "GET", "pulls", "https://api.test/issues", {"a": 1}),
        (1, "GET", "issues", "https://api.test/pulls", {"a": 1}),
        (1, "GET", "issues", "https://api.test/issues", {"a": 2}),
        (1, "GET", "issues", "https://api.test/issues", None),
    ],
)
def test_key_differs_when_any_part_differs(other: tuple) -> None:
    assert cache.cache_key(1, "GET", "issues", "https://api.test/issues", {"a": 1}) != cache.cache_key(*other)


def test_key_is_namespaced_by_integration() -> None:
    assert key(12).startswith("cache:12:")
    assert key(1, data=b"not json") != key(1, data=b"other")  # non-JSON data still hashes


# -- fresh and stale ----------------------------------------------------------------------------


def test_put_then_get_returns_the_value_and_its_request(store: Store) -> None:
    cache.put(store, key(), {"issues": [1, 2]}, ttl=60, stale_ttl=600, request_id=41)
    entry = cache.get(store, key())
    assert entry == cache.CacheEntry({"issues": [1, 2]}, 41, stale=False)
    entry.value["issues"].append(3)  # callers get their own copy
    assert cache.get(store, key()).value == {"issues": [1, 2]}


def test_miss_when_nothing_cached(store: Store) -> None:
    assert cache.get(store, key()) is None
    assert cache.get_stale(store, key()) is None


@pytest.mark.parametrize("value", ["text", 3, None, [1, "a"], {"n": {"deep": True}}])
def test_json_values_round_trip(store: Store, value: Any) -> None:
    cache.put(store, key(), value, ttl=60, stale_ttl=0, request_id=1)
    assert cache.get(store, key()).value == value


@pytest.mark.parametrize("value", [object(), {1, 2}, {"when": time}, b"bytes"])
def test_values_that_are_not_json_are_skipped(store: Store, value: Any) -> None:
    cache.put(store, key(), value, ttl=60, stale_ttl=60, request_id=1)
    assert cache.get(store, key()) is None
    assert cache.get_stale(store, key()) is None


def test_stale_copy_is_served_after_the_fresh_one_expires(store: Store, clock: FakeClock) -> None:
    cache.put(store, key(), {"v": 1}, ttl=10, stale_ttl=600, request_id=5)
    assert cache.get_stale(store, key()) == cache.CacheEntry({"v": 1}, 5, stale=False)
    clock.advance(10.1)
    assert cache.get(store, key()) is None
    assert cache.get_stale(store, key()) == cache.CacheEntry({"v": 1}, 5, stale=True)


def test_stale_copy_is_gone_after_stale_ttl(store: Store) -> None:
    store.clock = time.time
    cache.put(store, key(), {"v": 1}, ttl=0.1, stale_ttl=0.1, request_id=5)
    time.sleep(0.12)
    assert cache.get(store, key()) is None and cache.get_stale(store, key()) is not None
    time.sleep(0.12)
    assert cache.get_stale(store, key()) is None


def test_a_new_put_replaces_the_entry(store: Store) -> None:
    cache.put(store, key(), "old", ttl=60, stale_ttl=60, request_id=1)
    cache.put(store, key(), "new", ttl=60, stale_ttl=60, request_id=2)
    assert cache.get(store, key()) == cache.CacheEntry("new", 2)


# -- forget -------------------------------------------------------------------------------------


def _fill(store: Store) -> dict[str, str]:
    keys = {
        "1-issues": key(1, "issues"),
        "1-issues-page2": key(1, "issues", {"page": 2}),
        "1-pulls": key(1, "pulls"),
        "2-issues": key(2, "issues"),
        "11-issues": key(11, "issues"),
    }
    for name, k in keys.items():
        cache.put(store, k, name, ttl=60, stale_ttl=60, request_id=1)
    return keys


def _cached(store: Store, keys: dict[str, str]) -> list[str]:
    return sorted(name for name, k in keys.items() if cache.get_stale(store, k) is not None)


def test_forget_one_endpoint(store: Store) -> None:
    keys = _fill(store)
    cache.forget(store, 1, endpoint="issues")
    assert _cached(store, keys) == ["1-pulls", "11-issues", "2-issues"]


def test_forget_all_of_an_integration(store: Store) -> None:
    keys = _fill(store)
    cache.forget(store, 1)
    assert _cached(store, keys) == ["11-issues", "2-issues"]


# -- hit counts ----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_app(tmp_path) -> Iterator[Flask]:
    app = make_app(f"sqlite:///{tmp_path / 'app.db'}")
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()


@pytest.fixture
def request_ids(sqlite_app: Flask) -> list[int]:
    integration = sqlite_app.extensions["integrations"].create("loose", "x", {})
    rows = [
        IntegrationRequest(integration_id=integration.id, endpoint="issues", method="GET") for _ in range(3)
    ]
    db.session.add_all(rows)
    db.session.commit()
    return [row.id for row in rows]


def requests_table(app: Flask) -> sa.Table:
    return app.extensions["integrations"].state_for(app).tables["requests"]


def hits(app: Flask) -> dict[int, tuple[int, int]]:
    table = requests_table(app)
    with db.engine.connect() as connection:
        rows = connection.execute(sa.select(table.c.id, table.c.cache_hits, table.c.stale_hits))
        return {row.id: (row.cache_hits, row.stale_hits) for row in rows}


def flush(store: Store, app: Flask) -> int:
    with db.engine.connect() as connection:
        return cache.flush_hits(store, connection, requests_table(app))


def test_hits_are_counted_in_the_store_without_touching_the_database(
    store: Store, sqlite_app: Flask, request_ids: list[int]
) -> None:
    with recorded_statements() as statements:
        for _ in range(50):
            cache.count_hit(store, request_ids[0])
        cache.count_hit(store, request_ids[1], stale=True)
        cache.count_hit(store, None)
    assert statements == []
    assert hits(sqlite_app)[request_ids[0]] == (0, 0)


def test_flush_adds_counts_to_the_rows_in_one_batch(
    store: Store, sqlite_app: Flask, request_ids: list[int]
) -> None:
    first, second, third = request_ids
    for _ in range(3):
        cache.count_hit(store, first)
    cache.count_hit(store, first, stale=True)
    cache.count_hit(store, second, stale=True)
    cache.count_hit(store, second, stale=True)
    statements: list[bool] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        statements.append(many)

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert flush(store, sqlite_app) == 2
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert statements == [True]  # one executemany: an UPDATE per row, in one transaction
    assert hits(sqlite_app) == {first: (3, 1), second: (0, 2), third: (0, 0)}
    assert flush(store, sqlite_app) == 0
    cache.count_hit(store, first)
    assert flush(store, sqlite_app) == 1
    assert hits(sqlite_app)[first] == (4, 1)


def test_flush_inside_the_callers_transaction_leaves_the_commit_to_the_caller(
    store: Store, sqlite_app: Flask, request_ids: list[int]
) -> None:
    cache.count_hit(store, request_ids[0])
    with db.engine.connect() as connection:
        connection.begin()
        assert cache.flush_hits(store, connection, requests_table(sqlite_app)) == 1
        assert connection.in_transaction()
        connection.commit()
    assert hits(sqlite_app)[request_ids[0]] == (1, 0)


def test_counts_survive_a_failed_flush(store: Store, sqlite_app: Flask, request_ids: list[int]) -> None:
    cache.count_hit(store, request_ids[0])
    cache.count_hit(store, request_ids[0], stale=True)
    missing = sa.Table(
        "no_such_table",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cache_hits", sa.Integer),
        sa.Column("stale_hits", sa.Integer),
    )
    with db.engine.connect() as connection, pytest.raises(sa.exc.OperationalError):
        cache.flush_hits(store, connection, missing)
    assert flush(store, sqlite_app) == 1
    assert hits(sqlite_app)[request_ids[0]] == (1, 1)


def test_concurrent_counting_and_flushing_lose_and_double_nothing(
    store: Store, sqlite_app: Flask, request_ids: list[int]
) -> None:
    store.clock = time.time
    per_thread, counters = 200, 3
    done = threading.Event()

    def count() -> None:
        for n in range(per_thread):
            cache.count_hit(store, request_ids[n % 3], stale=n % 5 == 0)

    def flush_repeatedly() -> None:
        with sqlite_app.app_context():
            while not done.is_set():
                flush(store, sqlite_app)
                time.sleep(0.005)

    flushers = [threading.Thread(target=flush_repeatedly) for _ in range(2)]
    workers = [threading.Thread(target=count) for _ in range(counters)]
    for thread in flushers + workers:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    for thread in flushers:
        thread.join()
    flush(store, sqlite_app)
    totals = hits(sqlite_app)
    stale = sum(1 for n in range(per_thread) if n % 5 == 0) * counters
    assert sum(h for h, _ in totals.values()) == per_thread * counters - stale
    assert sum(s for _, s in totals.values()) == stale


def test_flush_due_once_per_interval_across_processes(store: Store) -> None:
    store.clock = time.time
    assert cache.flush_due(store, interval=0.2) is True
    assert cache.flush_due(store, interval=0.2) is False  # this process checked just now
    store.after_fork()  # another process (a forked child) has not checked yet
    assert cache.flush_due(store, interval=0.2) is False  # the shared claim is still held
    time.sleep(0.25)
    assert cache.flush_due(store, interval=0.2) is True
