"""Testing support: fakes for outbound calls and a pytest plugin."""

from .fake import Fake, FakeResponse, RecordedCall, ResponseSequence, UnexpectedRequest

__all__ = ["Fake", "FakeResponse", "RecordedCall", "ResponseSequence", "UnexpectedRequest"]
