"""Queue glue: every background job of the package goes through `enqueue`.

A job is an importable function taking plain ids (never ORM objects). It is
enqueued only after the enqueuing session's transaction commits (a rollback
drops it), or at once when no transaction is open.

- Redis mode (`INTEGRATIONS_REDIS_URL` set): the job goes to an RQ queue as
  ``run_job("module.function", *args)``; `run_job` pushes an app context per
  job. In `flask integrations worker` the app is the CLI's; under a plain
  ``rq worker --with-scheduler`` it is loaded from ``FLASK_APP`` the way
  ``flask`` does. A failed enqueue (Redis down) is logged, never raised: the
  database row the job was for stays pending and the recovery commands pick
  it up.
- Embedded mode (no Redis): jobs run in this process right after the commit,
  each in a fresh app context; inside a request after the response is sent.
  (A request context pushed without dispatching, such as pytest-flask's
  `test_request_context()`, counts as no request.)
  RQ's ``is_async=False`` is not used: it ignores retries and leaves delayed
  jobs scheduled forever. Delayed jobs are not run (nor slept): their rows
  wait, and the recovery commands run them once the delay has passed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import import_module
from typing import TYPE_CHECKING, Any

from flask import Flask, after_this_request, g, has_app_context, has_request_context, request
from sqlalchemy import event
from sqlalchemy.orm import Session, scoped_session

from .state import current_state

if TYPE_CHECKING:  # pragma: no cover
    import redis

    from .state import AppState

logger = logging.getLogger("flask_integrations")

_SESSION_KEY = "flask_integrations.queued_jobs"
_COMMITTED_KEY = "flask_integrations.queued_jobs_committed"
_REQUEST_KEY = "_flask_integrations_jobs"
_DISPATCHING = "flask_integrations.dispatching"


@dataclass(eq=False)
class QueuedJob:
    """One job waiting for its transaction or for the embedded runner."""

    app: Flask
    func: str
    args: tuple[Any, ...]
    queue: str
    delay: float | None = None
    redis_url: str | None = None
    job_timeout: int | None = None
    #: ``module.function`` called with the job's args if RQ fails the job (abandoned, timed out)
    on_failure: str | None = None
    #: Redis mode: jobs committed together with the same group go to RQ as one `rq.group.Group` of that name
    group: str | None = None

    def __repr__(self) -> str:
        return f"<QueuedJob {self.func}{self.args!r} queue={self.queue!r} delay={self.delay}>"


def attempt_note(attempt: int, allowed: int, will_retry: bool) -> str:
    """`attempt 2 of 3, will retry` for a job's failure log line.

    A replay or manual retry runs once more after the budget is spent; its
    note says so rather than `attempt 4 of 3`.
    """
    if attempt <= allowed:
        note = f"attempt {attempt} of {allowed}"
    else:
        note = f"attempt {attempt}: a manual retry after the {allowed} allowed"
    return note + (", will retry" if will_retry else "")


def function_path(func: Callable[..., Any] | str) -> str:
    """``module.function`` of an importable job function."""
    if isinstance(func, str):
        return func
    path = f"{func.__module__}.{func.__qualname__}"
    if "<" in path:
        raise ValueError(f"Job function {path} is not importable: define it at module level.")
    return path


def import_function(path: str) -> Callable[..., Any]:
    module_name, _, name = path.rpartition(".")
    return getattr(import_module(module_name), name)


def enqueue(
    state: AppState,
    func: Callable[..., Any] | str,
    *args: Any,
    queue: str | None = None,
    delay: float | None = None,
    job_timeout: int | None = None,
    on_failure: Callable[..., Any] | str | None = None,
    group: str | None = None,
) -> QueuedJob:
    """Run ``func(*args)`` in the background once the current transaction commits.

    `queue` defaults to the webhook queue setting; `delay` is in seconds.
    `on_failure(*args)` runs (Redis mode, in an app context) when RQ fails the
    job itself: a worker killed mid-job whose job RQ finds abandoned, a timeout.
    """
    job = QueuedJob(
        app=state.app,
        func=function_path(func),
        args=tuple(args),
        queue=queue or state.setting("WEBHOOK")["queue"],
        delay=delay if delay and delay > 0 else None,
        redis_url=state.setting("REDIS_URL"),
        job_timeout=job_timeout,
        on_failure=function_path(on_failure) if on_failure is not None else None,
        group=group,
    )
    session = state.db.session
    if isinstance(session, scoped_session):
        session = session()
    if session.in_transaction():
        session.info.setdefault(_SESSION_KEY, []).append(job)
    else:
        dispatch([job])
    return job


@event.listens_for(Session, "after_commit")
def _mark_committed(session: Session) -> None:
    # also fired when a savepoint is released: only the outermost commit counts
    if session.info.get(_SESSION_KEY) and not session.in_nested_transaction():
        session.info[_COMMITTED_KEY] = True


@event.listens_for(Session, "after_transaction_end")
def _flush_after_commit(session: Session, transaction: Any) -> None:
    if transaction.parent is not None or not session.info.get(_SESSION_KEY):
        return
    jobs = session.info.pop(_SESSION_KEY)
    if session.info.pop(_COMMITTED_KEY, False):
        dispatch(jobs)


def dispatch(jobs: list[QueuedJob]) -> None:
    """Hand committed jobs to RQ or to the embedded runner; never raises."""
    embedded = []
    groups: dict[tuple[str, str, str], list[QueuedJob]] = {}
    for job in jobs:
        if job.redis_url and job.group and job.delay is None:
            groups.setdefault((job.redis_url, job.queue, job.group), []).append(job)
        elif job.redis_url:
            _enqueue_rq(job)
        elif job.delay is None:
            embedded.append(job)
        else:
            logger.debug("flask-integrations: delayed job %r left for the recovery sweep", job)
    for grouped in groups.values():
        _enqueue_rq_group(grouped)
    if embedded:
        _runner.submit(embedded)


# -- Redis mode ---------------------------------------------------------------------------------

_connections: dict[tuple[int, str], Any] = {}


def redis_connection(url: str, worker: bool = False) -> redis.Redis:
    """An RQ-compatible (bytes) Redis client for `url`, one per process.

    Web processes get short timeouts so that a dead Redis costs a request at
    most a second or two; a worker's blocking reads need no socket timeout.
    """
    key = (os.getpid(), url + ("#worker" if worker else ""))
    client = _connections.get(key)
    if client is None:
        import redis

        if worker:
            client = redis.Redis.from_url(url)
        else:
            client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
        _connections[key] = client
    return client


def rq_queue(name: str, url: str, worker: bool = False) -> Any:
    from rq import Queue

    return Queue(name, connection=redis_connection(url, worker))


def _rq_options(job: QueuedJob) -> dict[str, Any]:
    options: dict[str, Any] = {"description": f"{job.func}{job.args!r}"}
    if job.job_timeout:
        options["job_timeout"] = job.job_timeout
    if job.on_failure:
        from rq import Callback

        options["on_failure"] = Callback(run_failure_callback)
        options["meta"] = {"fi_on_failure": job.on_failure}
    return options


def _enqueue_rq_group(jobs: list[QueuedJob]) -> None:
    """Jobs of one group, in one `rq.group.Group` named after it (falls back to plain enqueues)."""
    first = jobs[0]
    try:
        from rq import Queue
        from rq.group import Group

        queue = rq_queue(first.queue, first.redis_url or "")
        datas = []
        for job in jobs:
            options = _rq_options(job)
            timeout = options.pop("job_timeout", None)
            datas.append(Queue.prepare_data(run_job, args=(job.func, *job.args), timeout=timeout, **options))
        Group.create(connection=queue.connection, name=first.group).enqueue_many(queue, datas)
    except Exception as exc:
        logger.warning(
            "flask-integrations: could not enqueue group %r (%s: %s); enqueuing its jobs one by one.",
            first.group,
            type(exc).__name__,
            exc,
        )
        for job in jobs:
            _enqueue_rq(job)


def _enqueue_rq(job: QueuedJob) -> None:
    try:
        queue = rq_queue(job.queue, job.redis_url or "")
        options = _rq_options(job)
        if job.delay is None:
            queue.enqueue(run_job, job.func, *job.args, **options)
        else:
            queue.enqueue_in(timedelta(seconds=job.delay), run_job, job.func, *job.args, **options)
    except Exception as exc:
        logger.warning(
            "flask-integrations: could not enqueue %s%r on queue %r (%s: %s); its row stays pending "
            "for `flask integrations recover-webhooks`.",
            job.func,
            job.args,
            job.queue,
            type(exc).__name__,
            exc,
        )


_worker_app: Flask | None = None
_loaded_app: Flask | None = None
_engine_pid: dict[int, int] = {}


def set_worker_app(app: Flask | None) -> None:
    """Make `run_job` use `app` (the `flask integrations worker` command sets it)."""
    global _worker_app
    _worker_app = app


def _job_app() -> Flask:
    global _loaded_app
    if _worker_app is not None:
        return _worker_app
    if _loaded_app is None:
        from flask.cli import ScriptInfo

        # the `flask` command reads FLASK_APP through its --app option; ScriptInfo alone does not
        _loaded_app = ScriptInfo(app_import_path=os.environ.get("FLASK_APP")).load_app()
    return _loaded_app


def run_job(func: str, *args: Any) -> Any:
    """RQ entry point of every job: ``func(*args)`` inside a fresh app context.

    Outside `flask integrations worker`, the app comes from ``FLASK_APP``.
    """
    app = _job_app()
    with app.app_context():
        _dispose_inherited_engines(app)
        return import_function(func)(*args)


def run_failure_callback(job: Any, connection: Any, *exc_info: Any) -> None:
    """RQ failure callback: ``on_failure(*args)`` of the failed job, inside an app context."""
    path = (job.meta or {}).get("fi_on_failure")
    if not path:
        return
    app = _job_app()
    with app.app_context():
        _dispose_inherited_engines(app)
        import_function(path)(*job.args[1:])


def _dispose_inherited_engines(app: Flask) -> None:
    """After a fork, drop the pool connections inherited from the parent (without closing them)."""
    pid = os.getpid()
    if _engine_pid.get(id(app)) == pid:
        return
    _engine_pid[id(app)] = pid
    db = current_state().db
    for engine in db.engines.values():
        engine.dispose(close=False)


# -- embedded mode ------------------------------------------------------------------------------


@dataclass(eq=False)
class _RequestJobs:
    jobs: list[QueuedJob] = field(default_factory=list)
    handed_off: bool = False


class EmbeddedRunner:
    """Runs jobs in this process after their commit, each in a fresh app context.

    Jobs committed inside a request run once the response has been sent
    (`call_on_close`; the request teardown if no response hook could be set).
    Jobs a job enqueues run after it, in the same loop, not nested.
    """

    def __init__(self) -> None:
        self._held: list[QueuedJob] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def submit(self, jobs: list[QueuedJob]) -> None:
        with self._lock:
            self._held.extend(jobs)
        if _dispatching_request():
            holder = g.get(_REQUEST_KEY)
            if holder is None or holder.handed_off:
                holder = _RequestJobs()
                setattr(g, _REQUEST_KEY, holder)
                after_this_request(_hand_off(holder, self))
            holder.jobs.extend(jobs)
            return
        self.run(jobs)

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

    def run_all(self) -> int:
        return self.run(self.held())

    @staticmethod
    def _run_one(job: QueuedJob) -> None:
        try:
            with job.app.app_context():
                import_function(job.func)(*job.args)
        except Exception:
            logger.exception("flask-integrations: embedded job %r failed", job)


def _dispatching_request() -> bool:
    """True inside a request the app is dispatching (not a bare `test_request_context()`)."""
    return has_request_context() and bool(request.environ.get(_DISPATCHING))


def _mark_dispatching() -> None:
    request.environ[_DISPATCHING] = True


def _hand_off(holder: _RequestJobs, runner: EmbeddedRunner) -> Callable[[Any], Any]:
    def attach(response: Any) -> Any:
        holder.handed_off = True
        response.call_on_close(lambda: runner.run(holder.jobs))
        return response

    return attach


def run_request_leftovers(exc: BaseException | None = None) -> None:
    """Teardown hook: jobs committed after the response hooks ran (e.g. in teardown) run now."""
    holder = g.get(_REQUEST_KEY) if has_app_context() else None
    if holder is not None and not holder.handed_off:
        holder.handed_off = True
        _runner.run(holder.jobs)


_runner = EmbeddedRunner()


def run_queued_jobs() -> int:
    """Run every job the embedded runner holds now (for tests); returns how many ran."""
    return _runner.run_all()


def init_app(app: Flask) -> None:
    app.before_request(_mark_dispatching)
    app.teardown_request(run_request_leftovers)
