"""Values read from what the package does not control: numbers in query strings, upstream headers and
token answers; dotted paths into JSON bodies.

`str.isdigit()` accepts characters such as ``²`` that `int()` refuses, and `int()` and
`float()` accept the digits of other scripts (``١٢``); no form, URL or HTTP peer means
a number that way. These parsers accept non-negative numbers in ASCII digits only
(white space around them is allowed), and answer None for anything else: they never
raise, so a hostile or broken value is refused, not a 500.
"""

from __future__ import annotations

import math
import re
from typing import Any

_INTEGER = re.compile(r"[0-9]{1,30}")
_DECIMAL = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30})?|\.[0-9]{1,30}")


def parse_int(value: Any, *, maximum: int | None = None) -> int | None:
    """A non-negative int from ASCII digits (or an int itself), at most `maximum`; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str | bytes) and _INTEGER.fullmatch(_text(value).strip()):
        number = int(_text(value).strip())
    else:
        return None
    if number < 0 or (maximum is not None and number > maximum):
        return None
    return number


def parse_number(value: Any) -> float | None:
    """A finite, non-negative number from ASCII digits with an optional fraction (or a number); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str | bytes) and _DECIMAL.fullmatch(_text(value).strip()):
        number = float(_text(value).strip())
    else:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


_MISSING = object()


def dotted(data: Any, path: str, default: Any = None) -> Any:
    """The value at a dotted path (``"data.next_cursor"``; a number is a list index) of decoded
    JSON, or `default` when any step is missing."""
    value = data
    for step in path.split("."):
        if isinstance(value, dict):
            value = value.get(step, _MISSING)
        elif isinstance(value, list) and parse_int(step) is not None and parse_int(step) < len(value):
            value = value[parse_int(step)]
        else:
            return default
        if value is _MISSING:
            return default
    return value
