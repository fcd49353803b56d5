"""Request rows written by a thread of their own, so a call does not wait for the database.

One row per attempt, written in line, would cost every call a round trip to
PostgreSQL or a commit of SQLite, most of the pipeline's overhead. Instead
the row's id is taken from a block of ids reserved ahead of time (see
`rows.id_reserver`), the call goes on at once, and a writer thread inserts
queued rows in batches, each batch in one transaction.

What callers can rely on, so that the row behaves as if it had been written
in line:

- Read your writes: before any statement this thread sends through the app's
  engine, and when the app context ends, the thread waits until the rows it
  queued are committed (`wait_for_thread`). Signals with receivers wait too.
- Nothing queued is dropped on a normal exit: the app context's teardown and
  `atexit` wait for the queue. A process killed with SIGKILL loses the rows it
  had not written yet (about the last `LINGER` seconds of calls), as a crash
  loses any unflushed log.
- The queue is bounded: when the database falls behind, callers wait for room.
- A row the database refuses (say its integration is not committed yet) is
  logged and skipped; the rest of its batch is written one by one.

Request rows are written on PostgreSQL with a small engine of the writer's own, with
`synchronous_commit = off` (a lost log row on a server crash is acceptable; the commit
is several times cheaper); elsewhere with the app's engine (`log_engine`).

SQLite has one writer at a time, and a commit between a transaction's read
and its first write makes that write fail (SQLITE_BUSY_SNAPSHOT). So a call
made inside the caller's write transaction is not queued (`record.py` writes
its row when the transaction ends), the read barrier does not wait inside a
transaction, and a batch that finds the database locked is tried again for up
to `LOCK_PATIENCE` seconds.
"""

from __future__ import annotations

import atexit
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from ..db.transactions import shares_caller_connection
from ..state import AppState
from ..state.app_state import keep_engine_after_fork, live_states
from .rows import InsertStatement, ReserveIds, id_reserver, raw_cursor

logger = logging.getLogger("flask_integrations")

#: Ids reserved at a time; the writer thread reserves the next block when half are used.
ID_BLOCK = 1000
#: Seconds the writer waits for more rows before writing a batch (none when a thread waits).
LINGER = 0.05
BATCH_MAX = 500
QUEUE_MAX = 10_000
#: Seconds the writer thread waits for work before it ends (an idle process keeps no thread).
IDLE_EXIT = 30.0
#: How long a thread waits for its rows before it gives up and goes on (the rows stay queued).
WAIT_TIMEOUT = 10.0
#: Execution option of a connection whose reads need not wait for this thread's request rows.
NO_BARRIER = "flask_integrations_no_read_barrier"
#: Seconds a batch is tried again while SQLite says the database is locked.
LOCK_PATIENCE = 60.0

#: Runs in the writer thread and returns the rest of a row's values.
Finish = Callable[[], dict[str, Any]]
#: (sequence number, row, finish)
Queued = tuple[int, dict[str, Any], Finish | None]

_thread_seen = threading.local()


def _seen() -> dict[RowWriter, int]:
    """The last sequence number this thread queued, per writer."""
    seen = getattr(_thread_seen, "seqs", None)
    if seen is None:
        seen = _thread_seen.seqs = {}
    return seen


