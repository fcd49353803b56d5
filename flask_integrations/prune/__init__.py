"""Retention: rows past `INTEGRATIONS_PRUNING` deleted in short, chunked transactions."""

from .retention import PRUNED_TABLES, Progress, prune, retention_rule

__all__ = ["PRUNED_TABLES", "Progress", "prune", "retention_rule"]
