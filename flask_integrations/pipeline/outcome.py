"""`Outcome`: what one attempt of a call produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import IntegrationHTTPError

if TYPE_CHECKING:  # pragma: no cover
    from .builder import RequestBuilder


@dataclass
class Outcome:
    """What one attempt produced."""

    value: Any = None
    response: httpx.Response | None = None
    exc: BaseException | None = None
    status: int | None = None
    failure: str | None = None
    duration_ms: int = 0
    request_data: Any = None
    request_id: int | None = None
    #: the OAuth2 access token the package put on the request (never shown)
    bearer: str | None = field(default=None, repr=False)

    def error(self, spec: RequestBuilder, method: str) -> BaseException:
        if self.exc is not None:
            return self.exc
        return IntegrationHTTPError(
            self.status or 0, self.response, f"{method} {spec.endpoint} answered HTTP {self.status}."
        )
