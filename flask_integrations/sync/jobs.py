"""The sync jobs RQ runs, under the names they have always been enqueued with.

`sync_integration` enumerates a run (runs.py), `process_sync_items` processes a chunk
of its items, and `items_abandoned` is RQ's failure callback for a chunk whose worker
died (items.py).
"""

from .items import items_abandoned, process_sync_items
from .runs import sync_integration

__all__ = ["items_abandoned", "process_sync_items", "sync_integration"]
