"""Scheduled syncs (SPEC section 7): the provider enumerates, items run as jobs, the run finalises once."""

from .session import SyncSession

__all__ = ["SyncSession"]
