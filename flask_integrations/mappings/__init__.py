"""ID mappings: external ids mapped to the app's own objects (SPEC section 5)."""

from .claims import map_external_id, remap_external_id, upsert_by_external_id
from .lookup import find_external_id, resolve_mapping, resolve_mappings

__all__ = [
    "find_external_id",
    "map_external_id",
    "remap_external_id",
    "resolve_mapping",
    "resolve_mappings",
    "upsert_by_external_id",
]
