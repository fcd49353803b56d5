"""Plain-text output of the CLI: aligned tables and short human formats."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from ..clock import as_utc
from ..redaction import one_line

EMPTY = "-"
_WHITESPACE = re.compile(r"\s+")


def cell(value: object) -> str:
    """One table cell on one line: None is '-', newlines and tabs become spaces."""
    if value is None:
        return EMPTY
    return _WHITESPACE.sub(" ", str(value)).strip()


def format_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    right: Collection[int] = (),
    footer: Sequence[Sequence[object]] = (),
) -> str:
    """Columns padded to their widest cell; `right` holds the indexes of right-aligned columns.

    `footer` rows (totals) follow a rule under the body.
    """
    body = [[cell(v) for v in row] for row in rows]
    foot = [[cell(v) for v in row] for row in footer]
    widths = [len(h) for h in headers]
    for row in body + foot:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))

    def line(values: Sequence[str]) -> str:
        padded = (
            text.rjust(widths[i]) if i in right else text.ljust(widths[i]) for i, text in enumerate(values)
        )
        return "  ".join(padded).rstrip()

    lines = [line(headers), *(line(row) for row in body)]
    if foot:
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(line(row) for row in foot)
    return "\n".join(lines)


def when(moment: datetime | None, now: datetime, iso: bool = False) -> str:
    """'5m ago' / 'in 2h' (or ISO 8601 in UTC when `iso`); '-' for never."""
    if moment is None:
        return EMPTY
    moment = as_utc(moment)
    if iso:
        return moment.isoformat(timespec="seconds")
    seconds = (moment - now).total_seconds()
    amount = abs(seconds)
    if amount < 60:
        text = f"{int(amount)}s"
    elif amount < 3600:
        text = f"{int(amount // 60)}m"
    elif amount < 86400:
        text = f"{int(amount // 3600)}h"
    else:
        text = f"{int(amount // 86400)}d"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def percent(part: float, whole: float) -> str:
    """'12.5%', or '-' when there is nothing to divide by."""
    if not whole:
        return EMPTY
    return f"{100 * part / whole:.1f}%"


def milliseconds(value: float | None) -> str:
    """'55 ms', '95.5 ms'; '-' when unknown."""
    if value is None:
        return EMPTY
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} ms"


def shorten(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis."""
    return one_line(cell(text), width)
