"""`Provider`: the base class of every provider."""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from ..errors import IntegrationsError
from . import fields
from .capabilities import OAUTH_TOKEN_FIELDS, OAuth2
from .limits import Limit

if TYPE_CHECKING:  # pragma: no cover
    import httpx


class Provider:
    """Base class of every provider: one external service the app connects to.

    Providers are stateless: the extension keeps one instance per registered class
    and passes the integration (the stored connection, with its credentials) to
    every hook. Set `credential_class` / `metadata_class` to dataclasses to have
    credentials and metadata validated and typed; None accepts any dict. Opt into
    capabilities with the mixins (`ScheduledSync`, `HandlesWebhooks`, ...).
    """

    #: shown to people (the dashboard, `flask integrations install`); default: the class name
    name: ClassVar[str | None] = None
    #: a dataclass the credentials are validated against and read as; None = any dict
    credential_class: ClassVar[type | None] = None
    #: a dataclass the metadata is validated against; None = any dict
    metadata_class: ClassVar[type | None] = None
    #: the URL that path targets (``.get("/items")``) are joined to; ``{field}`` placeholders are
    #: filled per integration from its credentials, then its metadata (``https://{subdomain}.x.com``)
    base_url: ClassVar[str | None] = None
    #: attempts per minute across all processes (an int), one `Limit` or a list of them
    #: (``[Limit(10, per="second"), Limit(5000, per="hour")]``), or None for no limit
    rate_limit: ClassVar[int | Limit | list[Limit] | None] = None
    #: how URL calls authenticate: a scheme of `flask_integrations.auth` (`Bearer("api_key")`, ...)
    auth: ClassVar[Any] = None
    #: False: this provider's request rows keep neither request nor response body (the rest of the
    #: row as usual), whatever `INTEGRATIONS_LOG_BODIES` says; for APIs whose bodies hold personal data
    log_bodies: ClassVar[bool] = True

    #: set by the registry: the key this provider is registered under
    key: str = ""

    def display_name(self) -> str:
        """`name`, else the class name."""
        return self.name or type(self).__name__

    def base_url_for(self, integration: Any) -> str | None:
        """`base_url` with its ``{field}`` placeholders filled from the integration's credentials,
        then its metadata, each value URL-quoted."""
        names = placeholders(self.base_url)
        if not names:
            return self.base_url
        values = {**(integration.metadata or {}), **integration.credentials_dict()}
        missing = [name for name in names if values.get(name) in (None, "")]
        if missing:
            raise IntegrationsError(
                f"Integration {integration.id} has no {missing[0]!r} for the provider's base_url "
                f"{self.base_url!r}: set it in its credentials or metadata."
            )
        return self.base_url.format_map({name: quote(str(values[name]), safe="") for name in names})

    def prepare_request(self, integration: Any, request: httpx.Request) -> None:
        """Add auth headers (or anything else) to an outgoing URL call, in place.

        Called before every attempt of every URL call of `integration` (callable
        targets are not httpx requests and skip it).
        """

    def credential_fields(self) -> dict[str, fields.FieldSpec] | None:
        """The credential fields of `credential_class`, or None when any dict is accepted."""
        return fields.field_specs(self.credential_class)

    def validate_credentials(self, credentials: dict[str, Any]) -> dict[str, Any]:
        """Return the credentials with defaults filled in, or raise `ValidationError`."""
        extra = OAUTH_TOKEN_FIELDS if isinstance(self, OAuth2) else None
        return fields.validate(
            f"credentials for provider {self.key!r}", credentials, self.credential_fields(), extra
        )

    def validate_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Return the metadata with defaults filled in, or raise `ValidationError`."""
        return fields.validate(
            f"metadata for provider {self.key!r}", metadata, fields.field_specs(self.metadata_class)
        )


def placeholders(template: str | None) -> list[str]:
    """The ``{field}`` names of a `base_url` template."""
    if not template:
        return []
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]
