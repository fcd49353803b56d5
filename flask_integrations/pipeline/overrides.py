"""Runtime overrides: force an integration's breaker open or closed, or change its rate
limit, for a while, without a deploy (`integration.override(...)`, `flask integrations
override`).

Where they are held. With Redis, in the state store under ``override:{id}`` with the
longest expiry as TTL: every call reads that key in the same tracked batch as the
breaker's (no extra round trip), so every process sees a change at once. In the
embedded mode the state store is process memory, which a `flask integrations override`
command could not reach; there the `override` operation logs are the record, and each
process reads an integration's at most once a second (`REFRESH`).

Either way each change is written as an `override` operation log (who changed what,
until when): the audit trail the dashboard shows. A log with ``cleared`` ends every
override before it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..clock import utcnow
from ..db.statuses import Direction, LogStatus
from ..db.transactions import run_detached
from ..errors import ConfigurationError, StoreUnavailable
from ..parsing import parse_number
from ..providers.limits import limits_of, parse_limit
from ..state import AppState
from .writer import NO_BARRIER

logger = logging.getLogger("flask_integrations")

OPERATION = "override"
BREAKER_VALUES = ("open", "closed")
#: Longest an override may last: a forgotten one must not outlive the month.
MAX_TTL = 30 * 86400.0
#: Seconds an embedded-mode process keeps the overrides it read from the database.
REFRESH = 1.0


@dataclass(frozen=True)
class Override:
    """One field's override: `value` is "open"/"closed" for the breaker, a tuple of `Limit` for
    the rate limit; it lapses at `expires_at` (UTC)."""

    value: Any
    expires_at: datetime

    @property
    def seconds_left(self) -> float:
        return max((self.expires_at - utcnow()).total_seconds(), 0.0)


def read_key(integration_id: int) -> str:
    """The store key the pipeline reads with the breaker's (Redis mode)."""
    return f"override:{integration_id}"


# -- changing them ---------------------------------------------------------------------------------


def set_overrides(
    state: AppState, integration_id: int, breaker: str | None, rate_limit: Any, ttl: float
) -> dict[str, Override]:
    """Override the given fields for `ttl` seconds (others keep theirs); returns every override now."""
    fields = _checked(breaker, rate_limit, ttl)
    expires = time.time() + float(ttl)
    _write_log(state, integration_id, {**fields, "expires_at": expires})
    if state.store.shared:
        given = {name: {"value": value, "expires_at": expires} for name, value in fields.items()}
        merged = {**_stored(state, integration_id), **given}
        longest = max(entry["expires_at"] for entry in merged.values()) - time.time()
        state.store.set(read_key(integration_id), json.dumps(merged), max(longest, 0.001))
    _forget_local(state, integration_id)
    return active(state, integration_id)


def clear(state: AppState, integration_id: int) -> None:
    """End every override of the integration now."""
    _write_log(state, integration_id, {"cleared": True})
    if state.store.shared:
        state.store.delete(read_key(integration_id))
    _forget_local(state, integration_id)


