"""Ids and per-id state (SPEC 2, security round 2): nothing of a deleted integration reaches another.

Promise: `integrations.delete()` removes every row and every piece of shared state kept under
the integration's id (cached responses, breaker, rate limit, refresh lock), and no table hands
out a deleted row's id again, SQLite included.

How: every feature that keeps state under an id is exercised on one integration (cached calls,
a breaker opened by upstream failures with a probe claimed, a limiter window and an upstream's
suppression, a keyed call, a refresh lock, an operation log, a mapping, a sync item, a webhook).
The integration is deleted; then no store key that names its id may remain (found by scanning
the store, so a new kind of key is caught too), no row may point at it, and a new integration
given the same id on purpose (the worst case, which the database itself never does) must start
clean. Each table's newest row is then deleted and a new one inserted: its id must be new.
Memory and Redis stores, SQLite and PostgreSQL; figures go to `id_reuse.json`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
import sqlalchemy as sa

from flask_integrations import Provider
from flask_integrations.clock import utcnow
from flask_integrations.pipeline import breaker, ratelimit
from flask_integrations.state.memory_store import MemoryStore
from flask_integrations.state.store import Store
from tests.helpers.app import db
from tests.helpers.upstream import UpstreamServer

FIGURES: dict[str, Any] = {}


@dataclasses.dataclass
class Creds:
    token: str


class Limited(Provider):
    credential_class = Creds
    rate_limit = 100


class Owner:
    """A mapped object of the app's own, for a mapping."""


@pytest.fixture
def server(upstream_server):
    return upstream_server


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def app(request, app_factory, server):
    config: dict[str, Any] = {"INTEGRATIONS_RETRY_AFTER_MAX": 0.01}
    if request.param == "redis":
        import redis

        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
        config["INTEGRATIONS_REDIS_URL"] = url
    server.reset()
    Limited.base_url = server.url
    app = app_factory(**config)
    app.extensions["integrations"].register("limited", Limited)
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture(scope="module", autouse=True)
def _figures(figures_dir):
    yield
    (figures_dir / "id_reuse.json").write_text(json.dumps(FIGURES, indent=2, sort_keys=True))


def keys_naming(store: Store, integration_id: int) -> list[str]:
    """Every key of the store that names the integration's id as one of its parts."""
    if isinstance(store, MemoryStore):
        keys = list(store._data)
    else:
        client = store._client()
        keys = [k.removeprefix(store.prefix) for k in client.scan_iter(match=f"{store.prefix}*")]
    pattern = re.compile(rf"(^|:){integration_id}(:|$)")
    return sorted(key for key in keys if pattern.search(key))


