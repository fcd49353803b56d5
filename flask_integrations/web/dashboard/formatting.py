"""How values read on the dashboard: relative and exact times, bodies, masked credentials."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ...clock import as_utc, utcnow
from ...errors import CredentialsDecryptionError
from ...redaction import scrub_for

MASK = "••••••"
#: What a cell shows when there is no value (as the templates do for missing text).
NONE = "—"
_UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def relative_time(moment: datetime | None, now: datetime | None = None) -> str:
    """'3 min ago', 'in 2 h', 'just now'; 'never' for None."""
    if moment is None:
        return "never"
    seconds = (as_utc(moment) - (now or utcnow())).total_seconds()
    amount = abs(seconds)
    if amount < 5:
        return "just now"
    for size, unit in _UNITS:
        if amount >= size:
            text = f"{int(amount // size)} {unit}"
            break
    return f"in {text}" if seconds > 0 else f"{text} ago"


def exact_time(moment: datetime | None) -> str:
    """'2026-11-27 14:03:09 UTC'; empty for None."""
    if moment is None:
        return ""
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return as_utc(moment).isoformat(timespec="seconds")


def percent(part: float, whole: float) -> str:
    """'12.5%'; a dash when there were no requests."""
    return f"{100 * part / whole:.1f}%" if whole else NONE


def milliseconds(value: float | None) -> str:
    """'358 ms' (whole milliseconds read best in a column); a dash when unknown."""
    return NONE if value is None else f"{round(value)} ms"


def pretty_body(text: str | None) -> str:
    """A stored body as it reads best: indented JSON when it parses, else as stored."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=False)
    except ValueError:
        return text


def pretty_json(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def credential_names(integration: Any) -> list[str] | None:
    """The names of the stored credential fields (never a value); None when they cannot be decrypted."""
    try:
        return sorted(integration.credentials_dict())
    except CredentialsDecryptionError:
        return None


class Scrubber:
    """Removes an integration's credential values from text shown on its pages.

    Stored texts are scrubbed when they are written; this is the second line,
    for rows written by other code.
    """

    def __init__(self, integration: Any):
        self.integration = integration

    def __call__(self, text: Any) -> str:
        if text is None:
            return ""
        return scrub_for(self.integration, str(text)) or ""
