"""How a provider authenticates its URL calls, declared: ``auth = auth.Bearer("api_key")``.

A scheme reads credential fields of the integration being called and puts them on the
request: after an `OAuth2` provider's bearer token and before `prepare_request` (which
stays the escape hatch for anything else). A header the caller already set is left as
it is. Whatever a scheme adds is scrubbed from rows, pages and logs like a credential:
the values it reads are credentials, and a value it derives from them (the base64 of
``user:password``) is added to the integration's secrets (`secrets`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import httpx

from .errors import IntegrationsError

__all__ = ["AuthScheme", "Basic", "Bearer", "Header", "Query"]


class AuthScheme:
    """A way to put credentials on a request; `fields` are the credential fields it reads."""

    fields: tuple[str, ...] = ()

    def apply(
        self, request: httpx.Request, credentials: Mapping[str, Any], integration_id: Any = None
    ) -> None:
        """Put the credentials on `request` (in place)."""
        raise NotImplementedError

    def secrets(self, credentials: Mapping[str, Any]) -> list[str]:
        """Values this scheme derives from the credentials, to scrub like credentials."""
        return []

    def _value(self, credentials: Mapping[str, Any], field: str, integration_id: Any) -> str:
        value = credentials.get(field)
        if value is None or value == "":
            raise IntegrationsError(
                f"Integration {integration_id} has no credential {field!r}, which the provider's "
                f"{type(self).__name__} auth puts on every call."
            )
        return str(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.fields))})"


class Bearer(AuthScheme):
    """``Authorization: Bearer <credentials[field]>``."""

    def __init__(self, field: str):
        self.fields = (field,)

    def apply(
        self, request: httpx.Request, credentials: Mapping[str, Any], integration_id: Any = None
    ) -> None:
        value = self._value(credentials, self.fields[0], integration_id)
        request.headers.setdefault("Authorization", f"Bearer {value}")


class Header(AuthScheme):
    """``<name>: template.format(credentials[field])``, e.g. ``Header("X-Api-Key", "api_key")``
    or ``Header("Authorization", "token", template="Token {}")``."""

    def __init__(self, name: str, field: str, template: str = "{}"):
        self.name, self.template = name, template
        self.fields = (field,)

    def apply(
        self, request: httpx.Request, credentials: Mapping[str, Any], integration_id: Any = None
    ) -> None:
        value = self._value(credentials, self.fields[0], integration_id)
        request.headers.setdefault(self.name, self.template.format(value))

    def secrets(self, credentials: Mapping[str, Any]) -> list[str]:
        value = credentials.get(self.fields[0])
        return [self.template.format(value)] if value else []


class Basic(AuthScheme):
    """``Authorization: Basic base64(<username>:<password>)``."""

    def __init__(self, username_field: str, password_field: str):
        self.fields = (username_field, password_field)

    def _token(self, credentials: Mapping[str, Any], integration_id: Any = None) -> str:
        user, password = (self._value(credentials, field, integration_id) for field in self.fields)
        return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

    def apply(
        self, request: httpx.Request, credentials: Mapping[str, Any], integration_id: Any = None
    ) -> None:
        request.headers.setdefault("Authorization", f"Basic {self._token(credentials, integration_id)}")

    def secrets(self, credentials: Mapping[str, Any]) -> list[str]:
        try:
            return [self._token(credentials)]
        except IntegrationsError:
            return []


class Query(AuthScheme):
    """``?<param>=<credentials[field]>`` on the URL (for APIs that take their key in the query)."""

    def __init__(self, param: str, field: str):
        self.param = param
        self.fields = (field,)

    def apply(
        self, request: httpx.Request, credentials: Mapping[str, Any], integration_id: Any = None
    ) -> None:
        if self.param not in request.url.params:
            value = self._value(credentials, self.fields[0], integration_id)
            request.url = request.url.copy_merge_params({self.param: value})
