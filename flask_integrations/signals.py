"""Blinker signals. Each is sent with the app as sender and named keyword
arguments, after the data it describes is committed."""

from blinker import Namespace

_signals = Namespace()

#: integration=, old_status=, new_status=
health_changed = _signals.signal("integrations.health-changed")
#: integration=
integration_disabled = _signals.signal("integrations.integration-disabled")
#: integration=, request_id=, endpoint=, method=, status_code=, duration_ms=
request_completed = _signals.signal("integrations.request-completed")
#: integration=, request_id=, endpoint=, method=, error=, failure_class=
request_failed = _signals.signal("integrations.request-failed")
#: log=
operation_started = _signals.signal("integrations.operation-started")
operation_completed = _signals.signal("integrations.operation-completed")
operation_failed = _signals.signal("integrations.operation-failed")
#: webhook=
webhook_received = _signals.signal("integrations.webhook-received")
#: item=, error=
sync_item_failed = _signals.signal("integrations.sync-item-failed")
#: integration=, log=, status=
sync_completed = _signals.signal("integrations.sync-completed")
#: integration= (once per transition across processes: the caller whose failure opened it)
breaker_opened = _signals.signal("integrations.breaker-opened")
#: integration= (the probe whose success closed it, or an operator's reset)
breaker_closed = _signals.signal("integrations.breaker-closed")
#: integration=, since= (the last successful run's time, or None if it never had one); once per episode
sync_stale = _signals.signal("integrations.sync-stale")
#: integration=
oauth_completed = _signals.signal("integrations.oauth-completed")
oauth_revoked = _signals.signal("integrations.oauth-revoked")

__all__ = [
    "health_changed",
    "integration_disabled",
    "request_completed",
    "request_failed",
    "operation_started",
    "operation_completed",
    "operation_failed",
    "webhook_received",
    "sync_item_failed",
    "sync_completed",
    "breaker_opened",
    "breaker_closed",
    "sync_stale",
    "oauth_completed",
    "oauth_revoked",
]
