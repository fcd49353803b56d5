"""Pieces of the load test: processes it starts, /proc sampling, the open-model load generator."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from examples.webhook_providers import hmac_signature
from tests.helpers.app import ROOT
from tests.helpers.load_app import WEBHOOK_EVENT

#: Share of the fixed-rate slots per traffic class (syncs come on top, every `sync_every` seconds).
MIX = {
    "item": 0.35,  # outbound GET, 20 ms upstream
    "cached": 0.20,  # outbound GET with with_cache(60), 20 keys: mostly cache hits
    "order": 0.05,  # outbound POST with an idempotency key
    "webhook": 0.27,  # signed webhook, new delivery id: 202
    "webhook_dup": 0.03,  # a delivery already acknowledged, sent again: 200 duplicate
    "webhook_bad": 0.05,  # wrong signature: 401, nothing stored
    "health": 0.05,  # a route reading the database
}
EXPECTED_STATUS = {
    "item": 200,
    "cached": 200,
    "order": 200,
    "webhook": 202,
    "webhook_dup": 200,
    "webhook_bad": 401,
    "health": 200,
    "sync": 200,
}


# -- processes ----------------------------------------------------------------------------------


def start(args: list[str], env: dict[str, str], log: Path, stdout: Any = None) -> subprocess.Popen:
    """A process of its own session (its group is stopped by id at the end), stderr into `log`."""
    return subprocess.Popen(
        args,
        env=env,
        cwd=ROOT,
        stdout=stdout if stdout is not None else log.open("ab"),
        stderr=log.open("ab"),
        start_new_session=True,
        text=stdout is not None,
    )


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process group this test started (graceful for gunicorn and RQ), then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces: fields after the last ")"
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime of the process and of its waited-for children (an RQ work horse per job)
    return round(sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks, 2)


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of the machine's CPU time (all cores) that was busy between two `machine_cpu` readings."""
    return round((after[0] - before[0]) / max(after[1] - before[1], 1), 3)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class MemorySampler:
    """RSS of the watched processes every `every` seconds, plus named marks (start, warm, end...)."""

    def __init__(self, pids: dict[str, int], every: float = 5.0):
        self.pids = pids
        self.every = every
        self.series: list[dict[str, Any]] = []
        self.marks: dict[str, dict[str, float | None]] = {}
        self._origin = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, float | None]:
        return {name: rss_mb(pid) for name, pid in self.pids.items()}

    def mark(self, name: str) -> None:
        self.marks[name] = self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.series.append({"t": round(time.monotonic() - self._origin, 1), **self.sample()})

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def report(self, warm: str = "warm", end: str = "end") -> dict[str, Any]:
        report = {}
        for name in self.pids:
            values = [s[name] for s in self.series if s.get(name) is not None]
            marks = {mark: sample.get(name) for mark, sample in self.marks.items()}
            growth = None
            if marks.get(warm) is not None and marks.get(end) is not None:
                growth = round(marks[end] - marks[warm], 1)
            report[name] = {**marks, "max": max(values, default=None), "growth_after_warmup": growth}
        return report


# -- the load -----------------------------------------------------------------------------------


@dataclass
class Slot:
    offset: float  # seconds after the start at which the request is due
    kind: str
    n: int


def schedule(seconds: float, rate: float, sync_every: float, seed: int = 9) -> list[Slot]:
    """The fixed-rate timetable: one slot every 1/rate s drawn from MIX, plus a sync every `sync_every` s."""
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    slots = [
        Slot(i / rate, rng.choices(kinds, weights)[0], rng.randrange(1_000_000))
        for i in range(int(seconds * rate))
    ]
    slots += [Slot(t * sync_every + 0.5, "sync", t) for t in range(int(seconds / sync_every))]
    return sorted(slots, key=lambda s: s.offset)


@dataclass
class Result:
    kind: str
    due: float  # monotonic time the slot was due
    sent: float  # when the request left the generator
    done: float
    status: int | None
    ok: bool
    error: str | None = None
    body: Any = None


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]
    id: int


