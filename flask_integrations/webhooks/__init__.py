"""Inbound webhooks: the blueprint that receives them and the job that processes them."""

from .service import RECEIVED_STATUSES, dedup_key, filter_headers

__all__ = ["RECEIVED_STATUSES", "dedup_key", "filter_headers"]
