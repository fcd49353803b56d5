"""`flask integrations worker`: an RQ worker whose jobs run inside this app's context."""

from __future__ import annotations

import click
from flask import current_app

from ..queue import queue_names, redis_connection, rq_queue, set_worker_app
from ..state import current_state
from .group import fail, integrations_cli


@integrations_cli.command("worker")
@click.option("--queue", "-q", "queues", multiple=True, help="Queue to listen on (repeatable).")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@click.option("--simple", is_flag=True, help="Run jobs in the worker process instead of a fork per job.")
def worker(queues: tuple[str, ...], burst: bool, simple: bool) -> None:
    """Run an RQ worker (with its scheduler) whose jobs run inside this app's context.

    Listens on the webhook and sync queues unless --queue is given.
    """
    state = current_state()
    if not state.setting("REDIS_URL"):
        fail("INTEGRATIONS_REDIS_URL is not set: in embedded mode jobs run in the web process.")
    names = list(queues) or queue_names(state)
    from rq import SimpleWorker, Worker

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    set_worker_app(app)
    _prepare_for_work_horses()
    connection = redis_connection(state, worker=True)
    worker_class = SimpleWorker if simple else Worker
    rq_queues = [rq_queue(state, name, worker=True) for name in names]
    rq_worker = worker_class(rq_queues, connection=connection)
    rq_worker.work(burst=burst, with_scheduler=True)


def _prepare_for_work_horses() -> None:
    """Configure the ORM mappers and import the job modules once, in the worker itself: a forked
    work horse inherits them, where it would otherwise redo them for every job (~0.3 s of CPU)."""
    from sqlalchemy.orm import configure_mappers

    from ..sync import jobs as _sync_jobs  # noqa: F401
    from ..webhooks import jobs as _webhook_jobs  # noqa: F401

    configure_mappers()