def _checked(breaker: str | None, rate_limit: Any, ttl: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if breaker is not None:
        if breaker not in BREAKER_VALUES:
            raise ConfigurationError(f"override breaker={breaker!r} must be 'open' or 'closed'.")
        fields["breaker"] = breaker
    if rate_limit is not None:
        value = parse_limit(rate_limit) if isinstance(rate_limit, str) else rate_limit
        fields["rate_limit"] = [str(limit) for limit in limits_of(value, "override rate_limit")]
    if not fields:
        raise ConfigurationError("override needs breaker= or rate_limit= (clear_overrides() ends them).")
    seconds = parse_number(ttl)
    if seconds is None or not 0 < seconds <= MAX_TTL:
        raise ConfigurationError(
            f"override ttl={ttl!r} must be a number of seconds above 0, at most 30 days."
        )
    return fields


def _write_log(state: AppState, integration_id: int, metadata: dict[str, Any]) -> None:
    logs = state.tables["logs"]
    now = utcnow()
    if metadata.get("cleared"):
        summary = "Overrides cleared"
    else:
        parts = [f"breaker {metadata['breaker']}"] if "breaker" in metadata else []
        parts += [f"rate limit {', '.join(metadata['rate_limit'])}"] if "rate_limit" in metadata else []
        until = datetime.fromtimestamp(metadata["expires_at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        summary = f"Override: {' and '.join(parts)} until {until}"
    row = {
        "integration_id": integration_id,
        "operation": OPERATION,
        "direction": Direction.OUTBOUND,
        "status": LogStatus.SUCCESS,
        "summary": summary,
        "metadata": metadata,
        "created_at": now,
        "updated_at": now,
    }
    run_detached(
        state.db.session, state.engine(), lambda connection: connection.execute(sa.insert(logs), row)
    )


# -- reading them ----------------------------------------------------------------------------------


def active(state: AppState, integration_id: int, known: Any = None, read: bool = True) -> dict[str, Override]:
    """The integration's overrides in force: {"breaker": Override, "rate_limit": Override}.

    `known` is the value of `read_key` when the caller already fetched it (Redis mode);
    `read=False` says it did, and it was absent. Unreadable overrides count as none.
    """
    if state.store.shared:
        if known is None and read:
            try:
                known = state.store.get(read_key(integration_id))
            except StoreUnavailable:
                known = None
        entries = json.loads(known) if known else {}
    else:
        entries = _from_database(state, integration_id)
    now = time.time()
    return {
        name: Override(_value(name, entry["value"]), datetime.fromtimestamp(entry["expires_at"], UTC))
        for name, entry in entries.items()
        if entry["expires_at"] > now
    }


def _value(name: str, stored: Any) -> Any:
    return tuple(parse_limit(text) for text in stored) if name == "rate_limit" else stored


def _stored(state: AppState, integration_id: int) -> dict[str, Any]:
    raw = state.store.get(read_key(integration_id))
    return json.loads(raw) if raw else {}


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[int, tuple[float, dict[str, Any]]] = {}


def _cache(state: AppState) -> _Cache:
    return state.store.process_local("overrides", _Cache)


def _forget_local(state: AppState, integration_id: int) -> None:
    cache = _cache(state)
    with cache.lock:
        cache.entries.pop(integration_id, None)


def _from_database(state: AppState, integration_id: int) -> dict[str, Any]:
    cache = _cache(state)
    found = cache.entries.get(integration_id)
    if found is not None and time.monotonic() - found[0] < REFRESH:
        return found[1]
    try:
        entries = _read_logs(state, [integration_id]).get(integration_id, {})
    except Exception:  # noqa: BLE001 - an unreadable database must not fail the call: keep what was known
        logger.warning("flask-integrations: could not read the overrides of integration %s", integration_id)
        entries = found[1] if found is not None else {}
    with cache.lock:
        cache.entries[integration_id] = (time.monotonic(), entries)
    return entries


def prefetch(state: AppState, integration_ids: list[int]) -> None:
    """Read the overrides of many integrations in one query (a page listing them), embedded mode."""
    if state.store.shared or not integration_ids:
        return
    found = _read_logs(state, integration_ids)
    cache = _cache(state)
    with cache.lock:
        for integration_id in integration_ids:
            cache.entries[integration_id] = (time.monotonic(), found.get(integration_id, {}))


def _read_logs(state: AppState, integration_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per integration, newest first, each field's latest setting, stopping at a `cleared` log."""
    logs = state.tables["logs"]
    query = (
        sa.select(logs.c.integration_id, logs.c.metadata)
        .where(
            logs.c.integration_id.in_(integration_ids),
            logs.c.operation == OPERATION,
            logs.c.created_at >= utcnow() - timedelta(seconds=MAX_TTL),
        )
        .order_by(logs.c.id.desc())
    )
    with state.engine().connect() as connection:  # override logs, never request rows: no waiting
        rows = connection.execution_options(**{NO_BARRIER: True}).execute(query).all()
    entries: dict[int, dict[str, Any]] = {}
    ended: set[int] = set()
    for integration_id, metadata in rows:
        metadata = metadata or {}
        if integration_id in ended:
            continue
        if metadata.get("cleared"):
            ended.add(integration_id)
            continue
        found = entries.setdefault(integration_id, {})
        for name in ("breaker", "rate_limit"):
            if name in metadata and name not in found:
                found[name] = {"value": metadata[name], "expires_at": float(metadata["expires_at"])}
    return entries


def effective_limits(provider_limits: Any, forced: dict[str, Override]) -> Any:
    """The windows a call is held by: the override's when one is in force, else the provider's."""
    override = forced.get("rate_limit")
    return list(override.value) if override is not None else provider_limits
