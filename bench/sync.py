"""Sync throughput on PostgreSQL + Redis with real workers, against plain RQ in the same run.

    python bench/sync.py [--postgres URL] [--redis URL] [--items 3000] [--steady 30000]
                         [--baseline 1000] [--workers 2]

Prints items per second for:

- end to end: `sync_now()` of a run of `--items` items to its finalised cursor, the clock
  started before `--workers` `flask integrations worker` processes are started;
- steady state: a run of `--steady` items with those workers already running;
- enumeration alone: `sync_integration` in this process (dispatch, inserts, enqueueing);
- the baseline: plain RQ, one no-op job per item, `--workers` `rq worker --burst` processes of
  the same class (forking), the clock started before they are;

and the ratios of the first two to the baseline. The item handler does nothing, as the
baseline's job: what is measured is the engine around it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import sqlalchemy as sa
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_support import reachable  # noqa: E402

KEY = Fernet.generate_key().decode()


def environment(database_url: str, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench")]),
        "BENCH_DATABASE_URL": database_url,
        "BENCH_REDIS_URL": redis_url,
        "BENCH_KEY": KEY,
    }


def start_workers(count: int, env: dict[str, str]) -> list[subprocess.Popen]:
    command = [sys.executable, "-m", "flask", "--app", "bench/sync_app.py", "integrations", "worker"]
    return [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
        for _ in range(count)
    ]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        process.wait(30)


def wait_finalised(app, log_id: int, timeout: float = 600) -> str:
    from flask_integrations import IntegrationLog

    db = app.extensions["sqlalchemy"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        status = db.session.get(IntegrationLog, log_id).status
        db.session.commit()
        if status != "processing":
            return status
        time.sleep(0.02)
    raise TimeoutError(f"run {log_id} did not finish in {timeout} s")


def fresh(app, redis_url: str) -> None:
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        db.drop_all()
        db.create_all()
    redis.Redis.from_url(redis_url).flushdb()


def sync_run(app, items: int) -> tuple[float, object]:
    """Create an integration of `items` items and start its run; (start time, run log)."""
    ext = app.extensions["integrations"]
    integration = ext.create("numbers", f"{items} numbers", {}, metadata={"items": items})
    started = time.perf_counter()
    return started, integration.sync_now()


def measure_end_to_end(app, env, items: int, workers: int) -> tuple[float, list[subprocess.Popen]]:
    with app.app_context():
        started, log = sync_run(app, items)
        running = start_workers(workers, env)
        status = wait_finalised(app, log.id)
        elapsed = time.perf_counter() - started
    assert status == "success", status
    return items / elapsed, running


def measure_steady(app, items: int) -> float:
    with app.app_context():
        started, log = sync_run(app, items)
        status = wait_finalised(app, log.id)
        elapsed = time.perf_counter() - started
    assert status == "success", status
    return items / elapsed


def measure_enumeration(app, redis_url: str, items: int) -> float:
    from flask_integrations.sync import jobs
    from flask_integrations.sync.runs import start_run

    ext = app.extensions["integrations"]
    with app.app_context():
        integration = ext.create("numbers", "enumeration", {}, metadata={"items": items})
        log = start_run(ext.state_for(app), integration.id)
        started = time.perf_counter()
        jobs.sync_integration(integration.id, log.id)
        elapsed = time.perf_counter() - started
    redis.Redis.from_url(redis_url).flushdb()
    return items / elapsed


def measure_baseline(redis_url: str, env: dict[str, str], items: int, workers: int) -> float:
    from rq import Queue

    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    queue = Queue("baseline", connection=connection)
    started = time.perf_counter()
    with connection.pipeline() as pipe:
        for n in range(items):
            queue.enqueue("noop_job.noop", n, pipeline=pipe)
        pipe.execute()
    command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_url, "baseline"]
    processes = [
        subprocess.Popen(
            command, cwd=ROOT / "bench", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]
    for process in processes:
        process.wait(3600)
    elapsed = time.perf_counter() - started
    finished = queue.finished_job_registry.count
    assert finished == items, f"{finished} of {items} baseline jobs finished"
    connection.flushdb()
    return items / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres:postgres@127.0.0.1:5432/integrations_bench"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--steady", type=int, default=30000)
    parser.add_argument("--baseline", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not reachable(args.postgres):
        sys.exit(f"PostgreSQL is not reachable at {sa.make_url(args.postgres).render_as_string()}")
    env = environment(args.postgres, args.redis)
    os.environ.update({k: env[k] for k in ("BENCH_DATABASE_URL", "BENCH_REDIS_URL", "BENCH_KEY")})
    from sync_app import create_app

    app = create_app()
    fresh(app, args.redis)
    print(f"sync engine, PostgreSQL + Redis, {args.workers} workers (forking), no-op handler")
    end_to_end, workers = measure_end_to_end(app, env, args.items, args.workers)
    try:
        print(
            f"  end to end, {args.items} items, workers started after sync_now(): {end_to_end:8.0f} items/s"
        )
        steady = measure_steady(app, args.steady)
        print(f"  steady state, {args.steady} items, workers running:            {steady:8.0f} items/s")
    finally:
        stop(workers)
    enumeration = measure_enumeration(app, args.redis, args.steady)
    print(f"  enumeration alone (dispatch, insert, enqueue), {args.steady} items: {enumeration:8.0f} items/s")
    baseline = measure_baseline(args.redis, env, args.baseline, args.workers)
    print(
        f"plain RQ, one no-op job per item, {args.workers} rq workers, "
        f"{args.baseline} jobs: {baseline:8.0f} jobs/s"
    )
    print(f"ratio end to end / plain RQ:   {end_to_end / baseline:6.1f}x")
    print(f"ratio steady state / plain RQ: {steady / baseline:6.1f}x")


if __name__ == "__main__":
    main()
