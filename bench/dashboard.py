"""Dashboard pages on large tables, against a plain `count(*)` measured in the same run.

    python bench/dashboard.py [--database postgresql|sqlite|both] [--integrations 1000]
                              [--requests 1000000] [--rounds 7] [--postgres URL] [--sqlite PATH]

PostgreSQL: the URL comes from `--postgres`, else `INTEGRATIONS_BENCH_POSTGRES_URL`, else a
database of its own (`fi_dashboard_bench`, created when missing). SQLite: a file of its own
(`--sqlite`, default `fi_dashboard_bench.db` in the temporary directory). Every run drops and
recreates the package's tables there, then seeds them in SQL (`generate_series` on PostgreSQL, a
recursive CTE on SQLite): `--integrations` integrations over four providers and four health
states, `--requests` request rows spread over the last 48 hours (about 8% failures), and on
PostgreSQL some operation logs, webhooks and sync items. It measures, `--rounds` times each after
one warm-up, the median of:

- the baseline: `SELECT count(*)` over the same request rows;
- the overview page, `GET {prefix}/dashboard/` through the Flask test client (200 asserted);
- one integration's page, and the overview filtered by provider and health;
- the requests explorer's first page with no filter and with each filter alone (the window
  among them: 30d holds every row), a rare combination and a provider request id;

On PostgreSQL twice: on fresh rows (ANALYZE only, autovacuum held off: no visibility map yet, so
every scan visits the heap, as it does for the newest rows of a busy table), then after `VACUUM
ANALYZE` (index-only scans possible). It prints each median, its ratio to that phase's baseline
and the SQL statements the page ran. The targets: the overview "well under a second" (SPEC
section 9), the explorer's first page under 300 ms with any filter (SPEC section 14).
`--reuse` measures the tables a previous run left, without seeding.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_support import reachable  # noqa: E402

from flask_integrations import Integrations, Provider  # noqa: E402
from flask_integrations.clock import utcnow  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/fi_dashboard_bench"
PROVIDERS = ("crm", "billing", "tickets", "storage")
KEY = Fernet.generate_key().decode()
db = SQLAlchemy()


class Bench(Provider):
    sync_interval = 15


def build_app(database_url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=database_url,
        INTEGRATIONS_ENCRYPTION_KEYS=[KEY],
        INTEGRATIONS_PROVIDERS={key: Bench for key in PROVIDERS},
        INTEGRATIONS_DASHBOARD_AUTH=lambda request: True,  # not testing/debug mode: an explicit rule
    )
    db.init_app(app)
    Integrations(app, db=db)
    return app


def seed(app: Flask, integrations: int, requests: int) -> float:
    """Drop, recreate and fill the tables, then ANALYZE them; returns the seconds spent.

    Autovacuum is off on the tables until `vacuum` runs, so the first measurements see rows
    that no VACUUM has visited yet (as the newest rows of a busy table are).
    """
    started = time.perf_counter()
    with app.app_context():
        db.drop_all()
        db.create_all()
        ext = app.extensions["integrations"]
        first = ext.create(PROVIDERS[1], "integration 1", {"token": "t"}, owner_type="Team", owner_id=1).id
        db.session.remove()  # no session transaction stays open across the load and the vacuum
        names = table_names(app)
        now = utcnow()
        statements = [
            # the other integrations copy the first one's (encrypted) credentials
            f"INSERT INTO {names['integrations']} (provider, name, credentials, metadata, owner_type, "
            "owner_id, is_active, health_status, consecutive_failures, last_error_at, last_synced_at, "
            "next_sync_at, sync_interval_minutes, sync_cursor, created_at, updated_at) "
            "SELECT (ARRAY['crm','billing','tickets','storage'])[1 + g % 4], 'integration ' || g, "
            "f.credentials, '{\"team\": \"ops\"}'::jsonb, 'Team', 1 + g % 50, g % 37 <> 0, "
            "CASE WHEN g % 10 < 7 THEN 'healthy' WHEN g % 10 < 9 THEN 'degraded' "
            "     WHEN g % 20 = 9 THEN 'failing' ELSE 'disabled' END, "
            "CASE WHEN g % 10 < 7 THEN 0 ELSE 6 + g % 20 END, "
            "CASE WHEN g % 10 < 7 THEN NULL ELSE :now - interval '5 minutes' END, "
            ":now - (g % 60) * interval '1 minute', :now + (g % 15) * interval '1 minute', 15, "
            "to_jsonb(g * 10), :now - interval '90 days', :now "
            f"FROM generate_series(2, :integrations) AS g, {names['integrations']} AS f WHERE f.id = :first",
            # request rows over the last 48 h; integration ids are 1..N (a fresh sequence)
            f"INSERT INTO {names['requests']} (integration_id, endpoint, method, status_code, "
            "request_data, response_data, error, duration_ms, cache_hits, stale_hits, failure_class, "
            "provider_request_id, created_at, updated_at) "
            "SELECT 1 + (g::bigint * 7919) % :integrations, "
            "(ARRAY['orders','orders/{id}','customers','invoices.create','search'])[1 + g % 5], "
            "(ARRAY['GET','GET','GET','POST','PATCH'])[1 + g % 5], "
            "CASE WHEN g % 25 = 0 THEN 503 WHEN g % 40 = 1 THEN 429 WHEN g % 50 = 2 THEN 404 ELSE 200 END, "
            'NULL, \'{"id": \' || g || \', "status": "ok"}\', '
            "CASE WHEN g % 25 = 0 THEN 'HTTP 503 Service Unavailable' END, "
            "20 + (g::bigint * 37) % 400 + CASE WHEN g % 100 = 0 THEN 2000 ELSE 0 END, 0, 0, "
            "CASE WHEN g % 25 = 0 THEN 'upstream' WHEN g % 40 = 1 THEN 'throttle' "
            "     WHEN g % 50 = 2 THEN 'client' END, "
            "'req-' || g, t, t "
            "FROM generate_series(1, :requests) AS g, "
            "LATERAL (SELECT :now - (:requests - g) * (interval '48 hours' / :requests) AS t) AS stamp",
            # operation logs: a sync run per integration per hour over 48 h, a request log under each
            f"INSERT INTO {names['logs']} (integration_id, operation, direction, status, summary, "
            "metadata, duration_ms, created_at, updated_at) "
            "SELECT 1 + g % :integrations, 'sync', 'inbound', "
            "CASE WHEN g % 17 = 0 THEN 'partial' ELSE 'success' END, 'sync run', "
            "jsonb_build_object('success_count', 20, "
            "                   'failure_count', CASE WHEN g % 17 = 0 THEN 1 ELSE 0 END), "
            "900 + g % 300, t, t FROM generate_series(0, :integrations * 48 - 1) AS g, "
            "LATERAL (SELECT :now - (g / :integrations) * interval '1 hour' AS t) AS stamp",
            f"INSERT INTO {names['logs']} (integration_id, operation, direction, status, summary, "
            "duration_ms, parent_id, created_at, updated_at) "
            "SELECT integration_id, 'fetch', 'outbound', status, 'page fetched', 100, id, created_at, "
            f"created_at FROM {names['logs']} WHERE operation = 'sync'",
            f"INSERT INTO {names['webhooks']} (integration_id, provider, event_type, delivery_id, payload, "
            "headers, status, processed_at, attempts, error, created_at, updated_at) "
            "SELECT 1 + g % :integrations, "
            "(ARRAY['crm','billing','tickets','storage'])[1 + (1 + g % :integrations) % 4], "
            "'order.paid', 'd-' || g, '{\"order\": ' || g || '}', '{}'::jsonb, "
            "CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'processed' END, t, 1, "
            "CASE WHEN g % 50 = 0 THEN 'RuntimeError: handler failed' END, t, t "
            "FROM generate_series(1, 50000) AS g, "
            "LATERAL (SELECT :now - g * interval '3 seconds' AS t) AS stamp",
            f"INSERT INTO {names['sync_items']} (integration_id, batch_id, sync_log_id, event_class, "
            "external_id, checkpoint_value, status, error, attempts, completed_at, created_at, updated_at) "
            "SELECT l.integration_id, md5(l.id::text), l.id, 'order', 'e' || l.id || '-' || n, "
            "to_jsonb(n), CASE WHEN l.status = 'partial' AND n = 1 THEN 'failed' ELSE 'success' END, "
            "CASE WHEN l.status = 'partial' AND n = 1 THEN 'ValueError: malformed' END, 1, "
            "l.created_at, l.created_at, l.created_at "
            f"FROM {names['logs']} AS l, generate_series(1, 5) AS n WHERE l.operation = 'sync'",
        ]
        params = {"now": now, "integrations": integrations, "requests": requests, "first": first}
        with db.engine.begin() as connection:
            for name in names.values():
                connection.execute(sa.text(f"ALTER TABLE {name} SET (autovacuum_enabled = off)"))
            for statement in statements:
                connection.execute(sa.text(statement), params)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for name in names.values():
                connection.execute(sa.text(f"ANALYZE {name}"))
    return time.perf_counter() - started


def vacuum(app: Flask) -> float:
    """VACUUM ANALYZE every table (the visibility map then allows index-only scans); autovacuum back on."""
    started = time.perf_counter()
    with app.app_context(), db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for name in table_names(app).values():
            connection.execute(sa.text(f"VACUUM ANALYZE {name}"))
            connection.execute(sa.text(f"ALTER TABLE {name} RESET (autovacuum_enabled)"))
    return time.perf_counter() - started


def seed_sqlite(app: Flask, integrations: int, requests: int) -> float:
    """Drop, recreate and fill the integrations and request rows on SQLite, then ANALYZE."""
    started = time.perf_counter()
    with app.app_context():
        db.drop_all()
        db.create_all()
        ext = app.extensions["integrations"]
        first = ext.create(PROVIDERS[1], "integration 1", {"token": "t"}, owner_type="Team", owner_id=1).id
        db.session.remove()
        names = table_names(app)
        now = utcnow().timestamp()
        # a UTC timestamp as SQLAlchemy stores it on SQLite ('YYYY-MM-DD HH:MM:SS.ffffff')
        stamp = (
            "printf('%s.%06d', strftime('%Y-%m-%d %H:%M:%S', {t}, 'unixepoch'), "
            "({t} - CAST({t} AS INTEGER)) * 1000000)"
        )
        at = stamp.format(t="(:now - (:requests - g) * (172800.0 / :requests))")
        series = "WITH RECURSIVE s(g) AS (SELECT {start} UNION ALL SELECT g + 1 FROM s WHERE g < {end}) "
        statements = [
            f"INSERT INTO {names['integrations']} (provider, name, credentials, metadata, owner_type, "
            "owner_id, is_active, health_status, consecutive_failures, sync_interval_minutes, created_at, "
            "updated_at) "
            + series.format(start=2, end=":integrations")
            + "SELECT CASE g % 4 WHEN 0 THEN 'crm' WHEN 1 THEN 'billing' WHEN 2 THEN 'tickets' "
            "ELSE 'storage' END, 'integration ' || g, f.credentials, '{\"team\": \"ops\"}', 'Team', "
            "1 + g % 50, g % 37 <> 0, CASE WHEN g % 10 < 7 THEN 'healthy' WHEN g % 10 < 9 THEN 'degraded' "
            "WHEN g % 20 = 9 THEN 'failing' ELSE 'disabled' END, CASE WHEN g % 10 < 7 THEN 0 ELSE 6 END, "
            f"15, f.created_at, f.updated_at FROM s, {names['integrations']} AS f WHERE f.id = :first",
            f"INSERT INTO {names['requests']} (integration_id, endpoint, method, status_code, "
            "request_data, response_data, error, duration_ms, cache_hits, stale_hits, failure_class, "
            "provider_request_id, created_at, updated_at) "
            + series.format(start=1, end=":requests")
            + "SELECT 1 + (g * 7919) % :integrations, "
            "CASE g % 5 WHEN 0 THEN 'orders' WHEN 1 THEN 'orders/{id}' WHEN 2 THEN 'customers' "
            "WHEN 3 THEN 'invoices.create' ELSE 'search' END, "
            "CASE g % 5 WHEN 3 THEN 'POST' WHEN 4 THEN 'PATCH' ELSE 'GET' END, "
            "CASE WHEN g % 25 = 0 THEN 503 WHEN g % 40 = 1 THEN 429 WHEN g % 50 = 2 THEN 404 ELSE 200 END, "
            'NULL, \'{"id": \' || g || \', "status": "ok"}\', '
            "CASE WHEN g % 25 = 0 THEN 'HTTP 503 Service Unavailable' END, "
            "20 + (g * 37) % 400 + CASE WHEN g % 100 = 0 THEN 2000 ELSE 0 END, 0, 0, "
            "CASE WHEN g % 25 = 0 THEN 'upstream' WHEN g % 40 = 1 THEN 'throttle' "
            "     WHEN g % 50 = 2 THEN 'client' END, "
            f"'req-' || g, {at}, {at} FROM s",
        ]
        params = {"now": now, "integrations": integrations, "requests": requests, "first": first}
        with db.engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement), params)
            connection.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


def table_names(app: Flask) -> dict[str, str]:
    tables = app.extensions["integrations"].state_for(app).tables
    return {kind: f'"{table.name}"' for kind, table in tables.items()}


class Counter:
    """Counts the SQL statements the app's engine runs."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: object) -> None:
        self.count += 1


