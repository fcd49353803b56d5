"""An integration's credentials: validated against its provider, encrypted, decrypted once, read-only.

The stored column never holds a plaintext secret. Credentials given to
`Integration(credentials=...)` wait on the object until the row is flushed, when they
are validated and encrypted (`seal`); `create` and `update` encrypt at once.
"""

from __future__ import annotations

from typing import Any

from ..db.models import Integration
from ..providers import fields
from ..state import current_state

#: Where a decrypted copy is kept on the object, with the stored value it came from.
_DECRYPTED = "_decrypted"


def read(integration: Integration) -> dict[str, Any]:
    """The decrypted credentials as a plain dict (a copy); `CredentialsDecryptionError` if no key can."""
    pending = getattr(integration, "_pending_credentials", None)
    if pending is not None:
        return dict(pending)
    token = integration._credentials_token
    cached = getattr(integration, _DECRYPTED, None)
    if cached is None or cached[0] != token:
        cached = (token, current_state().keyring.decrypt(token, integration.id))
        setattr(integration, _DECRYPTED, cached)
    return dict(cached[1])


def view(integration: Integration) -> Any:
    """A read-only instance of the provider's `credential_class` (or a read-only dict), repr masked."""
    values = read(integration)
    cls = current_state().provider(integration.provider).credential_class
    if cls is None:
        return fields.SecretDict(values)
    return fields.read_only_instance(cls, values, secret=True)


def seal(integration: Integration) -> None:
    """Validate and encrypt credentials waiting on the object (before its row is written)."""
    pending = getattr(integration, "_pending_credentials", None)
    if pending is None:
        return
    state = current_state()
    validated = state.provider(integration.provider).validate_credentials(pending)
    integration._credentials_token = state.keyring.encrypt(validated)
    integration._pending_credentials = None


def validate_metadata(integration: Integration, always: bool) -> None:
    """Validate the metadata against the provider's `metadata_class` (filling defaults in).

    `always`: also when there is none, for a provider that declares a class (a new row).
    """
    provider = current_state().provider(integration.provider)
    if integration.metadata is None and not (always and provider.metadata_class is not None):
        return
    integration.metadata = provider.validate_metadata(
        integration.metadata if integration.metadata is not None else {}
    )
