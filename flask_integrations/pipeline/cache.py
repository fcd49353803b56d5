"""Response cache in the store, with stale copies and hit counts flushed to the request rows.

One store entry per cached call holds the JSON value, the id of the request
row that produced it and the time it stops being fresh; it lives `ttl +
stale_ttl` seconds, so the same entry serves fresh hits and, after its fresh
time, `serve_stale` fallbacks.

Keys are ``cache:{integration_id}:{endpoint digest}:{call digest}``, so that
`forget` removes an integration's entries, or one endpoint's, by prefix.

Hits are counted in one store hash (``cache-hits``; fields ``{request_id}``
and ``{request_id}:stale``), never with a database write per hit;
`flush_hits` takes the hash atomically and adds the counts to the
``{p}_requests`` rows in one transaction. With the store unreachable every
lookup misses and nothing is stored or counted (fail open).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..errors import StoreUnavailable
from ..state.store import Store, fail_open

logger = logging.getLogger("flask_integrations")

HITS_KEY = "cache-hits"
FLUSH_CLAIM_KEY = "cache-hits:flush-claim"
STALE_SUFFIX = ":stale"
#: Rows per executemany inside the one flush transaction.
FLUSH_BATCH = 500


@dataclass(frozen=True)
class CacheEntry:
    """A cached value and the request row that produced it; `stale` once past its fresh time."""

    value: Any
    request_id: int | None
    stale: bool = False


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _prefix(integration_id: int, endpoint: str | None = None) -> str:
    if endpoint is None:
        return f"cache:{integration_id}:"
    return f"cache:{integration_id}:{_digest(endpoint)[:16]}:"


def cache_key(integration_id: int, method: str, endpoint: str, target_name: str, data: Any) -> str:
    """A stable key: the same call gives the same key in every process, whatever the dict order."""
    call = _digest([method.upper(), endpoint, target_name, data])
    return _prefix(integration_id, endpoint) + call


def _load(store: Store, key: str) -> tuple[CacheEntry, float] | None:
    raw = store.get(key)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        return CacheEntry(record["v"], record["r"]), float(record["f"])
    except (ValueError, KeyError, TypeError):
        logger.warning("flask-integrations: ignoring an unreadable cache entry %s", key)
        return None


@fail_open(None)
def get(store: Store, key: str) -> CacheEntry | None:
    """The fresh value, or None (absent, only stale, or the store is unreachable)."""
    loaded = _load(store, key)
    if loaded is None or store.clock() >= loaded[1]:
        return None
    return loaded[0]


@fail_open(None)
def get_stale(store: Store, key: str) -> CacheEntry | None:
    """Whatever copy is kept, fresh or stale (`entry.stale` says which), for `serve_stale`."""
    loaded = _load(store, key)
    if loaded is None:
        return None
    entry, fresh_until = loaded
    if store.clock() >= fresh_until:
        return CacheEntry(entry.value, entry.request_id, stale=True)
    return entry


@fail_open(None)
def put(store: Store, key: str, value: Any, ttl: float, stale_ttl: float, request_id: int | None) -> None:
    """Cache a JSON value for `ttl` seconds, then keep it `stale_ttl` more; other values are skipped."""
    if ttl <= 0:
        return
    fresh_until = store.clock() + ttl
    try:
        record = json.dumps({"v": value, "r": request_id, "f": fresh_until}, separators=(",", ":"))
    except (TypeError, ValueError):
        return
    store.set(key, record, ttl + max(stale_ttl, 0))


@fail_open(None)
def count_hit(store: Store, request_id: int | None, stale: bool = False) -> None:
    """Count a hit on the request row that produced the value; `flush_hits` writes the counts."""
    if request_id is None:
        return
    store.hash_incr(HITS_KEY, {f"{request_id}{STALE_SUFFIX if stale else ''}": 1})
    _checks(store).unflushed = True


def hits_unflushed(store: Store) -> bool:
    """True when this process counted hits that no flush has taken since (no round trip)."""
    return _checks(store).unflushed


class _FlushChecks:
    """When this process last asked whether a flush is due, and whether it counted hits since."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = 0.0
        self.unflushed = False


def _checks(store: Store) -> _FlushChecks:
    return store.process_local("cache-flush-checks", _FlushChecks)


@fail_open(False)
def flush_due(store: Store, interval: float = 10.0) -> bool:
    """True at most once per `interval` across all processes: time to call `flush_hits`.

    Costs no round trip between this process's checks, one at each check.
    """
    checks = _checks(store)
    now = time.monotonic()
    with checks.lock:
        if now - checks.last < interval:
            return False
        checks.last = now
    return store.set_if_absent(FLUSH_CLAIM_KEY, "1", interval)


def flush_hits(
    store: Store,
    connection: sa.Connection,
    requests_table: sa.Table,
    before_write: Callable[[], object] | None = None,
) -> int:
    """Add the counted hits to `cache_hits` / `stale_hits`; returns how many request ids were written.

    The counts are taken from the store atomically, so two processes flushing at
    once never write the same hit twice. One UPDATE per row, all in one
    transaction: the connection's current one if it has begun (the caller
    commits), else one begun and committed here. Rows are updated in id order,
    so concurrent flushers on PostgreSQL cannot deadlock. If the writes fail the
    counts are put back and the error is raised. With the store unreachable,
    returns 0 and the counts wait in Redis.
    """
    try:
        counts = store.hash_take(HITS_KEY)
    except StoreUnavailable:
        return 0
    _checks(store).unflushed = False
    rows: dict[int, list[int]] = {}
    for field, amount in counts.items():
        request_id, stale = (field[: -len(STALE_SUFFIX)], 1) if field.endswith(STALE_SUFFIX) else (field, 0)
        rows.setdefault(int(request_id), [0, 0])[stale] += amount
    if not rows:
        return 0
    if before_write is not None:  # e.g. wait until the rows the hits belong to are written
        before_write()
    try:
        _write_hits(connection, requests_table, rows)
    except BaseException:
        _put_back(store, counts)
        raise
    return len(rows)


def _write_hits(connection: sa.Connection, table: sa.Table, rows: dict[int, list[int]]) -> None:
    statement = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("rid"))
        .values(
            cache_hits=table.c.cache_hits + sa.bindparam("hits", type_=sa.Integer()),
            stale_hits=table.c.stale_hits + sa.bindparam("stale", type_=sa.Integer()),
        )
    )
    params = [{"rid": rid, "hits": hits, "stale": stale} for rid, (hits, stale) in sorted(rows.items())]
    if connection.in_transaction():
        _execute_batches(connection, statement, params)
        return
    with connection.begin():
        _execute_batches(connection, statement, params)


def _execute_batches(connection: sa.Connection, statement: Any, params: list[dict[str, int]]) -> None:
    for start in range(0, len(params), FLUSH_BATCH):
        connection.execute(statement, params[start : start + FLUSH_BATCH])


def _put_back(store: Store, counts: dict[str, int]) -> None:
    try:
        store.hash_incr(HITS_KEY, counts)
        _checks(store).unflushed = True
    except Exception:
        logger.exception(
            "flask-integrations: %d cache hit counts were lost after a failed flush", len(counts)
        )


@fail_open(None)
def forget(store: Store, integration_id: int, endpoint: str | None = None) -> None:
    """Remove an integration's cached entries: all of them, or one endpoint's."""
    store.delete_prefix(_prefix(integration_id, endpoint))
