"""`Limit`: one rate-limit window of a provider (or of an operator's override).

`rate_limit = 60` keeps meaning 60 per minute; `rate_limit = [Limit(10, per="second"),
Limit(5000, per="hour")]` declares several windows, every one enforced: an attempt takes a
slot in all of them or in none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

__all__ = ["PERIODS", "Limit", "limits_of", "parse_limit"]

#: Seconds in each period a `Limit` may be declared per.
PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


@dataclass(frozen=True)
class Limit:
    """At most `n` attempts in any sliding `per` ("second", "minute", "hour" or "day")."""

    n: int
    per: str = "minute"

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n <= 0:
            raise ConfigurationError(f"Limit(n={self.n!r}): n must be a positive integer.")
        if self.per not in PERIODS:
            raise ConfigurationError(f"Limit(per={self.per!r}): per must be one of {', '.join(PERIODS)}.")

    @property
    def seconds(self) -> float:
        return PERIODS[self.per]

    def __str__(self) -> str:
        return f"{self.n}/{self.per}"


def limits_of(value: Any, where: str = "rate_limit") -> tuple[Limit, ...]:
    """The windows a `rate_limit` value declares: None, a per-minute int, a `Limit`, or a list of them.

    Raises `ConfigurationError` naming `where` for anything else.
    """
    if value is None:
        return ()
    if isinstance(value, Limit):
        return (value,)
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ConfigurationError(f"{where} must be a positive integer, a Limit or a list of Limits.")
        return (Limit(value, "minute"),)
    if isinstance(value, list | tuple) and value and all(isinstance(v, Limit) for v in value):
        periods = [limit.per for limit in value]
        if len(set(periods)) != len(periods):
            raise ConfigurationError(f"{where} declares two Limits per the same period.")
        return tuple(value)
    raise ConfigurationError(f"{where} must be a positive integer, a Limit or a list of Limits.")


_TEXT = re.compile(r"^\s*([0-9]+)\s*/\s*(second|minute|hour|day)s?\s*$")


def parse_limit(text: str) -> Limit:
    """'100/hour' (or '5/second', '60/minute', '10000/day') as a `Limit`."""
    found = _TEXT.match(text or "")
    if found is None:
        raise ConfigurationError(
            f"rate limit {text!r} must read like 100/hour (per second, minute, hour or day)."
        )
    return Limit(int(found.group(1)), found.group(2))
