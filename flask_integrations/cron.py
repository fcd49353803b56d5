"""Due syncs from RQ's CronScheduler, instead of a system cron running `flask integrations sync`.

Register it in an RQ cron configuration file::

    # cron_config.py
    from rq import cron

    import flask_integrations.cron

    flask_integrations.cron.register(cron)                      # every minute, queue "integrations"
    # flask_integrations.cron.register(cron, queue_name="syncs", cron_expression="*/5 * * * *")

then run ``rq cron cron_config.py --url $INTEGRATIONS_REDIS_URL`` beside
``flask integrations worker`` (or any RQ worker with ``FLASK_APP`` set). The
cron job is ``run_job("flask_integrations.cron.sync_due")``: the worker pushes
the app context, and `sync_due` does what `flask integrations sync` does.
"""

from __future__ import annotations

from typing import Any

from .queue import run_job
from .queue.names import CRON_SYNC_DUE
from .state import current_state
from .sync.schedule import start_due, sweep

JOB = CRON_SYNC_DUE


def sync_due() -> int:
    """Sweep stuck items and runs, then start a run of every due integration; returns how many started.

    Needs an app context (the worker's `run_job` gives one).
    """
    state = current_state()
    sweep(state)
    return len(start_due(state))


def register(cron: Any, queue_name: str = "integrations", cron_expression: str = "* * * * *") -> Any:
    """Register `sync_due` with RQ's cron: the ``rq.cron`` module (in a config file) or a `CronScheduler`."""
    return cron.register(
        run_job, queue_name, args=(JOB,), cron=cron_expression, name="flask-integrations-sync"
    )