class RowWriter:
    """Queues rows for one table of one engine and inserts them from a daemon thread."""

    def __init__(self, engine: sa.Engine, table: sa.Table, reserve_ids: ReserveIds):
        self.engine = engine
        self.table = table
        self.statement = InsertStatement(engine, table)
        self.reserve_ids = reserve_ids
        self.sqlite = engine.dialect.name == "sqlite"
        self.ids: deque[int] = deque()
        self.ids_lock = threading.Lock()
        self.cond = threading.Condition()
        self.queue: deque[Queued] = deque()
        self.queued = 0  # sequence number of the last row queued
        self.waiters = 0  # threads waiting for their rows: write now, do not linger
        self.written = 0  # every row up to this sequence number is written (or given up)
        self.thread: threading.Thread | None = None
        self._guarded: sa.Engine | None = None

    def __repr__(self) -> str:
        return f"<RowWriter table={self.table.name!r} queued={self.queued} written={self.written}>"

    # -- the read barrier --------------------------------------------------------------------

    def guard_reads(self, app_engine: sa.Engine) -> None:
        """Before any statement a thread sends through `app_engine`, wait for the rows it queued."""
        self._guarded = app_engine
        event.listen(app_engine, "before_cursor_execute", self._read_barrier)

    def stop_guarding_reads(self) -> None:
        engine, self._guarded = self._guarded, None
        if engine is not None and event.contains(engine, "before_cursor_execute", self._read_barrier):
            event.remove(engine, "before_cursor_execute", self._read_barrier)

    def _read_barrier(self, connection: sa.Connection, cursor: Any, *_: Any) -> None:
        if self.sqlite and cursor.connection.in_transaction:
            return  # this connection may hold the write lock the writer needs; see the module's docstring
        if connection.get_execution_options().get(NO_BARRIER):
            return  # a read that never looks at request rows (the overrides)
        self.wait_for_thread()

    # -- callers ---------------------------------------------------------------------------

    def submit(self, row: dict[str, Any], finish: Finish | None = None) -> int:
        """Queue `row` and return the id it will have.

        `finish()`, when given, runs in the writer thread before the insert and
        returns more of the row's values (the redacted response body: work the
        call need not wait for).
        """
        row_id = self._next_id()
        with self.cond:
            while len(self.queue) >= QUEUE_MAX:
                self.cond.wait(1.0)
            self.queued += 1
            self.queue.append((self.queued, {**row, "id": row_id}, finish))
            _seen()[self] = self.queued
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="flask-integrations-rows", daemon=True)
                self.thread.start()
            if len(self.queue) == 1 or len(self.queue) >= BATCH_MAX:  # else the writer is lingering
                self.cond.notify_all()
        return row_id

    def wait_for_thread(self) -> None:
        """Wait until the rows this thread queued are committed."""
        seq = _seen().get(self, 0)
        if seq > self.written:
            self.wait_for(seq)

    def wait_for(self, seq: int | None = None) -> bool:
        """Wait until every row up to `seq` (default: all queued now) is written."""
        with self.cond:
            target = self.queued if seq is None else seq
            self.waiters += 1
            self.cond.notify_all()
            try:
                done = self.cond.wait_for(lambda: self.written >= target, WAIT_TIMEOUT)
            finally:
                self.waiters -= 1
        if not done:
            logger.warning(
                "flask-integrations: request rows were not written within %.0f s (is a lock held on "
                "their integration row?); going on without them.",
                WAIT_TIMEOUT,
            )
        return done

    def _next_id(self) -> int:
        with self.ids_lock:
            if not self.ids:
                self.ids.extend(self._fetch_ids())
            return self.ids.popleft()

    def _fetch_ids(self) -> list[int]:
        return self.reserve_ids(ID_BLOCK)

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self.cond:
                if not self.cond.wait_for(lambda: bool(self.queue), IDLE_EXIT):
                    self.thread = None  # the next submit starts another
                    return
                # Gather a few more rows unless someone waits: fewer, larger batches take the
                # GIL from the calling threads less often.
                self.cond.wait_for(lambda: len(self.queue) >= BATCH_MAX or self.waiters > 0, LINGER)
                batch = [self.queue.popleft() for _ in range(min(len(self.queue), BATCH_MAX))]
            _finish(batch)
            self._write(batch)
            self._top_up_ids()
            with self.cond:
                self.written = batch[-1][0]
                self.cond.notify_all()

    def _write(self, batch: list[Queued]) -> None:
        rows = [row for _, row, _ in batch]
        try:
            self._insert(rows)
            return
        except Exception as exc:  # noqa: BLE001 - a log row must never take the writer down
            if len(rows) == 1:
                logger.error("flask-integrations could not write request row %s: %s", rows[0]["id"], exc)
                return
        for row in rows:  # one bad row (or a dropped connection) must not lose the others
            try:
                self._insert([row])
            except Exception as exc:  # noqa: BLE001
                logger.error("flask-integrations could not write request row %s: %s", row["id"], exc)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        """One transaction, one compiled statement on a raw connection (SQLAlchemy's per-statement
        work would hold the GIL several times longer; see rows.py)."""
        deadline = time.monotonic() + LOCK_PATIENCE
        while True:
            try:
                with raw_cursor(self.engine, transaction=True) as cursor:
                    self.statement.write_many(cursor, rows)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _top_up_ids(self) -> None:
        """Fetch the next id block here rather than in a caller's call."""
        if len(self.ids) >= ID_BLOCK // 2:
            return
        try:
            fresh = self._fetch_ids()
        except Exception:  # noqa: BLE001 - the caller fetches (and reports) when it needs one
            return
        with self.ids_lock:
            self.ids.extend(fresh)


def _finish(batch: list[Queued]) -> None:
    for _, row, finish in batch:
        if finish is None:
            continue
        try:
            row.update(finish())
        except Exception:  # noqa: BLE001 - the row is still worth writing without those values
            logger.exception("flask-integrations could not finish request row %s", row["id"])
        time.sleep(0)  # let a calling thread that waits for the GIL go first


def log_engine(state: AppState) -> sa.Engine:
    """The engine request rows are written with (the app's own, except on PostgreSQL)."""
    engine = state.engine()
    if engine.dialect.name != "postgresql":
        return engine
    return state.derived(
        "log-engine",
        lambda: sa.create_engine(
            engine.url,
            pool_size=2,
            max_overflow=8,
            pool_pre_ping=True,
            connect_args={"options": "-c synchronous_commit=off"},
        ),
        after_fork=keep_engine_after_fork,
    )


def writer_for(state: AppState) -> RowWriter | None:
    """The app's request-row writer in this process (a new one after a fork), or None where rows
    cannot be written behind the call (see `rows.id_reserver`)."""
    return state.derived("row-writer", lambda: _new_writer(state), after_fork=_abandon)


def _new_writer(state: AppState) -> RowWriter | None:
    engine = log_engine(state)
    if shares_caller_connection(engine):  # one connection for everyone: nothing to write with
        return None
    table = state.tables["requests"]
    reserve_ids = id_reserver(engine, table)
    if reserve_ids is None:
        return None
    writer = RowWriter(engine, table, reserve_ids)
    writer.guard_reads(state.engine())
    return writer


def _abandon(writer: RowWriter | None) -> bool:
    """In a forked child: the parent's writer (its queue, its thread) is not the child's."""
    if writer is not None:
        writer.stop_guarding_reads()
    return False


def _writers_here() -> list[RowWriter]:
    return [w for w in (s.peek("row-writer") for s in live_states()) if w is not None]


def wait_for_thread_rows() -> None:
    """Wait until the rows this thread queued, for any app, are committed."""
    for writer in _writers_here():
        writer.wait_for_thread()


def wait_for_all_rows() -> None:
    """Wait until every row queued in this process is committed (cache-hit flush, exit)."""
    for writer in _writers_here():
        writer.wait_for()


atexit.register(wait_for_all_rows)
