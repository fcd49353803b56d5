"""Inbound webhooks: storing a delivery once (intake), the job that processes it, recovery and replay.

The routes that receive them are in `flask_integrations.web.webhooks`.
"""

from .intake import dedup_key, filter_headers

__all__ = ["dedup_key", "filter_headers"]
