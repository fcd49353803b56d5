"""Running a provider's health check: one place for the CLI (`install`, `test`) and the dashboard."""

from __future__ import annotations

import time
from typing import Any

from ..db.models import Integration
from ..db.statuses import Direction, FailureClass, LogStatus
from ..redaction import error_text, one_line
from ..state import AppState, current_state

__all__ = ["OPERATION", "check_and_record", "run_health_check"]

#: The operation log each recorded check writes.
OPERATION = "health_check"

#: Characters of a failed check's error shown on one line.
DETAIL_WIDTH = 200


def run_health_check(provider: Any, integration: Integration) -> tuple[bool, str]:
    """(passed, detail) of the provider's health check; an exception is a failure."""
    try:
        result = provider.health_check(integration)
    except Exception as exc:
        current_state().db.session.rollback()  # whatever the check left half done
        return False, one_line(error_text(exc, integration), DETAIL_WIDTH)
    if result:
        return True, "health check passed"
    return False, f"health check returned {result!r}"


def check_and_record(state: AppState, provider: Any, integration: Integration) -> tuple[bool, str]:
    """Run the check and record its outcome: a pass is a success, a failure an `upstream` failure,
    and either way a `health_check` operation log with the outcome and (failed) its error."""
    started = time.perf_counter()
    passed, detail = run_health_check(provider, integration)
    duration_ms = (time.perf_counter() - started) * 1000
    if passed:
        integration.record_success()
    else:
        integration.record_failure(FailureClass.UPSTREAM)
    state.db.session.commit()  # deferred health writes run when the transaction ends
    integration.log_operation(
        OPERATION,
        Direction.OUTBOUND,
        LogStatus.SUCCESS if passed else LogStatus.FAILED,
        summary=detail,
        error=None if passed else detail,
        duration_ms=duration_ms,
    )
    return passed, detail