@dataclass
class LoadGenerator:
    """Sends each slot at its due time (open model) from a thread pool; never more than `cap` requests."""

    base_url: str
    hooks_id: int
    secret: str
    cap: int
    threads: int = 32
    results: list[Result] = field(default_factory=list)
    acknowledged: list[Delivery] = field(default_factory=list)
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (original id, id answered)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, slots: list[Slot], deadline: float, on_tick: Any = None) -> tuple[float, float]:
        """Send the slots until `deadline` (monotonic) or `cap`; returns (start, end of sending)."""
        limits = httpx.Limits(max_connections=self.threads, max_keepalive_connections=self.threads)
        client = httpx.Client(base_url=self.base_url, limits=limits, timeout=15.0)
        # leaving the pool waits for the requests in flight (each bounded by the client timeout)
        with client, ThreadPoolExecutor(self.threads, thread_name_prefix="load") as pool:
            start = time.monotonic()
            for count, slot in enumerate(slots):
                due = start + slot.offset
                if count >= self.cap or due > deadline:
                    break
                if on_tick is not None:
                    on_tick(slot.offset)
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                pool.submit(self._send, client, slot, due)
            sent_until = time.monotonic()
        return start, sent_until

    def _send(self, client: httpx.Client, slot: Slot, due: float) -> None:
        sent = time.monotonic()
        status, ok, error, body = None, False, None, None
        kind = slot.kind
        try:
            response, expected_id = self._request(client, slot)
            kind = slot.kind  # a webhook_dup with nothing acknowledged yet was sent as a new webhook
            status = response.status_code
            body = _json(response)
            ok = status == EXPECTED_STATUS[slot.kind]
            if ok and slot.kind == "webhook_dup":
                ok = (
                    isinstance(body, dict) and body.get("status") == "duplicate" and body["id"] == expected_id
                )
                with self._lock:
                    self.duplicates.append((expected_id, body.get("id") if isinstance(body, dict) else None))
            if not ok:
                error = f"{status}: {response.text[:200]}"
        except Exception as exc:  # a timeout, a reset connection: an error of the run
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.results.append(
                Result(kind, due, sent, time.monotonic(), status, ok, error, body if kind == "sync" else None)
            )

    def _request(self, client: httpx.Client, slot: Slot) -> tuple[httpx.Response, int | None]:
        kind, n = slot.kind, slot.n
        if kind == "item":
            return client.get(f"/api/items/{n}"), None
        if kind == "cached":
            return client.get(f"/api/cached/{n % 20}"), None
        if kind == "order":
            return client.post("/api/orders", json={"key": f"order-{uuid.uuid4().hex}"}), None
        if kind == "health":
            return client.get("/api/health"), None
        if kind == "sync":
            return client.post("/api/sync"), None
        url = f"/integrations/hooks/{self.hooks_id}/webhook"
        if kind == "webhook_dup":
            with self._lock:
                earlier = self.acknowledged[n % len(self.acknowledged)] if self.acknowledged else None
            if earlier is not None:
                return client.post(url, content=earlier.body, headers=earlier.headers), earlier.id
            slot.kind = kind = "webhook"  # nothing acknowledged yet: a new delivery instead
        body = json.dumps({"type": WEBHOOK_EVENT, "n": n, "note": "x" * 200}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Event": WEBHOOK_EVENT,
            "X-Delivery": uuid.uuid4().hex,
            "X-Signature-256": hmac_signature(self.secret, body) if kind == "webhook" else "sha256=00",
        }
        response = client.post(url, content=body, headers=headers)
        if kind == "webhook" and response.status_code == 202:
            with self._lock:
                self.acknowledged.append(Delivery(body, headers, response.json()["id"]))
        return response, None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """count, p50, p95, p99 and max (nearest rank) of latencies in seconds, as milliseconds."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))] * 1000, 1)

    return {
        "count": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(ordered[-1] * 1000, 1),
    }


def windows(results: list[Result], start: float, width: float) -> list[dict[str, Any]]:
    """Requests, errors and p99 latency (from the due time) per window of `width` seconds."""
    buckets: dict[int, list[Result]] = {}
    for result in results:
        buckets.setdefault(int((result.due - start) // width), []).append(result)
    return [
        {
            "from_s": index * width,
            "requests": len(rs),
            "errors": sum(1 for r in rs if not r.ok),
            "p99_ms": percentiles([r.done - r.due for r in rs])["p99"],
        }
        for index, rs in sorted(buckets.items())
    ]


def python() -> str:
    return sys.executable
