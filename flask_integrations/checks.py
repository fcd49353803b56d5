"""Running a provider's health check: one place for the CLI (`install`, `test`) and the dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cli_output import shorten
from .pipeline.redact import integration_secrets, scrub
from .state import AppState, current_state

if TYPE_CHECKING:  # pragma: no cover
    from .models import Integration

__all__ = ["check_and_record", "run_health_check", "safe_error"]


def safe_error(exc: BaseException, integration: Integration) -> str:
    """`Type: message` on one line, with the integration's credential values scrubbed out."""
    secrets = integration_secrets(integration)
    text = scrub(f"{type(exc).__name__}: {exc}", secrets) or type(exc).__name__
    return shorten(text, 200)


def run_health_check(provider: Any, integration: Integration) -> tuple[bool, str]:
    """(passed, detail) of the provider's health check; an exception is a failure."""
    try:
        result = provider.health_check(integration)
    except Exception as exc:
        current_state().db.session.rollback()  # whatever the check left half done
        return False, safe_error(exc, integration)
    if result:
        return True, "health check passed"
    return False, f"health check returned {result!r}"


def check_and_record(state: AppState, provider: Any, integration: Integration) -> tuple[bool, str]:
    """Run the check and record its outcome: a pass is a success, a failure an `upstream` failure."""
    passed, detail = run_health_check(provider, integration)
    if passed:
        integration.record_success()
    else:
        integration.record_failure("upstream")
    state.db.session.commit()  # deferred health writes run when the transaction ends
    return passed, detail
