"""Rate limiting per integration: a shared sliding window plus adaptive suppression.

The window allows `per_minute` attempts in any 60 seconds, counted across
every process (a sorted-set log in Redis, a list in memory). Suppression
records that the upstream asked us to wait (`Retry-After`, or
``remaining == 0`` with a reset time) and holds every caller until then, with
or without a window. Every attempt takes one slot; a refused acquisition
takes none.

Keys: ``ratelimit:{id}:window`` and ``ratelimit:{id}:until``. With the store
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
from ..state.store import Store, fail_open

WINDOW = 60.0
#: Longest single sleep while waiting, so that a longer suppression reported meanwhile
#: by another process is noticed (and raised at once) instead of slept through.
STEP = 0.5
#: A numeric `reset_at` below this is read as seconds from now rather than a Unix time.
EPOCH_THRESHOLD = 1_000_000_000


def _keys(integration_id: int) -> tuple[str, str]:
    base = f"ratelimit:{integration_id}:"
    return base + "window", base + "until"


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
    store.set_max(_keys(integration_id)[1], now + wait, wait)


def _seconds_until(reset_at: float | datetime, now: float) -> float:
    if isinstance(reset_at, datetime):
        return as_utc(reset_at).timestamp() - now
    return reset_at - now if reset_at >= EPOCH_THRESHOLD else reset_at


def read_keys(integration_id: int) -> list[str]:
    """The key `acquire` reads first, for callers that batch their reads."""
    return [_keys(integration_id)[1]]


@fail_open(None)
def acquire(
    store: Store, integration_id: int, per_minute: int | None, max_wait: float, known: list[Any] | None = None
) -> None:
    """Take one slot, waiting up to `max_wait` seconds for one.

    Raises `RateLimitExceeded` (with `retry_after`) at once when the wait is known
    to be longer than what is left of `max_wait`. `per_minute` None or 0 means no
    window; the upstream's suppression applies either way.
    """
    window_key, until_key = _keys(integration_id)
    deadline = time.monotonic() + max_wait
    while True:
        wait = _until_to_wait(store, known[0]) if known is not None else _suppressed_for(store, until_key)
        known = None
        if not wait and per_minute:
            wait = store.window_acquire(window_key, int(per_minute), WINDOW)
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
    """Forget the window and any suppression (tests, dashboard)."""
    store.delete(*_keys(integration_id))
