"""Which request rows a piece of work produced: the sync timeline of SPEC section 4.

`collect_request_ids()` opens a collector in the current context; the
pipeline calls `note(row_id)` for every request row it writes, and each open
collector receives the id. A job then appends what it collected to its log in
one statement (`append_request_ids`, in writing.py).

Where SQLite defers a request row until the caller's transaction ends (see
`db/transactions.py`), the id is noted when the row is written: commit inside the
``with`` block for those ids to be collected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_collectors: ContextVar[tuple[list[int], ...]] = ContextVar("flask_integrations_request_ids", default=())


@contextmanager
def collect_request_ids() -> Iterator[list[int]]:
    """Collect the ids of the request rows written inside the block, in order; collectors nest."""
    ids: list[int] = []
    token = _collectors.set((*_collectors.get(), ids))
    try:
        yield ids
    finally:
        _collectors.reset(token)


def note(row_id: int | None) -> None:
    """Called by the pipeline for every request row it writes."""
    if row_id is None:
        return
    for ids in _collectors.get():
        ids.append(row_id)