def median_seconds(action: Callable[[], object], rounds: int) -> float:
    action()  # warm-up: templates compiled, connections pooled, plans cached
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def page(client, path: str, expect: str | None = None) -> Callable[[], object]:
    def get() -> object:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
        if expect is not None:
            assert expect in response.text, (path, expect)
        return response

    return get


#: The explorer's first page, with no filter and with each filter alone (SPEC section 14).
EXPLORER_CASES = [
    ("no filter (24h)", ""),
    ("window=1h", "window=1h"),
    ("window=7d", "window=7d"),
    ("window=30d (every row)", "window=30d"),
    ("from/to (one hour, a day ago)", "from={from_}&to={to}"),
    ("provider", "provider=billing"),
    ("integration", "integration=7"),
    ("endpoint prefix", "endpoint=orders/"),
    ("method", "method=PATCH"),
    ("status=404", "status=404"),
    ("status=5xx", "status=5xx"),
    ("status=none (no row)", "status=none&window=30d"),
    ("failure_class=throttle", "failure_class=throttle"),
    ("failure_class=any", "failure_class=any"),
    ("min_duration=2000", "min_duration=2000"),
    ("provider_request_id", "provider_request_id=req-123456&window=30d"),
    ("rare combination, 30d", "window=30d&status=404&method=PATCH&min_duration=2000"),
]
TARGET_MS = 300


