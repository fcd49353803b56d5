"""Rate limiting per integration: shared sliding windows plus adaptive suppression.

Each `Limit` window allows `n` attempts in any sliding second, minute, hour or
day, counted across every process (a sorted-set log in Redis, a list in
memory); an attempt takes a slot in every window or, when one is full, in
none (one atomic store operation). A plain int is a per-minute window. Suppression
records that the upstream asked us to wait (`Retry-After`, or
``remaining == 0`` with a reset time) and holds every caller until then, with
or without a window. Every attempt takes one slot; a refused acquisition
takes none.

Keys: ``ratelimit:{id}:per:{period}`` (one per window) and ``ratelimit:{id}:until``. With the store
unreachable, acquisitions are allowed (fail open) and reports are dropped.

The `limits` library was considered and not used: it opens its own Redis
connection with its own prefix and error handling, its memory storage starts a
timer thread, it reads the wall clock itself, and getting both "take a slot"
and "how long until one frees" takes two non-atomic calls; the window here is
one short Lua script on the store's own connection.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ..clock import as_utc
from ..errors import RateLimitExceeded
from ..parsing import parse_int, parse_number
from ..providers.limits import Limit, limits_of
from ..state.store import Store, fail_open

#: Longest single sleep while waiting, so that a longer suppression reported meanwhile
#: by another process is noticed (and raised at once) instead of slept through.
STEP = 0.5
#: A numeric `reset_at` below this is read as seconds from now rather than a Unix time.
EPOCH_THRESHOLD = 1_000_000_000


def _prefix(integration_id: int) -> str:
    return f"ratelimit:{integration_id}:"


def _until_key(integration_id: int) -> str:
    return _prefix(integration_id) + "until"


def _windows(integration_id: int, limits: tuple[Limit, ...]) -> list[tuple[str, int, float]]:
    base = _prefix(integration_id) + "per:"
    return [(base + limit.per, limit.n, limit.seconds) for limit in limits]


@fail_open(None)
def report(
    store: Store,
    integration_id: int,
    retry_after: float | None = None,
    remaining: int | None = None,
    reset_at: float | datetime | None = None,
    cap: float = 600.0,
) -> None:
    """Remember that the upstream said wait, for every process; the longest wait reported wins.

    `reset_at` is a datetime, a Unix time, or (below 10^9) seconds from now.
    The wait is capped at `cap` (pass `INTEGRATIONS_RETRY_AFTER_MAX`), so
    a wild header cannot silence an integration for days. Values that are not
    numbers (what a callable passed to `ctx.report` as text, say) are ignored.
    """
    now = store.clock()
    retry_after = parse_number(retry_after)
    if not (isinstance(remaining, int) and not isinstance(remaining, bool)):
        remaining = parse_int(remaining)
    if not isinstance(reset_at, datetime):
        reset_at = parse_number(reset_at)
    waits = []
    if retry_after:
        waits.append(retry_after)
    if remaining is not None and remaining <= 0 and reset_at is not None:
        waits.append(_seconds_until(reset_at, now))
    wait = min(max(waits, default=0.0), cap)
    if wait <= 0:
        return
    store.set_max(_until_key(integration_id), now + wait, wait)


def _seconds_until(reset_at: float | datetime, now: float) -> float:
    if isinstance(reset_at, datetime):
        return as_utc(reset_at).timestamp() - now
    return reset_at - now if reset_at >= EPOCH_THRESHOLD else reset_at


def read_keys(integration_id: int) -> list[str]:
    """The key `acquire` reads first, for callers that batch their reads."""
    return [_until_key(integration_id)]


@fail_open(None)
def acquire(
    store: Store,
    integration_id: int,
    limits: int | Limit | list[Limit] | tuple[Limit, ...] | None,
    max_wait: float,
    known: list[Any] | None = None,
) -> None:
    """Take one slot in every window of `limits`, waiting up to `max_wait` seconds for them.

    Raises `RateLimitExceeded` (with `retry_after`) at once when the wait is known
    to be longer than what is left of `max_wait`. `limits` None means no window
    (an int is per minute); the upstream's suppression applies either way.
    """
    windows = _windows(integration_id, limits_of(limits))
    until_key = _until_key(integration_id)
    deadline = time.monotonic() + max_wait
    while True:
        wait = _until_to_wait(store, known[0]) if known is not None else _suppressed_for(store, until_key)
        known = None
        if not wait and windows:
            wait = store.windows_acquire(windows)
        if not wait:
            return
        left = deadline - time.monotonic()
        if wait > left:
            raise RateLimitExceeded(integration_id, retry_after=wait)
        time.sleep(min(wait, STEP))


def _suppressed_for(store: Store, until_key: str) -> float:
    return _until_to_wait(store, store.get(until_key))


def _until_to_wait(store: Store, until: Any) -> float:
    if until is None:
        return 0.0
    return max(float(until) - store.clock(), 0.0)


@fail_open(None)
def reset(store: Store, integration_id: int) -> None:
    """Forget the windows and any suppression (tests, dashboard, a deleted integration)."""
    store.delete_prefix(_prefix(integration_id))
