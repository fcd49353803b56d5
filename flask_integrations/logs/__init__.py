"""Operation logs: writing them, the logging context of a job, and a run's request timeline."""

from ..db.models import LogSelect
from .context import (
    CONTEXT_FIELDS,
    IntegrationContextFilter,
    current_operation,
    install_context_filter,
    operation_context,
)
from .timeline import collect_request_ids
from .writing import STATUS_SIGNALS, append_request_ids, finish, log_operation

__all__ = [
    "CONTEXT_FIELDS",
    "STATUS_SIGNALS",
    "IntegrationContextFilter",
    "LogSelect",
    "append_request_ids",
    "collect_request_ids",
    "current_operation",
    "finish",
    "install_context_filter",
    "log_operation",
    "operation_context",
]
