"""Per-app state: settings, keys and providers resolved at `init_app`, the shared-state store, and
what derives from them per process (see app_state.py)."""

from .app_state import AppState, current_state
from .store import Store, fail_open

__all__ = ["AppState", "Store", "current_state", "fail_open"]
