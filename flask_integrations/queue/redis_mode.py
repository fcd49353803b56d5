"""Jobs in Redis mode: RQ queues, and the entry point every job runs through in a worker.

A job goes to an RQ queue as ``run_job("module.function", *args)``; `run_job` pushes an
app context per job. In `flask integrations worker` the app is the CLI's; under a plain
``rq worker --with-scheduler`` it is loaded from ``FLASK_APP`` the way ``flask`` does.
A failed enqueue (Redis down) is logged, never raised: the database row the job was for
stays pending and the recovery commands pick it up.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from flask import Flask

from ..state import AppState, current_state
from .jobs import QueuedJob, import_function
from .names import RUN_FAILURE_CALLBACK, RUN_JOB

logger = logging.getLogger("flask_integrations")


def redis_connection(state: AppState, worker: bool = False) -> Any:
    """The app's RQ-compatible (bytes) Redis client in this process.

    Web processes get short timeouts so that a dead Redis costs a request at
    most a second or two; a worker's blocking reads need no socket timeout.
    """

    def connect() -> Any:
        import redis

        url = state.setting("REDIS_URL")
        if worker:
            return redis.Redis.from_url(url)
        return redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)

    return state.derived("rq-worker-connection" if worker else "rq-connection", connect)


def queue_names(state: AppState) -> list[str]:
    """Every queue the package enqueues to: webhooks, syncs, per-provider sync queues, sync items."""
    sync = state.setting("SYNC")
    names = {state.setting("WEBHOOK")["queue"], sync["queue"], *sync["queues"].values()}
    if sync.get("item_queue"):
        names.add(sync["item_queue"])
    return sorted(names)


def rq_queue(state: AppState, name: str, worker: bool = False) -> Any:
    """The RQ queue `name` on the app's Redis."""
    from rq import Queue

    return Queue(name, connection=redis_connection(state, worker))


def _rq_options(job: QueuedJob) -> dict[str, Any]:
    options: dict[str, Any] = {"description": f"{job.func}{job.args!r}"}
    if job.job_timeout:
        options["job_timeout"] = job.job_timeout
    if job.on_failure:
        from rq import Callback

        options["on_failure"] = Callback(RUN_FAILURE_CALLBACK)
        options["meta"] = {"fi_on_failure": job.on_failure}
    return options


def enqueue_group(jobs: list[QueuedJob]) -> None:
    """Jobs of one group, in one `rq.group.Group` named after it (falls back to plain enqueues)."""
    first = jobs[0]
    try:
        from rq import Queue
        from rq.group import Group

        queue = rq_queue(first.state, first.queue)
        datas = []
        for job in jobs:
            options = _rq_options(job)
            timeout = options.pop("job_timeout", None)
            datas.append(Queue.prepare_data(RUN_JOB, args=(job.func, *job.args), timeout=timeout, **options))
        Group.create(connection=queue.connection, name=first.group).enqueue_many(queue, datas)
    except Exception as exc:
        logger.warning(
            "flask-integrations: could not enqueue group %r (%s: %s); enqueuing its jobs one by one.",
            first.group,
            type(exc).__name__,
            exc,
        )
        for job in jobs:
            enqueue_one(job)


def enqueue_one(job: QueuedJob) -> None:
    """Hand one job to RQ (delayed jobs to its scheduler); a failure is logged, never raised."""
    try:
        queue = rq_queue(job.state, job.queue)
        options = _rq_options(job)
        if job.delay is None:
            with queue.connection.pipeline() as pipe:  # one round trip to Redis instead of two
                queue.enqueue(RUN_JOB, job.func, *job.args, pipeline=pipe, **options)
                pipe.execute()
        else:
            queue.enqueue_in(timedelta(seconds=job.delay), RUN_JOB, job.func, *job.args, **options)
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


# -- in the worker --------------------------------------------------------------------------

_worker_app: Flask | None = None
_loaded_app: Flask | None = None


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
        _dispose_inherited_engines(current_state())
        return import_function(func)(*args)


def run_failure_callback(job: Any, connection: Any, *exc_info: Any) -> None:
    """RQ failure callback: ``on_failure(*args)`` of the failed job, inside an app context."""
    path = (job.meta or {}).get("fi_on_failure")
    if not path:
        return
    app = _job_app()
    with app.app_context():
        _dispose_inherited_engines(current_state())
        import_function(path)(*job.args[1:])


def _dispose_inherited_engines(state: AppState) -> None:
    """In a forked work horse, drop the pool connections inherited from the parent (without closing
    them), for every engine of the app (its binds too), once."""
    if not state.inherited_engines:
        return
    state.inherited_engines = False
    for engine in state.db.engines.values():
        engine.dispose(close=False)