def plant_everything(ext: Any, state: Any, server: UpstreamServer) -> tuple[Any, list[str]]:
    """An integration with state in every per-id store; returns it and the key families planted."""
    integration = ext.create("limited", "Tenant A", {"token": "tok-A-0001"})
    store, settings = state.store, state.setting("BREAKER")
    integration.at("cached").with_cache(3600).get("/json")
    integration.at("keyed").with_idempotency_key("order-1").post("/json")
    server.script("/down", [(503, {"error": "down"}, {})] * settings["threshold"])
    for _ in range(settings["threshold"]):
        with pytest.raises(Exception):  # noqa: B017, PT011 - an upstream error, whichever kind
            integration.at("down").with_attempts(1).get("/down")
    store.set(breaker.read_keys(integration.id)[0], repr(store.clock() - 1))  # cooldown over: half-open
    assert breaker.before_attempt(store, integration.id, settings) is True  # this process holds the probe
    ratelimit.report(store, integration.id, retry_after=30)
    integration.log_operation("import", "inbound", "success", summary="one import")
    table = state.tables
    now = utcnow()
    with state.engine().begin() as connection:
        connection.execute(
            sa.insert(table["mappings"]).values(
                integration_id=integration.id,
                external_id="ext-1",
                internal_type="owners",
                internal_id="1",
                created_at=now,
                updated_at=now,
            )
        )
        connection.execute(
            sa.insert(table["sync_items"]).values(
                integration_id=integration.id,
                event_class="e",
                status="pending",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
        connection.execute(
            sa.insert(table["webhooks"]).values(
                integration_id=integration.id,
                provider="limited",
                payload="{}",
                status="pending",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
    if state.setting("REDIS_URL"):
        assert store.acquire_lock(f"oauth-refresh:{integration.id}", 60)
    db.session.commit()
    return integration, keys_naming(store, integration.id)


def test_a_deleted_integration_leaves_nothing_under_its_id(app, server):
    ext = app.extensions["integrations"]
    state = ext.state_for(app)
    integration, planted = plant_everything(ext, state, server)
    gone = integration.id
    families = sorted({key.split(":", 1)[0] for key in planted})
    expected = {"breaker", "cache", "ratelimit"}
    if state.setting("REDIS_URL"):
        expected.add("oauth-refresh")
    assert set(families) == expected, planted
    assert len(planted) >= 6, planted  # breaker: open, failures, probe; limiter: window, until; a cache entry

    ext.delete(integration)

    assert keys_naming(state.store, gone) == []
    local = state.store.process_local("breaker", lambda: None)
    assert gone not in local.probe_tokens and gone not in local.failures_seen
    for kind, table in state.tables.items():
        column = table.c.id if kind == "integrations" else table.c.integration_id
        assert db.session.scalar(sa.select(sa.func.count()).where(column == gone)) == 0, kind

    # The worst case: a new integration given the deleted id starts clean.
    reused = ext.create("limited", "Tenant B", {"token": "tok-B-0002"}, id=gone)
    assert reused.breaker_state() == "closed"
    calls = len(server.requests)
    reused.at("cached").with_cache(3600).get("/json")  # not served from the deleted one's cache
    assert len(server.requests) == calls + 1
    reused.at("keyed").with_idempotency_key("order-1").post("/json")  # the key is free again
    assert state.store.get(ratelimit.read_keys(gone)[0]) is None  # no suppression inherited

    FIGURES[f"{state.engine().dialect.name}-{'redis' if state.setting('REDIS_URL') else 'memory'}"] = {
        "store keys planted": len(planted),
        "key families": families,
        "keys left after delete": 0,
        "tables checked": len(state.tables),
    }


def test_no_table_hands_out_a_deleted_rows_id_again(app):
    ext = app.extensions["integrations"]
    state = ext.state_for(app)
    integration = ext.create("limited", "T", {"token": "tok-C-0003"})
    now = utcnow()
    rows = {
        "logs": {"operation": "o", "direction": "inbound", "status": "success"},
        "mappings": {"external_id": "x", "internal_type": "t", "internal_id": "1"},
        "idempotency_keys": {"key": "k"},
        "sync_items": {"event_class": "e", "status": "pending", "attempts": 0},
        "webhooks": {"provider": "limited", "payload": "{}", "status": "pending", "attempts": 0},
        "requests": {"endpoint": "e", "method": "GET", "cache_hits": 0, "stale_hits": 0},
    }
    checked = {}
    with state.engine().begin() as connection:
        for kind, values in rows.items():
            table = state.tables[kind]
            values = {**values, "integration_id": integration.id, "created_at": now, "updated_at": now}
            if kind == "mappings":
                values["external_id"] = "x1"
            first = connection.execute(sa.insert(table).values(values).returning(table.c.id)).scalar_one()
            connection.execute(sa.delete(table).where(table.c.id == first))
            if kind == "mappings":
                values["external_id"] = "x2"
            second = connection.execute(sa.insert(table).values(values).returning(table.c.id)).scalar_one()
            assert second > first, kind
            checked[kind] = [first, second]
    newest = ext.create("limited", "Newest", {"token": "tok-D-0004"})
    newest_id = newest.id
    ext.delete(newest)
    assert ext.create("limited", "After", {"token": "tok-E-0005"}).id > newest_id
    FIGURES.setdefault("tables never reusing an id", {})[state.engine().dialect.name] = len(checked) + 1
