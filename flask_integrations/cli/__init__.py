"""`flask integrations ...` commands: one module per area, all on one click group."""

from . import keys, operate, overrides, retention, setup, syncs, webhooks, worker  # noqa: F401  (their commands)
from .group import integrations_cli

__all__ = ["integrations_cli"]
