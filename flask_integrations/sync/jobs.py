"""The sync jobs RQ runs, under the names they have always been enqueued with.

`sync_integration` enumerates a run (runs.py), `process_sync_items` processes a chunk
of its items, and `items_abandoned` and `enumeration_abandoned` are RQ's failure callbacks
for a chunk or an enumeration whose worker died (items.py, runs.py); `report_deletions`
reports what a complete full run no longer listed (deletions.py).
"""

from .deletions import report_deletions
from .items import items_abandoned, process_sync_items
from .runs import enumeration_abandoned, sync_integration

__all__ = [
    "enumeration_abandoned",
    "items_abandoned",
    "process_sync_items",
    "report_deletions",
    "sync_integration",
]
