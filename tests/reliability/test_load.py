"""Load: mixed traffic at a fixed rate against a real deployment on loopback.

gunicorn (2 gthread workers) serves tests/helpers/load_app.py in Redis mode on
PostgreSQL; two `flask integrations worker` processes (one forking per job, the
default, and one ``--simple``) process webhooks and sync items; a loopback
upstream process answers the outbound calls. The generator in this process
sends `RATE` requests a second on a fixed timetable (open model: each request
leaves at its due time whatever the earlier ones are doing) for `load_seconds`,
capped in count and by a deadline, plus a sync every `SYNC_EVERY` seconds.

Afterwards the queues drain and the test checks what SPEC promises (every
acknowledged webhook processed exactly once, every sync item terminal, every
run finalised, the cursor where the items allow, every live call logged) and
the bounds below, and writes the figures to ``<figures_dir>/load.json``.

60 s in CI; the long run is ``pytest tests/reliability/test_load.py --load-seconds 600``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import load as ls
from tests.helpers.app import ROOT
from tests.helpers.load_app import SEEN_TABLES, create_app
from tests.helpers.servers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

#: requests per second of the timetable: on the 2-core reference machine the deployment's own
#: processes use about half of its CPU at this rate (RELIABILITY.md, "Load"); INTEGRATIONS_LOAD_RATE
#: changes it
RATE = float(os.environ.get("INTEGRATIONS_LOAD_RATE", "40"))
SYNC_EVERY = 5.0
SYNC_ITEMS = 50
#: memory is compared from the end of the warm-up (imports, pools, caches filled) to the end of the load
WARMUP_SECONDS = 15.0
#: bounds the test asserts (why: RELIABILITY.md, "Load")
MAX_ERROR_RATE = 0.01
MAX_P99_MS = 2000.0
MAX_GROWTH_MB = 20.0


@pytest.fixture
def deployment(postgres_url, redis_url, tmp_path, monkeypatch):
    """App, upstream, gunicorn and RQ workers on loopback; yields a dict of what the test needs."""
    import redis

    from tests.conftest import reset_tables
    from tests.helpers.app import db

    queue, prefix = f"load-{uuid.uuid4().hex[:10]}", f"load-{uuid.uuid4().hex[:8]}:"
    processes = []
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LOAD_DATABASE_URL": postgres_url,
        "LOAD_REDIS_URL": redis_url,
        "LOAD_REDIS_PREFIX": prefix,
        "LOAD_QUEUE": queue,
        "LOAD_SYNC_ITEMS": str(SYNC_ITEMS),
    }
    try:
        upstream = ls.start(
            [ls.python(), "-m", "tests.helpers.load_app", "upstream"],
            env,
            logs / "upstream.log",
            stdout=subprocess.PIPE,
        )
        processes.append(upstream)
        env["LOAD_UPSTREAM_URL"] = upstream.stdout.readline().strip()
        assert env["LOAD_UPSTREAM_URL"].startswith("http://127.0.0.1:"), (logs / "upstream.log").read_text()
        for key, value in env.items():
            if key.startswith("LOAD_"):
                monkeypatch.setenv(key, value)

        app = create_app()
        with app.app_context():
            reset_tables()
            with db.engine.begin() as connection:
                for statement in SEEN_TABLES:
                    connection.execute(sa.text(statement))
                connection.execute(sa.text("TRUNCATE load_webhook_seen, load_sync_seen"))
            integrations = app.extensions["integrations"]
            secret = f"whsec-{uuid.uuid4().hex}"
            ids = {
                "shop": integrations.create("shop", "Shop", {"api_key": "sk-load"}).id,
                "hooks": integrations.create("hooks", "Hooks", {"signing_secret": secret}).id,
                "feed": integrations.create("feed", "Feed", {}).id,
            }
            db.session.remove()

        port = free_port()
        gunicorn = ls.start(
            [
                ls.python(),
                "-m",
                "gunicorn",
                "tests.helpers.load_app:create_app()",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--timeout",
                "60",
                "--graceful-timeout",
                "15",
                "--keep-alive",
                "10",
                *_no_control_socket(),
            ],
            env,
            logs / "gunicorn.log",
        )
        processes.append(gunicorn)
        worker_command = [
            ls.python(),
            "-m",
            "flask",
            "--app",
            "tests.helpers.load_app:create_app",
            "integrations",
            "worker",
        ]
        workers = {
            "rq_fork": ls.start(worker_command, env, logs / "rq_fork.log"),
            "rq_simple": ls.start([*worker_command, "--simple"], env, logs / "rq_simple.log"),
        }
        processes.extend(workers.values())

        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(base_url, gunicorn, workers, redis_url, queue, logs)
        web = ls.children(gunicorn.pid)
        assert len(web) == 2, web
        yield {
            "app": app,
            "base_url": base_url,
            "redis_url": redis_url,
            "redis_prefix": prefix,
            "ids": ids,
            "secret": secret,
            "pids": {"web_1": web[0], "web_2": web[1], **{k: p.pid for k, p in workers.items()}},
            "gunicorn": gunicorn,
            "workers": workers,
            "logs": logs,
        }
    finally:
        for process in reversed(processes):
            ls.stop(process)
        client = redis.Redis.from_url(redis_url)
        for pattern in (f"{prefix}*", f"rq:*{queue}*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        client.close()


def _no_control_socket() -> list[str]:
    """gunicorn 27 opens a control socket at ~/.gunicorn/gunicorn.ctl, shared by every gunicorn of the
    user (other tests' servers included): this one does without."""
    import gunicorn

    return ["--no-control-socket"] if int(gunicorn.__version__.split(".")[0]) >= 27 else []


def _wait_ready(base_url, gunicorn, workers, redis_url, queue, logs: Path, timeout: float = 45) -> None:
    import httpx
    import redis
    from rq import Queue, Worker

    connection = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in [("gunicorn", gunicorn), *workers.items()]:
            if process.poll() is not None:
                pytest.fail(f"{name} exited at start-up:\n{_tail(logs / f'{name}.log')}")
        try:
            web_up = httpx.get(f"{base_url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            web_up = False
        registered = len(Worker.all(connection=connection, queue=Queue(queue, connection=connection)))
        if web_up and registered == len(workers) and len(ls.children(gunicorn.pid)) == 2:
            connection.close()
            return
        time.sleep(0.3)
    pytest.fail("the deployment did not come up:\n" + "\n".join(_tail(p) for p in sorted(logs.iterdir())))


def _tail(path: Path, lines: int = 30) -> str:
    return f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _lag_ms(interval: sa.ColumnElement, *where: sa.ColumnElement) -> dict[str, float | None]:
    """p50/p99/max of a timestamp difference over the rows matching `where` (PostgreSQL), in ms."""
    from tests.helpers.app import db

    seconds = sa.extract("epoch", interval)
    row = db.session.execute(
        sa.select(
            sa.func.percentile_cont(0.5).within_group(seconds),
            sa.func.percentile_cont(0.99).within_group(seconds),
            sa.func.max(seconds),
        ).where(interval.is_not(None), *where)
    ).one()
    values = [None if v is None else round(float(v) * 1000, 1) for v in row]
    return dict(zip(("p50", "p99", "max"), values, strict=True))


def _hits_not_yet_written(redis_url: str, prefix: str) -> int:
    """Cache hits counted in Redis that no call has flushed to their request rows yet."""
    import redis

    from flask_integrations.pipeline.cache import HITS_KEY

    client = redis.Redis.from_url(redis_url)
    try:
        return sum(int(v) for v in client.hgetall(prefix + HITS_KEY).values())
    finally:
        client.close()


def _end_state(state_app) -> dict:
    from tests.helpers.app import db

    with state_app.app_context():
        t = state_app.extensions["integrations"].state_for(state_app).tables
        q = db.session.execute
        webhooks = dict(
            q(sa.select(t["webhooks"].c.status, sa.func.count()).group_by(t["webhooks"].c.status)).all()
        )
        items = dict(
            q(sa.select(t["sync_items"].c.status, sa.func.count()).group_by(t["sync_items"].c.status)).all()
        )
        logs = t["logs"]
        runs = dict(
            q(
                sa.select(logs.c.status, sa.func.count())
                .where(logs.c.operation == "sync", logs.c.parent_id.is_(None))
                .group_by(logs.c.status)
            ).all()
        )
        db.session.remove()
    return {"webhooks": webhooks, "items": items, "runs": runs}


def _drained(state: dict) -> bool:
    return (
        not any(state["webhooks"].get(s) for s in ("pending", "processing"))
        and not any(state["items"].get(s) for s in ("pending", "processing"))
        and not state["runs"].get("processing")
    )


def test_mixed_traffic_at_a_fixed_rate(deployment, load_seconds, figures_dir):
    from flask_integrations import Integration
    from tests.helpers.app import db

    app, ids = deployment["app"], deployment["ids"]
    slots = ls.schedule(load_seconds, RATE, SYNC_EVERY)
    cap = int(load_seconds * RATE + load_seconds / SYNC_EVERY) + 1
    generator = ls.LoadGenerator(deployment["base_url"], ids["hooks"], deployment["secret"], cap=cap)
    sampler = ls.MemorySampler(deployment["pids"], every=5.0).start()
    sampler.mark("start")
    cpu_start = {name: ls.cpu_seconds(pid) for name, pid in deployment["pids"].items()}
    cpu_start["generator"] = ls.cpu_seconds(os.getpid())
    load_start, machine_start = ls.loadavg(), ls.machine_cpu()
    warm = min(WARMUP_SECONDS, load_seconds / 4)

    def on_tick(offset: float) -> None:
        if "warm" not in sampler.marks and offset >= warm:
            sampler.mark("warm")

    began = time.monotonic()
    start, sent_until = generator.run(slots, deadline=began + load_seconds + 2, on_tick=on_tick)
    finished = time.monotonic()
    sampler.mark("end")
    load_end, machine_end = ls.loadavg(), ls.machine_cpu()
    cpu_end = {name: ls.cpu_seconds(pid) for name, pid in deployment["pids"].items()}
    cpu_end["generator"] = ls.cpu_seconds(os.getpid())

    # drain: every queued webhook and item reaches a terminal status
    drain_deadline = time.monotonic() + 60 + load_seconds / 10
    state = _end_state(app)
    while not _drained(state) and time.monotonic() < drain_deadline:
        time.sleep(0.5)
        state = _end_state(app)
    drain_seconds = time.monotonic() - finished
    sampler.mark("drained")
    sampler.stop()
    web_after = ls.children(deployment["gunicorn"].pid)

    results = generator.results
    by_kind: dict[str, list[ls.Result]] = defaultdict(list)
    for result in results:
        by_kind[result.kind].append(result)
    errors = [r for r in results if not r.ok]
    late = [r for r in results if r.sent - r.due > 0.1]

    with app.app_context():
        t = app.extensions["integrations"].state_for(app).tables
        seen_webhooks = Counter(
            db.session.execute(sa.text("SELECT webhook_id FROM load_webhook_seen")).scalars().all()
        )
        seen_items = Counter(db.session.execute(sa.text("SELECT n FROM load_sync_seen")).scalars().all())
        requests = t["requests"]
        request_rows = dict(
            db.session.execute(
                sa.select(requests.c.endpoint, sa.func.count())
                .where(requests.c.status_code == 200)
                .group_by(requests.c.endpoint)
            ).all()
        )
        idempotency_rows = db.session.scalar(sa.select(sa.func.count()).select_from(t["idempotency_keys"]))
        hits_written = db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(requests.c.cache_hits), 0)).where(
                requests.c.endpoint == "catalog"
            )
        )
        webhook_lag = _lag_ms(t["webhooks"].c.processed_at - t["webhooks"].c.created_at)
        logs = t["logs"]
        run_duration = _lag_ms(
            logs.c.updated_at - logs.c.created_at,
            logs.c.operation == "sync",
            logs.c.parent_id.is_(None),
            logs.c.status == "success",
        )
        shop = db.session.get(Integration, ids["shop"])
        shop_health = {
            "health_status": shop.health_status,
            "consecutive_failures": shop.consecutive_failures,
            "breaker": shop.breaker_state(),
        }
        cursor = db.session.scalar(
            sa.select(t["integrations"].c.sync_cursor).where(t["integrations"].c.id == ids["feed"])
        )
        db.session.remove()

    hits_counted = _hits_not_yet_written(deployment["redis_url"], deployment["redis_prefix"])
    acknowledged = {d.id for d in generator.acknowledged}
    syncs_started = sum(1 for r in by_kind["sync"] if r.ok and r.body["started"])
    log_text = {p.name: p.read_text(errors="replace") for p in deployment["logs"].iterdir()}
    tracebacks = {name: text.count("Traceback") for name, text in log_text.items() if "Traceback" in text}
    memory = sampler.report()
    ok_count = Counter(r.kind for r in results if r.ok)
    figures = {
        "load_seconds": load_seconds,
        "rate_per_s": RATE,
        "sync_every_s": SYNC_EVERY,
        "sync_items_per_run": SYNC_ITEMS,
        "deployment": "gunicorn 2 gthread workers x 4 threads; RQ workers: 1 forking + 1 --simple; "
        "PostgreSQL, Redis and the upstream on loopback",
        "cpus": os.cpu_count(),
        "planned": min(len(slots), cap),
        "cap": cap,
        "sent": len(results),
        "sending_s": round(sent_until - start, 1),
        "duration_s": round(finished - began, 1),
        "achieved_rate_per_s": round(len(results) / max(sent_until - start, 1e-9), 1),
        "late_sends_over_100ms": len(late),
        "errors": len(errors),
        "error_rate": round(len(errors) / max(len(results), 1), 5),
        "errors_by_kind": dict(Counter(r.kind for r in errors)),
        "error_samples": [r.error for r in errors[:10]],
        "latency_ms": {
            "all": ls.percentiles([r.done - r.due for r in results]),
            **{kind: ls.percentiles([r.done - r.due for r in rs]) for kind, rs in sorted(by_kind.items())},
        },
        "service_ms_all": ls.percentiles([r.done - r.sent for r in results]),
        "latency_ms_after_warmup": ls.percentiles([r.done - r.due for r in results if r.due - start >= warm]),
        "p99_ms_per_10s": ls.windows(results, start, 10.0),
        "webhooks": {
            "acknowledged": len(acknowledged),
            "duplicates_answered": len(generator.duplicates),
            "rejected_401": ok_count["webhook_bad"],
            "rows_by_status": state["webhooks"],
            "received_to_processed_ms": webhook_lag,
            "handled_once": sum(1 for w in acknowledged if seen_webhooks[w] == 1),
            "handled_more_than_once": sum(1 for w in acknowledged if seen_webhooks[w] > 1),
            "not_handled": sum(1 for w in acknowledged if seen_webhooks[w] == 0),
            "handled_but_not_acknowledged": len(set(seen_webhooks) - acknowledged),
        },
        "sync": {
            "runs_started": syncs_started,
            "runs_by_status": state["runs"],
            "run_duration_ms": run_duration,
            "items_by_status": state["items"],
            "cursor": cursor,
            "entries_handled": len(seen_items),
            "entries_handled_more_than_once": sum(1 for c in seen_items.values() if c > 1),
        },
        "request_rows_200": request_rows,
        "cache": {
            "cached_calls": ok_count["cached"],
            "live_calls": request_rows.get("catalog", 0),
            "hits_written": hits_written,
            "hits_counted_not_yet_written": hits_counted,
        },
        "shop_health_after": shop_health,
        "idempotency_rows": idempotency_rows,
        "drain_s": round(drain_seconds, 1),
        "memory_mb": memory,
        "memory_series_mb": sampler.series,
        "cpu_s_during_load": {
            name: round(cpu_end[name] - cpu_start[name], 1)
            for name in cpu_start
            if cpu_start[name] is not None and cpu_end[name] is not None
        },
        "machine_cpu_busy_share": ls.busy_share(machine_start, machine_end),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "tracebacks_in_logs": tracebacks,
        "web_workers_restarted": sorted(web_after)
        != sorted([deployment["pids"]["web_1"], deployment["pids"]["web_2"]]),
    }
    (figures_dir / "load.json").write_text(json.dumps(figures, indent=2, default=str))
    summary = {k: figures[k] for k in ("sent", "error_rate", "drain_s", "webhooks", "sync")}
    print(json.dumps(summary, indent=1, default=str))

    # the run was what it claims: bounded, and at the rate asked
    assert len(results) <= cap
    assert finished - began < load_seconds + 20
    assert figures["achieved_rate_per_s"] > 0.9 * RATE, figures
    assert not tracebacks, {name: _tail(deployment["logs"] / name, 60) for name in tracebacks}
    assert not figures["web_workers_restarted"]
    # nothing acknowledged is lost; each webhook and item ends once
    assert _drained(state), state
    assert set(state["webhooks"]) <= {"processed", "duplicate"}, state["webhooks"]
    assert figures["webhooks"]["handled_once"] == len(acknowledged) > 0, figures["webhooks"]
    assert figures["webhooks"]["handled_but_not_acknowledged"] == 0
    assert state["webhooks"].get("processed") == len(acknowledged)
    assert state["webhooks"].get("duplicate", 0) == len(generator.duplicates)
    assert all(original == answered for original, answered in generator.duplicates)
    # a rejected signature stores nothing: the rows are the acknowledged deliveries and their duplicates
    assert sum(state["webhooks"].values()) == len(acknowledged) + len(generator.duplicates)
    assert set(state["items"]) == {"success"}, state["items"]
    assert state["runs"] == {"success": syncs_started}, state["runs"]
    assert cursor == syncs_started * SYNC_ITEMS
    assert sorted(seen_items) == list(range(1, syncs_started * SYNC_ITEMS + 1))
    # every live call that answered is logged
    assert request_rows.get("items") == ok_count["item"]
    assert request_rows.get("orders.create") == ok_count["order"] == idempotency_rows
    assert request_rows.get("feed.since") == syncs_started
    # every cache hit is accounted for (written to its row, or counted in Redis until the next flush)
    assert request_rows.get("catalog", 0) + hits_written + hits_counted == ok_count["cached"], figures[
        "cache"
    ]
    assert shop_health == {"health_status": "healthy", "consecutive_failures": 0, "breaker": "closed"}
    # errors and latency
    assert figures["error_rate"] < MAX_ERROR_RATE, figures["error_samples"]
    # once warm (the first request of each process imports and connects: about a second, see
    # latency_ms for the whole run)
    assert figures["latency_ms_after_warmup"]["p99"] < MAX_P99_MS, figures["latency_ms_after_warmup"]
    # memory: no process grows without bound once warm
    for name, figures_of in memory.items():
        assert figures_of["growth_after_warmup"] is not None, (name, figures_of)
        assert figures_of["growth_after_warmup"] < MAX_GROWTH_MB, (name, memory)
