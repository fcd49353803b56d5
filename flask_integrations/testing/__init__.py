"""Testing support: fakes for outbound calls and a pytest plugin."""

from .fake import Fake, FakeResponse, RecordedCall, ResponseSequence, UnexpectedRequest
from .webhooks import run_queued_jobs, send_webhook

__all__ = [
    "Fake",
    "FakeResponse",
    "RecordedCall",
    "ResponseSequence",
    "UnexpectedRequest",
    "run_queued_jobs",
    "send_webhook",
]
