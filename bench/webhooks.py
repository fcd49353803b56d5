"""Webhook intake through gunicorn (2 workers) against a bare Flask route, in one run.

    python bench/webhooks.py [--postgres URL] [--redis URL] [--requests 3000] [--clients 4]
                             [--rounds 2]

Serves bench/webhooks_app.py with gunicorn (`--workers 2`, sync workers) on 127.0.0.1, then
sends signed deliveries from `--clients` processes, alternating rounds of the bare route
(`POST /bare`: insert the same row, answer 202) and the package's webhook route (HMAC check,
deduplication, the row, the RQ job). Prints accepted deliveries per second and the p99
latency of each, the ratio, and checks that no accepted delivery is missing from the table.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
import sqlalchemy as sa
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_support import reachable  # noqa: E402

SECRET = "whs_bench_7d1c"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send(url: str, first: int, count: int, signed: bool, results: multiprocessing.Queue) -> None:
    """Post `count` deliveries with ids from `first`; put (accepted, latencies) on `results`."""
    latencies, accepted = [], 0
    with httpx.Client(timeout=30) as client:
        for n in range(first, first + count):
            body = json.dumps({"id": f"evt_{n}", "type": "order.paid", "data": {"order": n}}).encode()
            headers = {"Content-Type": "application/json"}
            if signed:
                now = str(int(time.time()))
                digest = hmac.new(SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
                headers.update({"X-Timestamp": now, "X-Signature": digest})
            started = time.perf_counter()
            answer = client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            accepted += answer.status_code == 202
    results.put((accepted, latencies))


def round_of(
    url: str, first: int, requests: int, clients: int, signed: bool
) -> tuple[int, float, list[float]]:
    results: multiprocessing.Queue = multiprocessing.Queue()
    share = requests // clients
    processes = [
        multiprocessing.Process(target=send, args=(url, first + k * share, share, signed, results))
        for k in range(clients)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    gathered = [results.get() for _ in processes]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join()
    return sum(a for a, _ in gathered), elapsed, [x for _, lat in gathered for x in lat]


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres:postgres@127.0.0.1:5432/integrations_bench"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--requests", type=int, default=3000, help="deliveries per round and route")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not reachable(args.postgres):
        sys.exit("PostgreSQL is not reachable")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench")]),
        "BENCH_DATABASE_URL": args.postgres,
        "BENCH_REDIS_URL": args.redis,
        "BENCH_KEY": Fernet.generate_key().decode(),
    }
    os.environ.update({k: env[k] for k in ("BENCH_DATABASE_URL", "BENCH_REDIS_URL", "BENCH_KEY")})
    from webhooks_app import create_app, db

    app = create_app()
    redis.Redis.from_url(args.redis).flushdb()
    with app.app_context():
        db.drop_all()
        db.create_all()
        integration = app.extensions["integrations"].create("signed", "Bench", {"webhook_secret": SECRET})
        integration_id = integration.id
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning", "webhooks_app:create_app()"],
        cwd=ROOT / "bench", env=env, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        routes = {
            "bare": (f"{base}/bare", False),
            "webhook": (f"{base}/integrations/signed/{integration_id}/webhook", True),
        }
        round_of(routes["bare"][0], 10_000_000, 200, args.clients, False)  # warm both
        round_of(routes["webhook"][0], 20_000_000, 200, args.clients, True)
        with app.app_context():
            warmed = db.session.execute(sa.text("SELECT max(id) FROM integration_webhooks")).scalar()
        totals = {name: [0, 0.0, []] for name in routes}
        first = 0
        for _ in range(args.rounds):
            for name, (url, signed) in routes.items():
                accepted, elapsed, latencies = round_of(url, first, args.requests, args.clients, signed)
                first += args.requests
                totals[name][0] += accepted
                totals[name][1] += elapsed
                totals[name][2] += latencies
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    with app.app_context():
        counted = sa.text(
            "SELECT provider, count(*) FROM integration_webhooks WHERE id > :warmed GROUP BY provider"
        )
        stored = dict(db.session.execute(counted, {"warmed": warmed}).all())
    print(f"webhook intake, gunicorn --workers 2 (sync), PostgreSQL + Redis, {args.clients} client processes")
    rates = {}
    for name, (accepted, elapsed, latencies) in totals.items():
        rates[name] = accepted / elapsed
        print(
            f"  {name:8s} {rates[name]:7.0f} accepted/s   p99 {p99(latencies):6.1f} ms"
            f"   ({accepted} accepted)"
        )
    lost = {name: totals[name][0] - stored.get("bare" if name == "bare" else "signed", 0) for name in routes}
    print(f"ratio webhook route / bare route: {rates['webhook'] / rates['bare']:.2f}x")
    print(f"lost (accepted but not stored): bare {lost['bare']}, webhook {lost['webhook']}")


if __name__ == "__main__":
    main()
