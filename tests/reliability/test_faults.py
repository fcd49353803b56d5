"""Faults (issue 9): servers restarted, workers killed and an upstream flapping, with real processes.

Every scenario runs against a private PostgreSQL and a private Redis (tests/helpers/private_servers.py)
that it restarts at will; the shared servers are never touched. The app runs in
`flask integrations worker` processes (RQ), webhooks come in through gunicorn,
outbound calls go from separate processes to the loopback server of
tests/helpers/upstream.py. Afterwards each test checks the end state the guarantees
promise (SPEC, top: nothing acknowledged is lost; each webhook and sync item
reaches its terminal status exactly once; handlers run at least once) and records
its figures in <figures_dir>/faults.json for RELIABILITY.md.

Recovery uses only the documented commands (`flask integrations recover-webhooks`,
`flask integrations sync` whose sweep resets stuck items, `advance-cursor`). Their
timeouts are minutes (an item `processing` for `lock_ttl`, a job never run for
300 s): instead of waiting that long, the test ages the stuck rows' `updated_at`
the way the existing tests do (`_age`), once the workers have gone quiet.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from tests.helpers import faults
from tests.helpers.app import KEY, db
from tests.helpers.private_servers import PrivatePostgres, PrivateRedis, require_binaries
from tests.helpers.servers import free_port
from tests.helpers.upstream import UpstreamServer

ROOT = Path(__file__).resolve().parents[2]
FIGURES_FILE = "faults.json"


# -- servers and processes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    require_binaries(redis=False)
    server = PrivatePostgres()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    require_binaries(postgres=False)
    server = PrivateRedis()
    server.start()
    yield server
    server.close()


@pytest.fixture
def rds(private_redis: PrivateRedis) -> PrivateRedis:
    if private_redis.process is None:
        private_redis.start()
    private_redis.flush()
    return private_redis


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    server = UpstreamServer().start()
    yield server
    server.stop()


class Processes:
    """Child processes of one test (each in a session of its own), all killed at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[subprocess.Popen] = []
        self.supervisors: list[Supervisor] = []
        self.count = 0

    def start(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen:
        self.count += 1
        log = open(self.logs / f"{name}-{self.count}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        process.log = log  # type: ignore[attr-defined]
        self.children.append(process)
        return process

    def worker(self, env: dict[str, str], simple: bool = False) -> subprocess.Popen:
        args = [sys.executable, "-m", "flask", "integrations", "worker", *(["--simple"] if simple else [])]
        return self.start(args, env, "worker")

    @staticmethod
    def kill(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def supervised_workers(self, env: dict[str, str], simple: list[bool]) -> Supervisor:
        """Workers restarted whenever one exits, as systemd's Restart=always would."""
        return Supervisor(self, env, simple)

    def stop_all(self) -> None:
        for supervisor in self.supervisors:
            supervisor.stop()
        for process in self.children:
            if process.poll() is None:
                self.kill(process, signal.SIGTERM)
            process.log.close()  # type: ignore[attr-defined]

    def tail(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


class Supervisor:
    def __init__(self, processes: Processes, env: dict[str, str], simple: list[bool]) -> None:
        self.processes = processes
        self.env = env
        self.simple = simple
        self.lock = threading.Lock()
        self.workers = [processes.worker(env, simple=flag) for flag in simple]
        self.restarts = 0
        self.stopped = threading.Event()
        processes.supervisors.append(self)
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopped.wait(0.5):
            with self.lock:
                for index, worker in enumerate(self.workers):
                    if worker.poll() is not None and not self.stopped.is_set():
                        self.workers[index] = self.processes.worker(self.env, simple=self.simple[index])
                        self.restarts += 1

    def kill(self, index: int) -> None:
        """SIGKILL one worker and start its replacement at once."""
        with self.lock:
            Processes.kill(self.workers[index])
            self.workers[index] = self.processes.worker(self.env, simple=self.simple[index])

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


@pytest.fixture
def procs(figures_dir: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    """Child processes; their output goes to <figures_dir>/fault-logs/<test>/ (kept for CI artifacts)."""
    logs = figures_dir / "fault-logs" / request.node.name
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    processes = Processes(logs)
    yield processes
    processes.stop_all()


def child_env(database_url: str, redis_url: str | None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FLASK_APP": "tests.helpers.faults:create_app",
        "FAULT_DATABASE_URL": database_url,
        "FAULT_REDIS_URL": redis_url or "",
        "INTEGRATIONS_TEST_KEY": KEY,
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("SYNC_TEST_SLOW", "SYNC_TEST_ITEMS", "SYNC_TEST_FAIL_ONCE", "SYNC_TEST_FAIL_ONCE_DIR"):
        env.pop(name, None)
    env.update(extra)
    return env


@contextlib.contextmanager
def sync_fault_env(
    database_url: str, redis_url: str, tmp_path: Path, items: int, slow: str
) -> Iterator[tuple[dict[str, str], Path]]:
    """The workers' environment for a sync scenario of `items` items taking `slow` seconds each,
    and the file every side effect is noted in (by this process too, while the block runs)."""
    events = tmp_path / "events.jsonl"
    env = child_env(
        database_url, redis_url, SYNC_TEST_ITEMS=str(items), SYNC_TEST_SLOW=slow, FAULT_EVENTS=str(events)
    )
    os.environ["FAULT_EVENTS"] = str(events)
    try:
        yield env, events
    finally:
        os.environ.pop("FAULT_EVENTS", None)


def flask_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "flask", "integrations", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"flask integrations {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def parent_app(database_url: str, redis_url: str | None) -> Any:
    """The test process's own app (checks, set-up); pre-ping so it rides out the restarts."""
    app = faults.create_app(
        database_url,
        INTEGRATIONS_REDIS_URL=redis_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
    )
    faults.create_tables(app)
    return app


def sql(pg: PrivatePostgres, database: str, statement: str, params: Any = None) -> list[tuple]:
    """One statement on a fresh connection (works whatever the test's pools think of a restart)."""
    with psycopg.connect(
        f"host=127.0.0.1 port={pg.port} user=postgres dbname={database}", autocommit=True
    ) as c:
        cursor = c.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def try_sql(pg: PrivatePostgres, database: str, statement: str) -> list[tuple] | None:
    try:
        return sql(pg, database, statement)
    except psycopg.Error:
        return None


def write_figures(figures_dir: Path, scenario: str, figures: dict[str, Any]) -> None:
    path = figures_dir / FIGURES_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    data[scenario] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
        return True
    except httpx.HTTPError:
        return False


def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- sync runs: start, watch, recover --------------------------------------------------------------


def item_counts(pg: PrivatePostgres, database: str) -> Counter | None:
    rows = try_sql(pg, database, "SELECT status, count(*) FROM integration_sync_items GROUP BY status")
    return None if rows is None else Counter(dict(rows))


def start_sync(
    app: Any, pg: PrivatePostgres, database: str, items: int, timeout: float = 60
) -> tuple[int, int]:
    with app.app_context():
        feed = app.extensions["integrations"].create("feed", "Feed", {})
        log = feed.sync_now()
        assert log is not None
        ids = feed.id, log.id
        db.session.remove()
    enumerated = wait_until(lambda: sum((item_counts(pg, database) or Counter()).values()) == items, timeout)
    assert enumerated, f"the enumeration did not dispatch {items} items: {item_counts(pg, database)}"
    return ids


def run_status(pg: PrivatePostgres, database: str, log_id: int) -> str | None:
    rows = try_sql(pg, database, f"SELECT status FROM integration_logs WHERE id = {log_id}")
    return rows[0][0] if rows else None


def wait_quiet(counts: Any, done: Any, quiet: float, timeout: float) -> None:
    """Until `done()`, or until `counts()` (statuses of rows) stops changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        if done():
            return
        now_counts = counts()
        if now_counts != last:
            last, since = now_counts, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.25)


def recover_sync(
    pg: PrivatePostgres, database: str, env: dict[str, str], integration_id: int, log_id: int, rounds: int = 6
) -> int:
    """The documented recovery, round after round until the run is finalised; returns the rounds used.

    Each round: wait for the workers to go quiet, age the rows a dead worker or a lost job
    left `pending`/`processing` past the sweep's timeouts, `flask integrations sync` (its sweep
    resets and re-enqueues them), then `advance-cursor` (re-finalises a run whose last job died
    between its statuses and the finalisation).
    """
    for used in range(rounds + 1):
        wait_quiet(
            lambda: item_counts(pg, database),
            done=lambda: run_status(pg, database, log_id) not in (None, "processing"),
            quiet=4.0,
            timeout=90,
        )
        if run_status(pg, database, log_id) != "processing":
            return used
        if used == rounds:
            break
        sql(
            pg,
            database,
            "UPDATE integration_sync_items SET updated_at = updated_at - interval '2000 seconds' "
            "WHERE status IN ('pending', 'processing')",
        )
        flask_cli(env, "sync")
        flask_cli(env, "advance-cursor", str(integration_id))
    return rounds


def sync_end_state(
    pg: PrivatePostgres, database: str, integration_id: int, log_id: int, events: Path
) -> dict:
    (cursor,) = sql(pg, database, f"SELECT sync_cursor FROM integrations WHERE id = {integration_id}")[0]
    runs = sql(
        pg,
        database,
        f"SELECT id, status, metadata FROM integration_logs WHERE operation = 'sync' "
        f"AND parent_id IS NULL AND integration_id = {integration_id}",
    )
    seen = sql(pg, database, "SELECT n, count(*) FROM sync_seen GROUP BY n")
    finalised = [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
    return {
        "cursor": cursor,
        "runs": [(r[0], r[1]) for r in runs],
        "counts": (runs[0][2].get("success_count"), runs[0][2].get("failure_count")) if runs else None,
        "items": dict(item_counts(pg, database) or {}),
        "seen": {n: c for n, c in seen},
        "finalisations": [e for e in finalised if e["log"] == log_id],
    }


def run_figures(state: dict) -> dict[str, Any]:
    """What a finished run's end state says for faults.json: handler runs, repeats, cursor, finalisations."""
    return {
        "handler_runs": sum(state["seen"].values()),
        "items_run_more_than_once": sum(1 for c in state["seen"].values() if c > 1),
        "cursor": state["cursor"],
        "finalisations": len(state["finalisations"]),
    }


def assert_sync_complete(state: dict, items: int, log_id: int) -> None:
    assert state["runs"] == [(log_id, "success")], state["runs"]
    assert state["items"] == {"success": items}, state["items"]
    assert state["counts"] == (items, 0)
    assert state["cursor"] == items
    assert set(state["seen"]) == set(range(1, items + 1)), "an item's side effect is missing"
    assert len(state["finalisations"]) == 1, state["finalisations"]


# -- 1. PostgreSQL restarted during webhook intake -------------------------------------------------

WEBHOOKS = 300
WEBHOOK_RATE = 60.0  # per second, from 4 client threads


def refused_windows(timeline: list[tuple[float, int | None]]) -> list[list[float]]:
    """[first, last] time (s from the start) of each run of 503 answers."""
    windows: list[list[float]] = []
    previous = None
    for at, status in sorted(timeline):
        if status == 503:
            if previous == 503:
                windows[-1][1] = at
            else:
                windows.append([at, at])
        previous = status
    return windows


def deliver(client: httpx.Client, url: str, n: int) -> tuple[int | None, str]:
    body = json.dumps({"order": n, "amount": n * 100}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Event": "order.paid",
        "X-Delivery": f"d-{n}",
        "X-Signature": faults.sign(body),
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return response.status_code, response.text


def test_postgres_restarted_during_webhook_intake(pg, rds, procs, figures_dir, tmp_path):
    database = "faults_webhooks"
    url = pg.create_database(database)
    app = parent_app(url, rds.url)
    with app.app_context():
        hooks = app.extensions["integrations"].create("hooks", "Shop", {"signing_secret": faults.SECRET})
        hooks_id = hooks.id
        db.session.remove()
    env = child_env(url, rds.url)
    port = free_port()
    web = procs.start(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "30",
            "tests.helpers.faults:create_app()",
        ],
        env,
        "gunicorn",
    )
    procs.worker(env)  # forking: a work horse per job
    procs.worker(env, simple=True)  # jobs in the worker process: its pool outlives the restarts
    endpoint = f"http://127.0.0.1:{port}/integrations/hooks/{hooks_id}/webhook"
    assert wait_until(lambda: answers(f"http://127.0.0.1:{port}/"), 30), procs.tail()

    results: dict[int, list[tuple[int | None, str, float]]] = {}
    lock = threading.Lock()
    started = time.monotonic()
    numbers = list(range(1, WEBHOOKS + 1))

    def client_thread(mine: list[int]) -> None:
        with httpx.Client(timeout=20) as client:
            for n in mine:
                due = started + (n - 1) / WEBHOOK_RATE
                time.sleep(max(0.0, due - time.monotonic()))
                t0 = time.monotonic()
                status, text = deliver(client, endpoint, n)
                with lock:
                    results.setdefault(n, []).append((status, text, time.monotonic() - t0))
                    timeline.append((round(t0 - started, 2), status))

    restarts: list[dict[str, float]] = []
    timeline: list[tuple[float, int | None]] = []

    def restarter() -> None:
        for at, mode in ((1.2, "fast"), (3.2, "immediate")):
            time.sleep(max(0.0, started + at - time.monotonic()))
            downtime = pg.restart(mode, down_for=0.7)
            restarts.append({"at": round(at, 1), "mode": mode, "down_seconds": round(downtime, 2)})

    threads = [threading.Thread(target=client_thread, args=(numbers[i::4],)) for i in range(4)]
    threads.append(threading.Thread(target=restarter))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    intake_seconds = time.monotonic() - started
    assert web.poll() is None, procs.tail()

    first = {n: attempts[0] for n, attempts in results.items()}
    statuses = Counter(status for status, _, _ in first.values())
    bad = {n: r for n, r in first.items() if r[0] not in (200, 202, 503)}
    assert not bad, f"answers other than 202/200/503 (or no answer): {dict(list(bad.items())[:5])}"
    slowest = max(seconds for _, _, seconds in first.values())
    assert slowest < 10, f"a webhook took {slowest:.1f} s to answer"

    # A 503 normally means nothing was committed. The one exception is an ambiguous commit: the
    # server wrote the commit and was killed before it could say so, so the app saw an error. Such
    # a row is kept (pending) and its redelivery is answered 200 "duplicate": still processed once.
    refused = sorted(n for n, r in first.items() if r[0] == 503)
    stored_refused: set[str] = set()
    if refused:
        ids = ",".join(f"'d-{n}'" for n in refused)
        stored_refused = {
            d
            for (d,) in sql(
                pg, database, f"SELECT delivery_id FROM integration_webhooks WHERE delivery_id IN ({ids})"
            )
        }
    assert len(stored_refused) <= len(restarts), f"more stored 503s than restarts: {sorted(stored_refused)}"

    # as a provider does, deliver the refused ones again now that the database is back
    with httpx.Client(timeout=20) as client:
        for n in refused:
            status, text = deliver(client, endpoint, n)
            results[n].append((status, text, 0.0))
            expected = 200 if f"d-{n}" in stored_refused else 202
            assert status == expected, (n, status, text)

    def webhook_counts() -> Counter | None:
        rows = try_sql(pg, database, "SELECT status, count(*) FROM integration_webhooks GROUP BY status")
        return None if rows is None else Counter(dict(rows))

    def unfinished() -> bool:
        counts = webhook_counts()
        return counts is None or bool(counts["pending"] + counts["processing"] + counts["failed"])

    recover_runs = 0
    recovery_started = time.monotonic()
    for _ in range(6):
        wait_quiet(webhook_counts, done=lambda: not unfinished(), quiet=4.0, timeout=90)
        if not unfinished():
            break
        # what a worker lost (a job that raised while the database was down, a claim never
        # finished) waits past processing_timeout / pending_timeout, then recover-webhooks
        sql(
            pg,
            database,
            "UPDATE integration_webhooks SET updated_at = updated_at - interval '2000 seconds' "
            "WHERE status IN ('pending', 'processing')",
        )
        flask_cli(env, "recover-webhooks")
        recover_runs += 1
    recovery_seconds = time.monotonic() - recovery_started

    rows = sql(
        pg,
        database,
        "SELECT delivery_id, status, attempts FROM integration_webhooks ORDER BY id",
    )
    originals = {d: (s, a) for d, s, a in rows if s != "duplicate"}
    seen = Counter(d for (d,) in sql(pg, database, "SELECT delivery_id FROM webhook_seen"))
    acknowledged = {f"d-{n}" for n, attempts in results.items() if any(a[0] in (200, 202) for a in attempts)}
    assert acknowledged == {f"d-{n}" for n in numbers}
    missing = sorted(acknowledged - set(originals))
    assert not missing, f"acknowledged but not stored: {[(d, results[int(d[2:])]) for d in missing[:5]]}"
    assert len([r for r in rows if r[1] != "duplicate"]) == WEBHOOKS, "one original row per delivery"
    not_processed = {
        d: originals.get(d) for d in acknowledged if originals.get(d, ("missing",))[0] != "processed"
    }
    assert not not_processed, f"acknowledged but not processed: {dict(list(not_processed.items())[:5])}"
    twice = {d: c for d, c in seen.items() if c != 1}
    assert not twice and set(seen) == acknowledged, f"handler effects not exactly once: {twice}"

    write_figures(
        figures_dir,
        "postgres_restart_during_webhook_intake",
        {
            "webhooks": WEBHOOKS,
            "rate_per_second": WEBHOOK_RATE,
            "web": "gunicorn, 2 sync workers",
            "rq_workers": "2 (one forking, one --simple)",
            "restarts": restarts,
            "intake_seconds": round(intake_seconds, 2),
            "refused_at_seconds": refused_windows(timeline),
            "first_answers": {str(k): v for k, v in sorted(statuses.items())},
            "redelivered_after_503": len(refused),
            "stored_despite_503_ambiguous_commit": len(stored_refused),
            "slowest_answer_seconds": round(slowest, 3),
            "recover_webhooks_runs": recover_runs,
            "recovery_seconds": round(recovery_seconds, 1),
            "attempts_histogram": {
                str(k): v for k, v in sorted(Counter(a for s, a in originals.values()).items())
            },
            "processed": sum(1 for s, _ in originals.values() if s == "processed"),
            "handler_effects": sum(seen.values()),
        },
    )


# -- 2. PostgreSQL restarted during a sync run -------------------------------------------------------

SYNC_ITEMS = 1500


def test_postgres_restarted_during_a_sync_run(pg, rds, procs, figures_dir, tmp_path):
    database = "faults_sync_pg"
    url = pg.create_database(database)
    with sync_fault_env(url, rds.url, tmp_path, SYNC_ITEMS, "0.004") as (env, events):
        app = parent_app(url, rds.url)
        workers = procs.supervised_workers(env, [False, True])
        started = time.monotonic()
        integration_id, log_id = start_sync(app, pg, database, SYNC_ITEMS)
        restarts = []
        # once a quarter of the items is done: a fast restart, then 3 s later a crash (immediate)
        reached = wait_until(
            lambda: (item_counts(pg, database) or Counter())["success"] >= 0.25 * SYNC_ITEMS, 60, 0.05
        )
        assert reached, procs.tail()
        for mode in ("fast", "immediate"):
            done = (item_counts(pg, database) or Counter())["success"]
            downtime = pg.restart(mode, down_for=1.0)
            restarts.append({"items_done": done, "mode": mode, "down_seconds": round(downtime, 2)})
            time.sleep(3.0)
        rounds = recover_sync(pg, database, env, integration_id, log_id)
        seconds = time.monotonic() - started
        state = sync_end_state(pg, database, integration_id, log_id, events)
        assert_sync_complete(state, SYNC_ITEMS, log_id)
    write_figures(
        figures_dir,
        "postgres_restart_during_sync_run",
        {
            "items": SYNC_ITEMS,
            "rq_workers": "2 (one forking, one --simple)",
            "restarts": restarts,
            "workers_restarted_by_supervisor": workers.restarts,
            "recovery_rounds": rounds,
            "seconds": round(seconds, 1),
            **run_figures(state),
        },
    )


# -- 3. Redis restarted during request pipelines and during a sync run --------------------------------

CALLERS = 3


def run_callers(
    integration_id: int, endpoint: str, url: str, seconds: float, out_dir: Path, attempts: int | None = None
) -> list[multiprocessing.Process]:
    """CALLERS processes calling `url` for `seconds` each, once all are warm (returns when they are)."""
    spawn = multiprocessing.get_context("spawn")
    warmup = url.rsplit("/", 1)[0] + "/json"
    callers = [
        spawn.Process(
            target=faults.call_loop,
            args=(
                integration_id,
                endpoint,
                url,
                seconds,
                str(out_dir / f"caller-{n}.json"),
                attempts,
                warmup,
            ),
        )
        for n in range(CALLERS)
    ]
    for caller in callers:
        caller.start()
    ready = [out_dir / f"caller-{n}.json.ready" for n in range(CALLERS)]
    assert wait_until(lambda: all(path.exists() for path in ready), 90), "the callers did not start"
    return callers


def caller_outcomes(callers: list[multiprocessing.Process], out_dir: Path) -> list[dict[str, Any]]:
    for caller in callers:
        caller.join(120)
        assert caller.exitcode == 0, f"a caller process died (exit {caller.exitcode})"
    outcomes: list[dict[str, Any]] = []
    for n in range(CALLERS):
        outcomes.extend(json.loads((out_dir / f"caller-{n}.json").read_text()))
    return outcomes


@pytest.fixture
def caller_env(pg, rds) -> Iterator[tuple[str, str]]:
    """Caller processes (spawned) read their configuration from the environment."""
    database = "faults_redis"
    url = pg.create_database(database)
    saved = {k: os.environ.get(k) for k in ("FAULT_DATABASE_URL", "FAULT_REDIS_URL", "INTEGRATIONS_TEST_KEY")}
    os.environ.update({"FAULT_DATABASE_URL": url, "FAULT_REDIS_URL": rds.url, "INTEGRATIONS_TEST_KEY": KEY})
    yield database, url
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_redis_restarted_during_request_pipelines_and_a_sync_run(
    pg, rds, procs, upstream, caller_env, figures_dir, tmp_path, monkeypatch
):
    import redis

    from flask_integrations import CircuitOpenError, RateLimitExceeded

    database, url = caller_env
    monkeypatch.setenv("FAULT_COOLDOWN", "60")  # the breaker opened below stays open for every process
    app = parent_app(url, rds.url)
    with app.app_context():
        ext = app.extensions["integrations"]
        api_id = ext.create("api", "API", {"token": "t"}).id
        db.session.remove()

    # (a) outbound calls from 3 processes while Redis is killed and, 2 s later, started empty
    started = time.monotonic()
    callers = run_callers(api_id, "ping", f"{upstream.url}/json", 6.0, tmp_path)
    time.sleep(1.0)
    down_at = time.monotonic()
    rds.stop()
    time.sleep(2.0)
    rds.start()
    up_at = time.monotonic()
    outcomes = caller_outcomes(callers, tmp_path)
    kinds = Counter(o["kind"] for o in outcomes)
    assert set(kinds) == {"ok"}, f"calls failed while Redis was away: {kinds}"
    slowest = max(o["seconds"] for o in outcomes)
    while_down = [o for o in outcomes if down_at <= o["at"] <= up_at]
    assert while_down, "no call was made while Redis was away"
    assert slowest < 10, f"a call took {slowest:.1f} s (Redis away from {down_at:.1f} to {up_at:.1f})"
    with app.app_context():
        rows = db.session.execute(
            sa.text("SELECT count(*) FROM integration_requests WHERE endpoint = 'ping'")
        ).scalar_one()
        db.session.remove()
    assert rows == len(outcomes) == upstream.hits("/json") - CALLERS  # (one warm-up call each)

    # after Redis is back the breaker and the limiter hold shared state again
    with app.app_context():
        api = ext.get(api_id)
        for _ in range(5):
            with pytest.raises(Exception) as info:
                api.at("down").with_attempts(1).get(f"{upstream.url}/status/503")
            assert "503" in str(info.value)
        assert api.breaker_state() == "open"
        with pytest.raises(CircuitOpenError):
            api.at("down").get(f"{upstream.url}/json")
        limited = ext.create("limited", "Limited", {"token": "t"})
        for _ in range(5):
            limited.at("few").get(f"{upstream.url}/json")
        with pytest.raises(RateLimitExceeded):
            limited.at("few").get(f"{upstream.url}/json")
        limited_id = limited.id
        db.session.remove()
    keys = redis.Redis.from_url(rds.url).keys("integrations:*")
    assert any(b"breaker" in k for k in keys) and len(keys) >= 2, keys
    # a fresh process sees the same open breaker and the spent limit (the state is shared)
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tests.helpers.faults import create_app\n"
            "from flask_integrations import RateLimitExceeded\n"
            "app = create_app()\n"
            "with app.app_context():\n"
            f"    ext = app.extensions['integrations']\n"
            f"    print(ext.get({api_id}).breaker_state())\n"
            "    try:\n"
            f"        ext.get({limited_id}).at('few').get('{upstream.url}/json'); print('allowed')\n"
            "    except RateLimitExceeded:\n"
            "        print('limited')\n",
        ],
        env=child_env(url, rds.url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.split() == ["open", "limited"], check.stdout + check.stderr
    pipeline_seconds = time.monotonic() - started

    # (b) a sync run whose RQ jobs are lost with a Redis restart
    with sync_fault_env(url, rds.url, tmp_path, SYNC_ITEMS, "0.004") as (env, events):
        workers = procs.supervised_workers(env, [False, True])
        sync_started = time.monotonic()
        integration_id, log_id = start_sync(app, pg, database, SYNC_ITEMS)
        assert wait_until(
            lambda: (item_counts(pg, database) or Counter())["success"] >= 0.3 * SYNC_ITEMS, 60, 0.05
        ), procs.tail()
        rds.restart(down_for=1.5)
        lost_jobs_at = dict(item_counts(pg, database) or {})
        rounds = recover_sync(pg, database, env, integration_id, log_id)
        respawned = workers.restarts
        sync_seconds = time.monotonic() - sync_started
        state = sync_end_state(pg, database, integration_id, log_id, events)
        assert_sync_complete(state, SYNC_ITEMS, log_id)
    write_figures(
        figures_dir,
        "redis_restart_during_pipelines_and_sync",
        {
            "caller_processes": CALLERS,
            "calls": len(outcomes),
            "calls_while_redis_down": len(while_down),
            "call_outcomes": dict(kinds),
            "redis_down_seconds": round(up_at - down_at, 2),
            "slowest_call_seconds": round(slowest, 3),
            "slowest_call_while_down_seconds": round(max(o["seconds"] for o in while_down), 3),
            "request_rows": rows,
            "pipeline_part_seconds": round(pipeline_seconds, 1),
            "sync_items": SYNC_ITEMS,
            "sync_items_when_redis_restarted": lost_jobs_at,
            "workers_respawned": respawned,
            "recovery_rounds": rounds,
            "sync_seconds": round(sync_seconds, 1),
            "handler_runs": sum(state["seen"].values()),
            "finalisations": len(state["finalisations"]),
        },
    )


# -- 4. RQ workers SIGKILLed repeatedly during a 5,000-item run ---------------------------------------

KILL_ITEMS = 5000
KILL_EVERY = 2.5
KILL_PHASE = 30.0  # seconds of kills; the documented recovery finishes the run afterwards


def test_workers_sigkilled_repeatedly_during_a_large_run(pg, rds, procs, figures_dir, tmp_path):
    database = "faults_kills"
    url = pg.create_database(database)
    with sync_fault_env(url, rds.url, tmp_path, KILL_ITEMS, "0.003") as (env, events):
        app = parent_app(url, rds.url)
        # --simple: the job runs in the worker process, so SIGKILL really kills the item in flight
        # (a forking worker's work horse lives in a session of its own and would survive killpg)
        workers = procs.supervised_workers(env, [True, True])
        started = time.monotonic()
        integration_id, log_id = start_sync(app, pg, database, KILL_ITEMS, timeout=90)
        kills, victim = 0, 0
        while time.monotonic() - started < KILL_PHASE:
            time.sleep(KILL_EVERY)
            counts = item_counts(pg, database) or Counter()
            if counts["success"] + counts["failed"] >= KILL_ITEMS:
                break
            workers.kill(victim)
            kills += 1
            victim = 1 - victim
        at_last_kill = dict(item_counts(pg, database) or {})
        rounds = recover_sync(pg, database, env, integration_id, log_id)
        seconds = time.monotonic() - started
        state = sync_end_state(pg, database, integration_id, log_id, events)
        assert_sync_complete(state, KILL_ITEMS, log_id)
    write_figures(
        figures_dir,
        "workers_sigkilled_during_large_run",
        {
            "items": KILL_ITEMS,
            "rq_workers": "2 (--simple)",
            "kill_every_seconds": KILL_EVERY,
            "sigkills": kills,
            "items_at_last_kill": at_last_kill,
            "recovery_rounds": rounds,
            "seconds": round(seconds, 1),
            **run_figures(state),
        },
    )


# -- 5. The upstream flapping between 200, 503 and dropped connections --------------------------------

FLAP_SECONDS = 5.0


def flapping_script(length: int, seed: int = 9) -> list[Any]:
    """200 / 503 / drop in random order, never more than 6 failures in a row (health never disables)."""
    rng = random.Random(seed)
    script: list[Any] = []
    run = 0
    for _ in range(length):
        answer = rng.choice(["200", "503", "drop"]) if run < 6 else "200"
        run = 0 if answer == "200" else run + 1
        script.append({"200": (200, {"ok": True}), "503": (503, {"error": "busy"}), "drop": "drop"}[answer])
    return script


def test_upstream_flapping_then_stable(pg, rds, upstream, caller_env, figures_dir, tmp_path):
    from flask_integrations import CircuitOpenError, Integration, IntegrationRequest

    database, url = caller_env
    app = parent_app(url, rds.url)
    with app.app_context():
        api_id = app.extensions["integrations"].create("api", "Flappy", {"token": "t"}).id
        db.session.remove()
    script = flapping_script(20_000)
    upstream.script("/flap", script)
    started = time.monotonic()
    callers = run_callers(api_id, "flap", f"{upstream.url}/flap", FLAP_SECONDS, tmp_path, attempts=2)
    outcomes = caller_outcomes(callers, tmp_path)
    hits = upstream.hits("/flap")
    assert hits < len(script)
    answered = Counter("drop" if a == "drop" else str(a[0]) for a in script[:hits])
    kinds = Counter(o["kind"] for o in outcomes)
    allowed = {"ok", "HTTP 503", "CircuitOpenError", "httpx.RemoteProtocolError"}
    assert set(kinds) <= allowed, f"unexpected outcomes: {kinds}"

    # stable at 200 from now on: the next calls (after the breaker's 1 s cooldown) heal everything
    upstream.reset()
    recovered_after = None
    with app.app_context():
        integration = db.session.get(Integration, api_id)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                integration.at("flap").get(f"{upstream.url}/flap")
            except CircuitOpenError:  # the cooldown still runs
                time.sleep(0.3)
                continue
            db.session.expire_all()
            integration = db.session.get(Integration, api_id)
            if integration.breaker_state() == "closed" and integration.health_status == "healthy":
                recovered_after = time.monotonic() - started
                break
        assert integration.breaker_state() == "closed"
        assert (integration.health_status, integration.consecutive_failures) == ("healthy", 0)
        stable_calls = upstream.hits("/flap")
        rows = db.session.execute(
            sa.select(IntegrationRequest.status_code, IntegrationRequest.failure_class).where(
                IntegrationRequest.integration_id == api_id, IntegrationRequest.endpoint == "flap"
            )
        ).all()
        db.session.remove()
    assert len(rows) == hits + stable_calls, "every attempt has exactly one request row"
    by_class = Counter(
        ("200" if r.status_code == 200 else "503" if r.status_code == 503 else "drop", r.failure_class)
        for r in rows
    )
    assert by_class == Counter(
        {
            ("200", None): answered["200"] + stable_calls,
            ("503", "upstream"): answered["503"],
            ("drop", "upstream"): answered["drop"],
        }
    ), by_class
    write_figures(
        figures_dir,
        "upstream_flapping",
        {
            "caller_processes": CALLERS,
            "flap_seconds": FLAP_SECONDS,
            "calls": len(outcomes),
            "call_outcomes": dict(kinds),
            "attempts_sent": hits,
            "answers": dict(answered),
            "request_rows": len(rows),
            "stable_calls_until_healthy": stable_calls,
            "recovered_after_seconds": round(recovered_after or -1, 2),
        },
    )
