"""Overhead of the pipeline over a raw httpx.Client, measured in one run.

    python bench/pipeline.py [--calls 2000] [--postgres URL] [--redis URL]

For each backend it makes `--calls` GETs to a loopback server with a raw
`httpx.Client.get` and with `integration.at(...).get(url)` (logging on, one
request row per call), twice:

- in pairs (one raw call, then one pipeline call), printing the median of the
  per-pair differences (the added milliseconds per call) and of the per-pair
  ratios. A pair lasts about 2 ms, so a machine whose speed drifts from one
  second to the next slows both of its calls alike;
- in alternating blocks of 100, printing each path's median, and the mean per
  call with each pipeline block timed until its rows are committed, which
  charges the background row writer to the pipeline.

SQLite runs in WAL mode with synchronous=NORMAL (the settings the docs
recommend); PostgreSQL + Redis runs when both are reachable.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_support import reachable  # noqa: E402

from flask_integrations import IntegrationRequest, Integrations, Provider  # noqa: E402
from flask_integrations.pipeline.writer import wait_for_all_rows  # noqa: E402
from tests.helpers.upstream import UpstreamServer  # noqa: E402

db = SQLAlchemy()


class Bench(Provider):
    pass


def sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def build_app(database_url: str, redis_url: str | None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=database_url,
        INTEGRATIONS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()],
        INTEGRATIONS_PROVIDERS={"bench": Bench},
        INTEGRATIONS_REDIS_URL=redis_url,
    )
    db.init_app(app)
    Integrations(app, db=db)
    with app.app_context():
        if database_url.startswith("sqlite"):
            sa.event.listen(db.engine, "connect", sqlite_pragmas)
            db.engine.dispose()
        db.drop_all()
        db.create_all()
    return app


class Figures(NamedTuple):
    paired_added: float  # ms, median of (pipeline - raw) over pairs
    paired_ratio: float  # median of pipeline / raw over pairs
    raw_median: float
    pipeline_median: float
    raw_mean: float
    pipeline_mean: float  # including the time until the block's rows are committed


def measure(app: Flask, url: str, calls: int, block: int = 100) -> Figures:
    with app.app_context():
        integration = app.extensions["integrations"].create("bench", "bench", {"token": "t"})
        raw = httpx.Client()
        for _ in range(50):  # warm both paths
            raw.get(url)
            integration.at("bench").get(url)
        wait_for_all_rows()
        added, ratios = measure_pairs(raw, integration, url, calls)
        blocks = measure_blocks(raw, integration, url, calls, block)
        rows = db.session.scalar(sa.select(sa.func.count()).select_from(IntegrationRequest))
        assert rows == 50 + calls + calls // block * block, rows
        db.session.remove()
    return Figures(statistics.median(added), statistics.median(ratios), *blocks)


def measure_pairs(raw: httpx.Client, integration, url: str, calls: int) -> tuple[list[float], list[float]]:
    added, ratios = [], []
    for _ in range(calls):
        started = time.perf_counter()
        raw.get(url)
        raw_time = time.perf_counter() - started
        started = time.perf_counter()
        integration.at("bench").get(url)
        pipeline_time = time.perf_counter() - started
        added.append((pipeline_time - raw_time) * 1000)
        ratios.append(pipeline_time / raw_time)
    wait_for_all_rows()
    return added, ratios


def measure_blocks(raw: httpx.Client, integration, url: str, calls: int, block: int) -> list[float]:
    """Median latency of each path, and its mean cost per call including the rows' write.

    Each pipeline block ends when its request rows are committed, so rows written
    by the background writer count in the pipeline's mean and never slow down a
    raw block.
    """
    raw_times, pipeline_times = [], []
    raw_total = pipeline_total = 0.0
    for _ in range(calls // block):
        block_started = time.perf_counter()
        for _ in range(block):
            started = time.perf_counter()
            raw.get(url)
            raw_times.append(time.perf_counter() - started)
        raw_total += time.perf_counter() - block_started
        block_started = time.perf_counter()
        for _ in range(block):
            started = time.perf_counter()
            integration.at("bench").get(url)
            pipeline_times.append(time.perf_counter() - started)
        wait_for_all_rows()
        pipeline_total += time.perf_counter() - block_started
    done = calls // block * block
    return [
        statistics.median(raw_times) * 1000,
        statistics.median(pipeline_times) * 1000,
        raw_total / done * 1000,
        pipeline_total / done * 1000,
    ]


def report(label: str, figures: Figures) -> None:
    f = figures
    print(f"{label:<22} in pairs: added {f.paired_added:6.3f} ms  ratio {f.paired_ratio:4.2f}x   (medians)")
    print(
        f"{'':<22} in blocks: raw httpx {f.raw_median:6.3f} ms  pipeline {f.pipeline_median:6.3f} ms  "
        f"added {f.pipeline_median - f.raw_median:6.3f} ms   (medians)"
    )
    print(
        f"{'':<22} in blocks, rows written: raw {f.raw_mean:6.3f} ms  pipeline {f.pipeline_mean:6.3f} ms  "
        f"added {f.pipeline_mean - f.raw_mean:6.3f} ms   (means)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres:postgres@127.0.0.1:5432/integrations_bench"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    server_url, server = start_server_process()
    url = server_url + "/status/200"
    print(f"{args.calls} GETs per path in pairs and again in blocks, loopback server process at {server_url}")
    with tempfile.TemporaryDirectory() as tmp:
        report("SQLite (WAL), memory", measure(build_app(f"sqlite:///{tmp}/bench.db", None), url, args.calls))
    if reachable(args.postgres):
        import redis

        try:
            redis.Redis.from_url(args.redis).ping()
            redis_url = args.redis
        except redis.RedisError:
            redis_url = None
        label = "PostgreSQL + Redis" if redis_url else "PostgreSQL, memory"
        report(label, measure(build_app(args.postgres, redis_url), url, args.calls))
    else:
        print("PostgreSQL not reachable: skipped (bash .ci/run starts one)")
    server.terminate()


def _serve(queue: multiprocessing.Queue) -> None:
    server = UpstreamServer()
    queue.put(server.url)
    server.serve_forever()


def start_server_process() -> tuple[str, multiprocessing.Process]:
    """The upstream in its own process, so it does not compete with the client for the GIL."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=_serve, args=(queue,), daemon=True)
    process.start()
    return queue.get(timeout=30), process


if __name__ == "__main__":
    main()
