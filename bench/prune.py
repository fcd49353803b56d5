"""Chunked `prune` against one plain DELETE, measured in one run on PostgreSQL.

    python bench/prune.py [--rows 1000000] [--old 0.5] [--chunks 1000,10000] [--postgres URL]

For each run the requests table is emptied and loaded afresh with `--rows`
rows, the fraction `--old` of them past retention (the oldest ids, as in a
real log), then analysed and checkpointed. The chunked prune runs in a child
process, which reports its own time and peak RSS (VmHWM); the baseline is one
`DELETE FROM ... WHERE created_at < cut-off` in a single transaction on an
identical table. Prints rows/s of each and the ratio to the plain DELETE.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
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
from flask_integrations.prune import prune  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/fi_prune_bench"
KEY = Fernet.generate_key().decode()
db = SQLAlchemy()


class Bench(Provider):
    pass


def build_app(database_url: str, chunk_size: int = 1000) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=database_url,
        INTEGRATIONS_ENCRYPTION_KEYS=[KEY],
        INTEGRATIONS_PROVIDERS={"bench": Bench},
        INTEGRATIONS_PRUNING={"chunk_size": chunk_size},
    )
    db.init_app(app)
    Integrations(app, db=db)
    return app


def load(app: Flask, rows: int, old: float, now: datetime) -> int:
    """Empty the requests table and fill it; return how many rows are past the 90-day retention."""
    old_rows = int(rows * old)
    with app.app_context():
        table = app.extensions["integrations"].state_for(app).tables["requests"]
        with db.engine.begin() as connection:
            connection.execute(sa.text(f'TRUNCATE "{table.name}" RESTART IDENTITY'))
            connection.execute(
                sa.text(
                    f'INSERT INTO "{table.name}" (integration_id, endpoint, method, status_code, '
                    "response_data, duration_ms, cache_hits, stale_hits, created_at, updated_at) "
                    "SELECT :integration, 'tickets/' || g || '.json', 'GET', 200, "
                    '\'{"id": \' || g || \', "status": "open", "subject": "Ticket \' || g || \'"}\', '
                    "40 + g % 100, 0, 0, t, t FROM generate_series(1, :rows) AS g, LATERAL ("
                    "  SELECT CASE WHEN g <= :old THEN :now - interval '120 days' "
                    "              ELSE :now - interval '10 days' END + g * interval '1 millisecond' AS t"
                    ") AS stamp"
                ),
                {"integration": integration_id(app), "rows": rows, "old": old_rows, "now": now},
            )
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text(f'VACUUM ANALYZE "{table.name}"'))
            connection.execute(sa.text("CHECKPOINT"))
    return old_rows


def integration_id(app: Flask) -> int:
    ext = app.extensions["integrations"]
    integrations = ext.state_for(app).tables["integrations"]
    existing = db.session.scalar(sa.select(sa.func.min(integrations.c.id)))
    return existing or ext.create("bench", "bench", {"token": "t"}).id


def run_chunked(database_url: str, chunk_size: int, now: datetime) -> dict:
    """Prune in a child process; it reports deleted rows, seconds and its peak RSS."""
    command = [sys.executable, __file__, "--child", "--postgres", database_url]
    command += ["--chunks", str(chunk_size), "--now", now.isoformat()]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def child(database_url: str, chunk_size: int, now: datetime) -> None:
    app = build_app(database_url, chunk_size)
    started = time.perf_counter()
    deleted = prune(app, now=now, tables=["requests"])["requests"]
    seconds = time.perf_counter() - started
    print(json.dumps({"deleted": deleted, "seconds": seconds, "peak_rss_kb": peak_rss_kb()}))


def plain_delete(app: Flask, now: datetime) -> tuple[int, float]:
    with app.app_context():
        table = app.extensions["integrations"].state_for(app).tables["requests"]
        started = time.perf_counter()
        with db.engine.begin() as connection:
            deleted = connection.execute(
                sa.delete(table).where(table.c.created_at < now - timedelta(days=90))
            ).rowcount
        return deleted, time.perf_counter() - started


def peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--old", type=float, default=0.5, help="fraction of rows past retention")
    parser.add_argument("--chunks", default="1000,10000", help="chunk sizes to time, comma-separated")
    parser.add_argument("--postgres", default=DEFAULT_URL)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--now", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    chunk_sizes = [int(size) for size in args.chunks.split(",")]
    now = datetime.fromisoformat(args.now) if args.now else utcnow()
    if args.child:
        child(args.postgres, chunk_sizes[0], now)
        return
    if not reachable(args.postgres):
        print("PostgreSQL not reachable: skipped (bash .ci/run starts one)")
        return
    app = build_app(args.postgres)
    with app.app_context():
        db.drop_all()
        db.create_all()
    print(f"{args.rows:,} request rows, {args.old:.0%} past retention; a fresh table for each run")
    old_rows = load(app, args.rows, args.old, now)
    deleted, seconds = plain_delete(app, now)
    assert deleted == old_rows, (deleted, old_rows)
    baseline = deleted / seconds
    label = "plain DELETE, one transaction"
    print(f"{label:<34} {deleted:>9,} rows {seconds:7.2f} s {baseline:>10,.0f} rows/s")
    for size in chunk_sizes:
        load(app, args.rows, args.old, now)
        result = run_chunked(args.postgres, size, now)
        assert result["deleted"] == old_rows, (result, old_rows)
        rate = result["deleted"] / result["seconds"]
        label = f"prune, chunk_size {size:,}"
        print(
            f"{label:<34} {result['deleted']:>9,} rows {result['seconds']:7.2f} s {rate:>10,.0f} rows/s  "
            f"{rate / baseline:5.2f}x plain  peak RSS {result['peak_rss_kb'] / 1024:6.1f} MB"
        )


if __name__ == "__main__":
    main()
