"""Circuit breaker per integration, shared by every process through the store.

closed → open when `threshold` consecutive upstream failures are recorded →
half-open once `cooldown` has passed, where exactly one attempt across all
processes (the probe) may go out → closed on the probe's success, open again
with a fresh cooldown on its upstream failure. A probe that ends any other way
(client error, throttle, unknown) releases its claim so the next caller
probes; a probe that dies loses its claim when it expires (2 × cooldown).

Keys (under the store's prefix):

- ``breaker:{id}:failures`` consecutive upstream failures (absent = 0);
- ``breaker:{id}:open`` the time the cooldown ends (absent = closed; present
  and past = half-open);
- ``breaker:{id}:probe`` the probe's claim, a token lock.

The path with nothing wrong costs no round trip: the pipeline reads both keys
through `store.get_many_tracked` (one MGET, then local copies that Redis
invalidates on any write; see store_tracking.py), and a success writes nothing
unless failures were seen. Only `upstream` failures count; other classes neither count nor
reset. With the store unreachable the breaker is closed (fail open).
"""

from __future__ import annotations

import threading
from typing import Any

from ..db.statuses import BreakerState, FailureClass
from ..errors import CircuitOpenError
from ..state.store import Store, fail_open

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

#: How long the open marker and the failure counter outlive their last write. The open
#: marker must outlast any realistic cooldown (it only closes through a probe); the bound
#: keeps keys of deleted integrations from living forever.
STATE_TTL = 7 * 24 * 3600.0


class _Local:
    """What this process remembers between `before_attempt` and `after_attempt`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.probe_tokens: dict[int, str] = {}
        self.failures_seen: dict[int, bool] = {}


def _local(store: Store) -> _Local:
    return store.process_local("breaker", _Local)


def _keys(integration_id: int) -> tuple[str, str, str]:
    base = f"breaker:{integration_id}:"
    return base + "open", base + "failures", base + "probe"


def read_keys(integration_id: int) -> list[str]:
    """The keys `before_attempt` reads, for callers that batch their reads."""
    return list(_keys(integration_id)[:2])


@fail_open(False)
def before_attempt(
    store: Store, integration_id: int, settings: dict[str, Any], known: list[Any] | None = None
) -> bool:
    """Gate one attempt: False = go ahead (closed), True = go ahead as the half-open probe.

    Raises `CircuitOpenError` while the cooldown runs or while another caller holds the probe.
    `known` is the values of `read_keys()` when the caller already fetched them in one round trip.
    """
    if not settings["enabled"]:
        return False
    opened, failures = known if known is not None else store.get_many(read_keys(integration_id))
    _local(store).failures_seen[integration_id] = failures is not None
    if opened is None:
        return False
    return _claim_probe(store, integration_id, float(opened), settings)


def _claim_probe(store: Store, integration_id: int, open_until: float, settings: dict[str, Any]) -> bool:
    now = store.clock()
    if now < open_until:
        raise CircuitOpenError(integration_id, retry_after=open_until - now)
    cooldown = float(settings["cooldown"])
    open_key, _, probe_key = _keys(integration_id)
    token = store.acquire_lock(probe_key, 2 * cooldown)
    if token is None:
        raise CircuitOpenError(integration_id, retry_after=cooldown)
    # A probe that finished just before our claim has already closed or reopened the
    # breaker; it wrote that before releasing its claim, so this read sees it.
    current = store.get(open_key)
    if current is None:
        store.release_lock(probe_key, token)
        return False
    if float(current) > store.clock():
        store.release_lock(probe_key, token)
        raise CircuitOpenError(integration_id, retry_after=float(current) - store.clock())
    with _local(store).lock:
        _local(store).probe_tokens[integration_id] = token
    return True


OPENED, CLOSED_AGAIN = "opened", "closed"


@fail_open(None)
def after_attempt(
    store: Store,
    integration_id: int,
    failure_class: str | None,
    settings: dict[str, Any],
    probe: bool,
) -> str | None:
    """Record an attempt's outcome: None = success, else the failure class of the classifier.

    Returns ``"opened"`` to the one caller whose failure opened a closed breaker and
    ``"closed"`` to the probe whose success closed it (each transition is seen by exactly
    one caller across processes), else None.
    """
    if not settings["enabled"]:
        return None
    open_key, failures_key, _ = _keys(integration_id)
    local = _local(store)
    if failure_class is None:
        if probe:
            store.delete(open_key, failures_key)
            _release_probe(store, integration_id)
            return CLOSED_AGAIN
        if local.failures_seen.get(integration_id, True):
            store.delete(failures_key)
            local.failures_seen[integration_id] = False
        return None
    if failure_class != FailureClass.UPSTREAM:
        if probe:
            _release_probe(store, integration_id)
        return None
    open_until = repr(store.clock() + float(settings["cooldown"]))
    if probe:
        store.set(open_key, open_until, STATE_TTL)
        _release_probe(store, integration_id)
        return None
    local.failures_seen[integration_id] = True
    opens = store.incr(failures_key, 1, STATE_TTL) >= settings["threshold"]
    return OPENED if opens and store.set_if_absent(open_key, open_until, STATE_TTL) else None


def _release_probe(store: Store, integration_id: int) -> None:
    local = _local(store)
    with local.lock:
        token = local.probe_tokens.pop(integration_id, None)
    if token is not None:
        store.release_lock(_keys(integration_id)[2], token)


@fail_open(CLOSED)
def breaker_state(store: Store, integration_id: int, settings: dict[str, Any]) -> str:
    """The state: closed, open (cooldown running) or half-open (a probe may go, or is out)."""
    if not settings["enabled"]:
        return CLOSED
    opened = store.get(_keys(integration_id)[0])
    if opened is None:
        return CLOSED
    return OPEN if store.clock() < float(opened) else HALF_OPEN


@fail_open(False)
def reset(store: Store, integration_id: int) -> bool:
    """Close the breaker and forget its failures (the dashboard's "reset breaker").

    True when it was open or half-open: this call closed it."""
    local = _local(store)
    with local.lock:
        local.probe_tokens.pop(integration_id, None)
        local.failures_seen.pop(integration_id, None)
    open_key, failures_key, probe_key = _keys(integration_id)
    closed = store.delete(open_key) == 1  # one caller deletes the marker, whoever else resets
    store.delete(failures_key, probe_key)
    return closed
