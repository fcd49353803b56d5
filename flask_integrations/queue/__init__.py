"""Background jobs: enqueued after their transaction commits, run by RQ or in-process.

Every job is ``run_job("module.function", *ids)`` in RQ (Redis mode) or runs in this process
after the commit (embedded mode); see dispatch.py, redis_mode.py and embedded.py.
"""

from .dispatch import dispatch, enqueue
from .embedded import dispatching_request, init_app, run_queued_jobs
from .jobs import QueuedJob, attempt_note, function_path, import_function
from .redis_mode import queue_names, redis_connection, rq_queue, run_failure_callback, run_job, set_worker_app

__all__ = [
    "QueuedJob",
    "attempt_note",
    "dispatch",
    "dispatching_request",
    "enqueue",
    "function_path",
    "import_function",
    "init_app",
    "queue_names",
    "redis_connection",
    "rq_queue",
    "run_failure_callback",
    "run_job",
    "run_queued_jobs",
    "set_worker_app",
]
