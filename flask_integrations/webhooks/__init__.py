"""Inbound webhooks: the verifiers providers declare (`Hmac`, `StandardWebhooks`), storing a delivery
once (intake), the job that processes it, recovery and replay.

The routes that receive them are in `flask_integrations.web.webhooks`.
"""

from .intake import dedup_key, filter_headers
from .verifiers import Hmac, StandardWebhooks, Verifier

__all__ = ["Hmac", "StandardWebhooks", "Verifier", "dedup_key", "filter_headers"]
