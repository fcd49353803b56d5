"""Credential encryption with Fernet: the first configured key encrypts, all decrypt."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ..errors import ConfigurationError, CredentialsDecryptionError


class Keyring:
    """Encrypts credential dicts to Fernet tokens and back."""

    def __init__(self, keys: Sequence[str]):
        fernets = []
        for position, key in enumerate(keys):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise ConfigurationError(
                    f"INTEGRATIONS_ENCRYPTION_KEYS[{position}] is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes)."
                ) from None
        self._fernet = MultiFernet(fernets)

    def __repr__(self) -> str:
        return "<Keyring>"

    def encrypt(self, credentials: dict[str, Any]) -> str:
        plaintext = json.dumps(credentials, separators=(",", ":"), sort_keys=True)
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str | None, integration_id: int | None) -> dict[str, Any]:
        if not token:
            raise CredentialsDecryptionError(integration_id)
        try:
            plaintext = self._fernet.decrypt(token.encode())
        except (InvalidToken, ValueError, TypeError):
            raise CredentialsDecryptionError(integration_id) from None
        try:
            value = json.loads(plaintext)
        except ValueError:
            raise CredentialsDecryptionError(integration_id) from None
        if not isinstance(value, dict):
            raise CredentialsDecryptionError(integration_id)
        return value

    def rotate(self, token: str, integration_id: int | None) -> str:
        """Re-encrypt `token` with the first key (raises CredentialsDecryptionError)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except (InvalidToken, ValueError, TypeError):
            raise CredentialsDecryptionError(integration_id) from None
