"""`enqueue`: every background job of the package goes through it.

A job is enqueued only after the enqueuing session's transaction commits (a rollback
drops it), or at once when no transaction is open; then it goes to RQ (Redis mode, see
redis_mode.py) or to the embedded runner (see embedded.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..db.transactions import batch_after_commit
from ..state import AppState
from . import embedded, redis_mode
from .jobs import QueuedJob, function_path

logger = logging.getLogger("flask_integrations")


def enqueue(
    state: AppState,
    func: Callable[..., Any] | str,
    *args: Any,
    queue: str | None = None,
    delay: float | None = None,
    job_timeout: int | None = None,
    on_failure: Callable[..., Any] | str | None = None,
    group: str | None = None,
    wait_out_delay: bool = False,
) -> QueuedJob:
    """Run ``func(*args)`` in the background once the current transaction commits.

    `queue` defaults to the webhook queue setting; `delay` is in seconds (with
    `wait_out_delay`, the embedded mode's `run_queued_jobs(include_delayed=True)` waits
    it out instead of running the job at once).
    `on_failure(*args)` runs (Redis mode, in an app context) when RQ fails the
    job itself: a worker killed mid-job whose job RQ finds abandoned, a timeout.
    """
    job = QueuedJob(
        state=state,
        func=function_path(func),
        args=tuple(args),
        queue=queue or state.setting("WEBHOOK")["queue"],
        delay=delay if delay and delay > 0 else None,
        redis_url=state.setting("REDIS_URL"),
        job_timeout=job_timeout,
        on_failure=function_path(on_failure) if on_failure is not None else None,
        group=group,
        not_before=time.time() + delay if wait_out_delay and delay else None,
    )
    batch_after_commit(state.db.session, "flask_integrations.jobs", job, dispatch)
    return job


def dispatch(jobs: list[QueuedJob]) -> None:
    """Hand committed jobs to RQ or to the embedded runner; never raises."""
    embedded_jobs, delayed = [], []
    groups: dict[tuple[str, str, str], list[QueuedJob]] = {}
    for job in jobs:
        if job.redis_url and job.group and job.delay is None:
            groups.setdefault((job.redis_url, job.queue, job.group), []).append(job)
        elif job.redis_url:
            redis_mode.enqueue_one(job)
        elif job.delay is None:
            embedded_jobs.append(job)
        else:
            logger.debug("flask-integrations: delayed job %r left for the recovery sweep", job)
            delayed.append(job)
    for grouped in groups.values():
        redis_mode.enqueue_group(grouped)
    if delayed:
        embedded.runner.hold_delayed(delayed)
    if embedded_jobs:
        embedded.runner.submit(embedded_jobs)
