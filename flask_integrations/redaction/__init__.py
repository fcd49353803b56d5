"""What may be stored, shown or logged: redacted bodies, scrubbed secrets, clean text."""

from .bodies import prepare_body, redact, redact_query
from .secrets import (
    credential_secrets,
    error_text,
    failure_kind,
    integration_secrets,
    scrub,
    scrub_for,
    truncate,
)
from .text import REDACTED, clean_text, one_line
from .urls import safe_url_text

__all__ = [
    "REDACTED",
    "clean_text",
    "credential_secrets",
    "error_text",
    "failure_kind",
    "integration_secrets",
    "one_line",
    "prepare_body",
    "redact",
    "redact_query",
    "safe_url_text",
    "scrub",
    "scrub_for",
    "truncate",
]
