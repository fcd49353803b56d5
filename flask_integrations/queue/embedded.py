"""Jobs in the embedded mode (no Redis): run in this process right after their commit.

Each job runs in a fresh app context; inside a request, after the response is sent: when
the server closes it, or (werkzeug's development server, which may not close it) once it is
freed. (A request context pushed without dispatching, such as pytest-flask's
`test_request_context()`, counts as no request.) RQ's ``is_async=False`` is not used:
it ignores retries and leaves delayed jobs scheduled forever. Delayed jobs are not run
(nor slept): their rows wait, and the recovery commands run them once the delay has passed.
The runner keeps the latest of them (a bounded list) so that a test can run them at once:
``run_queued_jobs(include_delayed=True)``. Each job checks its row's state, so a delayed job
run by both a test and a sweep does its work once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, after_this_request, current_app, g, has_app_context, has_request_context, request

from .jobs import QueuedJob, import_function

logger = logging.getLogger("flask_integrations")

_REQUEST_KEY = "_flask_integrations_jobs"
_DISPATCHING = "flask_integrations.dispatching"
#: Delayed jobs kept for `run_queued_jobs(include_delayed=True)`; older ones are left to the sweeps.
MAX_DELAYED = 10_000
#: The environ key of werkzeug's development server (`flask run`), which does not always close
#: a response (see `EmbeddedRunner.run_when_dropped`).
_WERKZEUG_SERVER = "werkzeug.socket"


@dataclass(eq=False)
class _RequestJobs:
    jobs: list[QueuedJob] = field(default_factory=list)
    handed_off: bool = False
    closed: bool = False  # the server called the response's close()


class EmbeddedRunner:
    """Runs jobs in this process after their commit, each in a fresh app context.

    Jobs committed inside a request run once the response has been sent
    (`call_on_close`; the request teardown if no response hook could be set;
    `run_when_dropped` if the server may never close the response).
    Jobs a job enqueues run after it, in the same loop, not nested.
    """

    def __init__(self) -> None:
        self._held: list[QueuedJob] = []
        self._delayed: deque[QueuedJob] = deque(maxlen=MAX_DELAYED)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._dropped: queue.SimpleQueue[_RequestJobs] = queue.SimpleQueue()
        self._dropped_thread: threading.Thread | None = None

    def submit(self, jobs: list[QueuedJob]) -> None:
        with self._lock:
            self._held.extend(jobs)
        if dispatching_request():
            holder = g.get(_REQUEST_KEY)
            if holder is None or holder.handed_off:
                holder = _RequestJobs()
                setattr(g, _REQUEST_KEY, holder)
                after_this_request(_hand_off(holder, self))
            holder.jobs.extend(jobs)
            return
        self.run(jobs)

    def hold_delayed(self, jobs: list[QueuedJob]) -> None:
        """Keep delayed jobs (the sweeps run them when due) for `run_all(include_delayed=True)`."""
        with self._lock:
            self._delayed.extend(jobs)

    def held(self) -> list[QueuedJob]:
        with self._lock:
            return list(self._held)

    def _take(self, job: QueuedJob) -> bool:
        with self._lock:
            for index, held in enumerate(self._held):
                if held is job:
                    del self._held[index]
                    return True
            return False

    def run(self, jobs: list[QueuedJob]) -> int:
        """Run these jobs (those still held) and any they enqueue; returns how many ran."""
        pending = getattr(self._local, "pending", None)
        if pending is not None:  # called from inside a running job: the outer loop runs them
            pending.extend(jobs)
            return 0
        self._local.pending = pending = list(jobs)
        ran = 0
        try:
            while pending:
                job = pending.pop(0)
                if self._take(job):
                    self._run_one(job)
                    ran += 1
        finally:
            self._local.pending = None
        return ran

    def run_all(self, include_delayed: bool = False, app: Flask | None = None) -> int:
        """Run the held jobs; with `include_delayed`, delayed ones too, at once, and again until
        no job (a retry of a retry included) is left. With `app`, only that app's delayed jobs
        (another app's, in the same test process, keep waiting). Returns how many ran."""
        ran = self.run(self.held())
        while include_delayed:
            with self._lock:
                mine = [job for job in self._delayed if app is None or job.state.app is app]
                others = [job for job in self._delayed if not (app is None or job.state.app is app)]
                self._delayed = deque(others, maxlen=MAX_DELAYED)
                self._held.extend(mine)
            if not mine:
                return ran
            _wait_until_due(mine)
            ran += self.run(mine) + self.run(self.held())
        return ran

    def run_when_dropped(self, response: Any, holder: _RequestJobs) -> None:
        """Run the holder's jobs once `response` is freed, if the server never closed it.

        PEP 3333 has the server call close() however the request ends, but werkzeug's
        development server skips it when the client resets the connection while the server
        drains the socket after the response: a browser that closes its socket once it has
        read a redirect's headers, before the body arrived, on a loaded machine. The jobs
        would be held forever. A weakref callback can run in any thread at any point (inside
        a lock, say), so it only puts the holder on a SimpleQueue (reentrant); a thread of
        the runner's own runs the jobs.
        """
        weakref.finalize(response, self._freed, holder).atexit = False
        with self._lock:
            if self._dropped_thread is None or not self._dropped_thread.is_alive():  # or forked
                self._dropped_thread = threading.Thread(
                    target=self._run_dropped, name="flask-integrations-dropped-jobs", daemon=True
                )
                self._dropped_thread.start()

    def _freed(self, holder: _RequestJobs) -> None:
        if not holder.closed:
            self._dropped.put(holder)

    def _run_dropped(self) -> None:
        while True:
            holder = self._dropped.get()
            held = {id(job) for job in self.held()}
            if any(id(job) in held for job in holder.jobs):
                logger.info("flask-integrations: the server dropped a response unclosed; its jobs run now")
            self.run(holder.jobs)

    @staticmethod
    def _run_one(job: QueuedJob) -> None:
        try:
            with job.state.app.app_context():
                import_function(job.func)(*job.args)
        except Exception:
            logger.exception("flask-integrations: embedded job %r failed", job)


def _wait_until_due(jobs: list[QueuedJob]) -> None:
    """Sleep until the latest `not_before` among `jobs` (the jobs that must wait out their delay)."""
    due = max((job.not_before for job in jobs if job.not_before is not None), default=None)
    if due is not None and due > time.time():
        time.sleep(due - time.time())


def dispatching_request() -> bool:
    """True inside a request the app is dispatching (not a bare `test_request_context()`)."""
    return has_request_context() and bool(request.environ.get(_DISPATCHING))


def _mark_dispatching() -> None:
    request.environ[_DISPATCHING] = True


def _hand_off(holder: _RequestJobs, runner: EmbeddedRunner) -> Callable[[Any], Any]:
    def attach(response: Any) -> Any:
        holder.handed_off = True
        response.call_on_close(lambda: _closed(holder, runner))
        if _WERKZEUG_SERVER in request.environ:
            runner.run_when_dropped(response, holder)
        return response

    return attach


def _closed(holder: _RequestJobs, runner: EmbeddedRunner) -> None:
    holder.closed = True
    runner.run(holder.jobs)


def run_request_leftovers(exc: BaseException | None = None) -> None:
    """Teardown hook: jobs committed after the response hooks ran (e.g. in teardown) run now."""
    holder = g.get(_REQUEST_KEY) if has_app_context() else None
    if holder is not None and not holder.handed_off:
        holder.handed_off = True
        runner.run(holder.jobs)


runner = EmbeddedRunner()


def run_queued_jobs(include_delayed: bool = False) -> int:
    """Run every job the embedded runner holds now (for tests); returns how many ran.

    With `include_delayed`, delayed retries (of sync items and webhooks) run at once too,
    until none is left: a handler that keeps failing runs until it is out of tries. Inside an
    app context, only that app's delayed jobs run.
    """
    app = current_app._get_current_object() if has_app_context() else None  # type: ignore[attr-defined]
    return runner.run_all(include_delayed, app)


def init_app(app: Flask) -> None:
    """Know which requests are being dispatched, and run jobs committed late in one at its teardown."""
    app.before_request(_mark_dispatching)
    app.teardown_request(run_request_leftovers)
