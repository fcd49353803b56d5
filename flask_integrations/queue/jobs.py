"""A background job: an importable function taking plain ids (never ORM objects), and how it is named."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any


@dataclass(eq=False)
class QueuedJob:
    """One job waiting for its transaction or for the embedded runner."""

    #: the `AppState` of the app that enqueued it (its jobs run in a context of that app)
    state: Any
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
    #: a delay that even `run_queued_jobs(include_delayed=True)` waits out (a rate-limited sync
    #: item: running it sooner would only meet the limit again): the time.time() it is due
    not_before: float | None = None

    def __repr__(self) -> str:
        return f"<QueuedJob {self.func}{self.args!r} queue={self.queue!r} delay={self.delay}>"


def function_path(func: Callable[..., Any] | str) -> str:
    """``module.function`` of an importable job function."""
    if isinstance(func, str):
        return func
    path = f"{func.__module__}.{func.__qualname__}"
    if "<" in path:
        raise ValueError(f"Job function {path} is not importable: define it at module level.")
    return path


def import_function(path: str) -> Callable[..., Any]:
    """The function ``module.function`` names."""
    module_name, _, name = path.rpartition(".")
    return getattr(import_module(module_name), name)


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
