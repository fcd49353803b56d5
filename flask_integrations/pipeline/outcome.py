"""`Outcome`: what one attempt of a call produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import IntegrationHTTPError

if TYPE_CHECKING:  # pragma: no cover
    pass


@dataclass
class Outcome:
    """What one attempt produced."""

    value: Any = None
    response: httpx.Response | None = None
    exc: BaseException | None = None
    status: int | None = None
    failure: str | None = None
    #: the failure class came from the provider's `classify_failure`
    classified_by_provider: bool = False
    duration_ms: int = 0
    request_data: Any = None
    request_id: int | None = None
    #: the OAuth2 access token the package put on the request (never shown)
    bearer: str | None = field(default=None, repr=False)

    def error(self, label: str, method: str) -> BaseException:
        """What the call raises: the attempt's exception, or an `IntegrationHTTPError` naming the
        endpoint by its safe `label`."""
        if self.exc is not None:
            return self.exc
        return IntegrationHTTPError(
            self.status or 0, self.response, f"{method} {label} answered HTTP {self.status}."
        )