def measure(app: Flask, rounds: int, expected_rows: int) -> list[float]:
    """Print the pages' medians; returns the explorer's, in milliseconds."""
    prefix = app.config.get("INTEGRATIONS_URL_PREFIX", "/integrations").rstrip("/")
    with app.app_context():
        table = app.extensions["integrations"].state_for(app).tables["requests"]
        engine = db.engine

    def baseline() -> int:
        with engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

    assert baseline() == expected_rows
    client = app.test_client()
    dash = f"{prefix}/dashboard"
    day_ago = utcnow() - timedelta(days=1)
    cases = [
        ("overview", f"{dash}/", 'data-integration-id="50"'),
        ("integration page", f"{dash}/integrations/1", 'id="activity-chart"'),
        ("overview ?provider&health", f"{dash}/?provider=billing&health=degraded", "health-degraded"),
    ]
    range_args = {
        "from_": day_ago.strftime("%Y-%m-%dT%H:%M"),
        "to": (day_ago + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
    }
    explorer = [
        (f"explorer: {label}", f"{dash}/requests?{query.format(**range_args)}", 'id="figure-count"')
        for label, query in EXPLORER_CASES
    ]
    base = median_seconds(baseline, rounds)
    print(f"  {'SELECT count(*) over requests':<40} {base * 1000:8.1f} ms   1.00x   (baseline)")
    counter = Counter()
    explorer_ms = []
    sa.event.listen(engine, "before_cursor_execute", counter)
    try:
        for label, path, expect in cases + explorer:
            get = page(client, path, expect)
            seconds = median_seconds(get, rounds)
            counter.count = 0
            get()
            print(
                f"  {label:<40} {seconds * 1000:8.1f} ms {seconds / base:6.2f}x   "
                f"{counter.count:2} SQL statements   {path}"
            )
            if label.startswith("explorer"):
                explorer_ms.append(seconds * 1000)
    finally:
        sa.event.remove(engine, "before_cursor_execute", counter)
    slowest = max(explorer_ms)
    verdict = "met" if slowest < TARGET_MS else "NOT met"
    print(f"  explorer's slowest first page: {slowest:.1f} ms (target {TARGET_MS} ms: {verdict})")
    return explorer_ms


def run_postgres(args: argparse.Namespace) -> None:
    if not reachable(args.postgres):
        print("PostgreSQL not reachable: skipped (bash .ci/run starts one)")
        return
    app = build_app(args.postgres)
    print(f"\n== PostgreSQL: {args.integrations:,} integrations, {args.requests:,} request rows over 48 h")
    if not args.reuse:
        print(f"seeded and analysed in {seed(app, args.integrations, args.requests):.1f} s")
        print("fresh rows (ANALYZE only: no VACUUM has set the visibility map, so scans visit the heap)")
        measure(app, args.rounds, args.requests)
        print(f"after VACUUM ANALYZE ({vacuum(app):.1f} s; index-only scans possible)")
    measure(app, args.rounds, args.requests)


def run_sqlite(args: argparse.Namespace) -> None:
    app = build_app(f"sqlite:///{args.sqlite}")
    print(f"\n== SQLite ({args.sqlite}): {args.integrations:,} integrations, {args.requests:,} request rows")
    if not args.reuse or not Path(args.sqlite).exists():
        print(f"seeded and analysed in {seed_sqlite(app, args.integrations, args.requests):.1f} s")
    measure(app, args.rounds, args.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--integrations", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--postgres", default=os.environ.get("INTEGRATIONS_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--sqlite", default=str(Path(tempfile.gettempdir()) / "fi_dashboard_bench.db"))
    parser.add_argument("--reuse", action="store_true", help="measure the tables a previous run left")
    args = parser.parse_args()
    print(f"median of {args.rounds} rounds after one warm-up, through the Flask test client")
    if args.database in ("sqlite", "both"):
        run_sqlite(args)
    if args.database in ("postgresql", "both"):
        run_postgres(args)


if __name__ == "__main__":
    main()
