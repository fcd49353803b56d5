"""The names jobs are enqueued under.

They are part of the contract between releases: during a rolling deploy a worker of
one release runs jobs that a web process of another enqueued, so a job's name must
stay importable whatever module its code moves to. Each name is enqueued as written
here (RQ stores the string), and `tests/test_queue.py` checks that each one imports.
"""

#: The RQ function of every job: it pushes an app context and calls the job by its name.
RUN_JOB = "flask_integrations.queue.run_job"
#: RQ's failure callback of jobs enqueued with an `on_failure` job.
RUN_FAILURE_CALLBACK = "flask_integrations.queue.run_failure_callback"

SYNC_INTEGRATION = "flask_integrations.sync.jobs.sync_integration"
PROCESS_SYNC_ITEMS = "flask_integrations.sync.jobs.process_sync_items"
SYNC_ITEMS_ABANDONED = "flask_integrations.sync.jobs.items_abandoned"
SYNC_ENUMERATION_ABANDONED = "flask_integrations.sync.jobs.enumeration_abandoned"
SYNC_REPORT_DELETIONS = "flask_integrations.sync.jobs.report_deletions"
PROCESS_WEBHOOK = "flask_integrations.webhooks.jobs.process_webhook"
CRON_SYNC_DUE = "flask_integrations.cron.sync_due"
