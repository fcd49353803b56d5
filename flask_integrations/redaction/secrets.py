"""An integration's credential values, and removing them from any text.

Every credential string of an integration (nested in lists and dicts too) is replaced by
``[REDACTED]`` wherever it appears in text that is stored, shown or logged: in URLs,
query strings, bodies, error messages; also in its URL-encoded and JSON-escaped
spellings.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from .text import MAX_DEPTH, REDACTED, clean_text, cut_to_bytes, plain, safe_str, strings

#: Credential strings shorter than this are not scrubbed from text (too likely to be ordinary words).
MIN_SECRET_LENGTH = 4

#: Passes of secret replacement before giving up and storing only the marker.
_MAX_SCRUB_PASSES = 8


def scrub(text: str | None, secrets: Iterable[str]) -> str | None:
    """`text` with every secret (and its URL-encoded / JSON-escaped forms) replaced by ``[REDACTED]``."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = safe_str(text)
    text = clean_text(text)
    pattern = _secret_pattern(secret_list(secrets))
    if pattern is None:
        return text
    for _ in range(_MAX_SCRUB_PASSES):
        text, count = pattern.subn(REDACTED, text)
        if count == 0 or pattern.search(text) is None:
            return text
    return REDACTED  # replacements keep forming new matches: store nothing rather than a leak


#: Where `integration_secrets` keeps an integration's secrets with the credentials they came from.
_CACHE_ATTRIBUTE = "_fi_secrets"


def integration_secrets(integration: Any) -> tuple[str, ...]:
    """The credential values of `integration` worth scrubbing; none when they cannot be read
    (credentials nobody can decrypt cannot have leaked into the text).

    Kept on the integration object until its stored credentials change, since
    every logged request needs them.
    """
    if integration is None:
        return ()
    pending = getattr(integration, "_pending_credentials", None) is not None
    token = None if pending else getattr(integration, "_credentials_token", None)
    known = getattr(integration, _CACHE_ATTRIBUTE, None) if token is not None else None
    if known is not None and known[0] == token:
        return known[1]
    try:
        credentials = integration.credentials_dict()
    except Exception:  # noqa: BLE001
        return ()
    secrets = tuple(credential_secrets(credentials) + _derived_secrets(integration, credentials))
    if token is not None:
        with contextlib.suppress(AttributeError):  # an object that takes no new attributes: no cache
            setattr(integration, _CACHE_ATTRIBUTE, (token, secrets))
    return secrets


def _derived_secrets(integration: Any, credentials: Mapping[str, Any]) -> list[str]:
    """What the provider's auth scheme derives from the credentials (a Basic header's base64)."""
    try:
        scheme = getattr(integration.provider_instance, "auth", None)
        return [s for s in scheme.secrets(credentials) if isinstance(s, str)] if scheme is not None else []
    except Exception:  # noqa: BLE001 - an unregistered provider: its credentials are scrubbed all the same
        return []


def credential_secrets(credentials: Mapping[str, Any] | None) -> list[str]:
    """The credential strings worth scrubbing from stored text, longest first.

    Every string value (nested in lists and dicts too) of at least
    `MIN_SECRET_LENGTH` characters. Numbers and booleans are not secrets
    (an app id or a port scrubbed everywhere would only garble the log).
    """
    found: set[str] = set()

    def collect(value: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        if isinstance(value, str):
            if len(value) >= MIN_SECRET_LENGTH:
                found.add(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                collect(item, depth + 1)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                collect(item, depth + 1)

    with contextlib.suppress(Exception):  # odd credentials yield fewer secrets, never an error
        values = credentials if isinstance(credentials, Mapping) else plain(credentials)
        if isinstance(values, Mapping):  # a dict, or a credential dataclass instance
            collect(values, 0)
    return list(secret_list(found))


def secret_list(secrets: Iterable[str]) -> tuple[str, ...]:
    """Usable secrets, longest first: long enough, and not a piece of our own marker text."""
    if isinstance(secrets, tuple):
        with contextlib.suppress(TypeError):  # an unhashable item: sort it out below
            return _secret_tuple(secrets)
    return _usable_secrets(secrets)


@functools.lru_cache(maxsize=128)
def _secret_tuple(secrets: tuple[str, ...]) -> tuple[str, ...]:
    return _usable_secrets(secrets)


def _usable_secrets(secrets: Iterable[str]) -> tuple[str, ...]:
    usable = {s for s in strings(secrets) if len(s) >= MIN_SECRET_LENGTH and s not in REDACTED}
    return tuple(sorted(usable, key=lambda s: (-len(s), s)))


def _spellings(secret: str) -> set[str]:
    """The ways a secret can appear in stored text: as is, URL-encoded, JSON-escaped."""
    forms: set[str] = set()
    for variant in {secret, clean_text(secret)}:
        for spell in (
            lambda v: v,
            lambda v: quote(v, safe=""),
            quote,
            quote_plus,
            lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
            lambda v: json.dumps(v)[1:-1],
        ):
            with contextlib.suppress(Exception):  # e.g. quote() of a lone surrogate
                forms.add(clean_text(spell(variant)))
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH and f not in REDACTED}


@functools.lru_cache(maxsize=128)
def _secret_pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for secret in secrets:
        forms |= _spellings(secret)
    if not forms:
        return None
    ordered = sorted(forms, key=lambda s: (-len(s), s))
    return re.compile("|".join(re.escape(f) for f in ordered))


def scrub_for(integration: Any, text: str | None) -> str | None:
    """`text` with `integration`'s credential values replaced by ``[REDACTED]``.

    The one call wherever text about an integration is stored, shown or logged: endpoint
    labels, errors, log summaries, stored headers, dashboard cells, httpx's log lines.
    """
    return scrub(text, integration_secrets(integration))


def error_text(error: BaseException | str, integration: Any = None, max_bytes: int | None = None) -> str:
    """`Type: message` of an exception (a string as it is), `integration`'s credential values
    scrubbed, cut to `max_bytes`: the one way an error becomes text for a row, a page or a log line.
    """
    secrets = integration_secrets(integration)
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    text = scrub(text, secrets) or (type(error).__name__ if isinstance(error, BaseException) else "")
    return text if max_bytes is None else truncate(text, max_bytes, secrets)


def failure_kind(exc: BaseException) -> str:
    """What failed, without the exception's message (which may quote a token or a code):
    its type, and the HTTP status an SDK error carries (``HTTPStatusError, HTTP 401``)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return type(exc).__name__ + (f", HTTP {status}" if isinstance(status, int) else "")


def truncate(text: str, max_bytes: int, secrets: Iterable[str] = ()) -> str:
    """`text` cut to `max_bytes` UTF-8 bytes with a marker if cut, scrubbed again (a cut can make a
    secret's spelling end where the marker starts)."""
    cut = cut_to_bytes(text, max_bytes)
    return cut if cut is text else scrub(cut, secrets) or ""
