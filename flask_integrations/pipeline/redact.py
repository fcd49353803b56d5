"""What a stored request/response body may contain: redacted, scrubbed, size-capped text.

Three passes, in order:

1. Structure: in dicts and lists (and JSON or urlencoded-form text, parsed
   first) a value whose key matches a redact key, or whose position matches a
   dot path (``card.number``, ``items.*.ssn``), becomes ``[REDACTED]``.
   Keys match whole and case-insensitively, with ``-`` read as ``_``:
   ``token`` matches ``Token`` and ``TOKEN`` but not ``access_token`` (list
   that one too, as the defaults do); ``api_key`` matches ``API-Key``. Paths
   match case-insensitively; ``*`` stands for any list item (or any key).
2. Secrets: every credential value of the integration is replaced wherever it
   still appears in the text (inside URLs, query strings, error messages),
   also in its URL-encoded and JSON-escaped spellings.
3. Size: the UTF-8 text is cut to `max_bytes` on a character boundary and a
   marker says how much was cut.

Nothing here raises on odd input: unknown objects become their `str()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import weakref
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

__all__ = ["REDACTED", "credential_secrets", "prepare_body", "redact", "redact_query", "scrub", "truncate"]

REDACTED = "[REDACTED]"

#: Credential strings shorter than this are not scrubbed from text (too likely to be ordinary words).
MIN_SECRET_LENGTH = 4

#: Nesting deeper than this is stored as a marker instead of being walked.
MAX_DEPTH = 64

#: Passes of secret replacement before giving up and storing only the marker.
_MAX_SCRUB_PASSES = 8

_FORM_FIELD = re.compile(r"[^\s=&]+=[^\s&]*")


def prepare_body(
    data: Any,
    *,
    redact_keys: Iterable[str],
    paths: Iterable[str] = (),
    secrets: Iterable[str] = (),
    max_bytes: int,
) -> str | None:
    """The text to store for a request or response body; None stays None."""
    try:
        if data is None:
            return None
        secret_list = _secret_list(secrets)
        text = _redacted_text(data, _normalise_keys(redact_keys), _compile_paths(paths))
        text = scrub(text, secret_list) or ""
        return truncate(text, max_bytes, secret_list)
    except Exception:  # a body we cannot read must never break the call being logged
        return f"[unreadable body: {type(data).__name__}]"


def redact(data: Any, *, redact_keys: Iterable[str], paths: Iterable[str] = ()) -> Any:
    """A JSON-ready copy of `data` with redact keys and dot paths replaced by ``[REDACTED]``."""
    return _walk(data, _normalise_keys(redact_keys), _compile_paths(paths), 0, set())


def redact_query(query: str, *, redact_keys: Iterable[str]) -> str:
    """A urlencoded string (a URL's query, a form body) with the values of redact keys replaced."""
    return _redact_form(query, _normalise_keys(redact_keys), ())


def scrub(text: str | None, secrets: Iterable[str]) -> str | None:
    """`text` with every secret (and its URL-encoded / JSON-escaped forms) replaced by ``[REDACTED]``."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = _safe_str(text)
    text = _clean_text(text)
    pattern = _secret_pattern(_secret_list(secrets))
    if pattern is None:
        return text
    for _ in range(_MAX_SCRUB_PASSES):
        text, count = pattern.subn(REDACTED, text)
        if count == 0 or pattern.search(text) is None:
            return text
    return REDACTED  # replacements keep forming new matches: store nothing rather than a leak


#: integration object -> (the stored credentials it was computed from, their secrets)
_integration_secrets: weakref.WeakKeyDictionary[Any, tuple[Any, tuple[str, ...]]]
_integration_secrets = weakref.WeakKeyDictionary()


def integration_secrets(integration: Any) -> tuple[str, ...]:
    """The credential values of `integration` worth scrubbing; none when they cannot be read
    (credentials nobody can decrypt cannot have leaked into the text).

    Kept per integration object until its stored credentials change, since
    every logged request needs them.
    """
    if integration is None:
        return ()
    pending = getattr(integration, "_pending_credentials", None) is not None
    token = None if pending else getattr(integration, "_credentials_token", None)
    known = _integration_secrets.get(integration) if token is not None else None
    if known is not None and known[0] == token:
        return known[1]
    try:
        secrets = tuple(credential_secrets(integration.credentials_dict()))
    except Exception:  # noqa: BLE001
        return ()
    if token is not None:
        with contextlib.suppress(TypeError):  # not weakly referenceable: no cache
            _integration_secrets[integration] = (token, secrets)
    return secrets


def exception_text(exc: BaseException, secrets: Iterable[str], max_bytes: int) -> str:
    """`Type: message` of an exception, secrets scrubbed, cut to `max_bytes`."""
    secrets = list(secrets)
    text = scrub(f"{type(exc).__name__}: {exc}", secrets) or type(exc).__name__
    return truncate(text, max_bytes, secrets)


def truncate(text: str, max_bytes: int, secrets: Iterable[str] = ()) -> str:
    """`text` cut to `max_bytes` UTF-8 bytes, never inside a character, with a marker if cut."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= max_bytes:
        return text
    head = encoded[: max(0, max_bytes)].decode("utf-8", "ignore")
    cut = len(encoded) - len(head.encode("utf-8"))
    result = f"{head}…[truncated {cut} bytes]"
    return scrub(result, secrets) or ""


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
        values = credentials if isinstance(credentials, Mapping) else _plain(credentials)
        if isinstance(values, Mapping):  # a dict, or a credential dataclass instance
            collect(values, 0)
    return list(_secret_list(found))


# -- structure ---------------------------------------------------------------


def _normalise_key(key: Any) -> str:
    return _safe_str(key).strip().lower().replace("-", "_")


def _strings(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """The non-empty strings of an iterable; a lone string counts as one, not as its characters."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = (values,)
    return tuple(v for v in values if isinstance(v, str) and v.strip())


def _normalise_keys(keys: Iterable[str]) -> frozenset[str]:
    try:  # the same few settings on every call: remember their normalised form
        return _normalised_key_set(tuple(keys) if not isinstance(keys, str) else (keys,))
    except TypeError:  # an unhashable item
        return frozenset(_normalise_key(k) for k in _strings(keys))


@functools.lru_cache(maxsize=128)
def _normalised_key_set(keys: tuple[Any, ...]) -> frozenset[str]:
    return frozenset(_normalise_key(k) for k in _strings(keys))


def _compile_paths(paths: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    compiled = []
    for path in _strings(paths):
        compiled.append(tuple(_normalise_key(part) for part in path.strip().split(".")))
    return tuple(compiled)


def _advance(patterns: tuple[tuple[str, ...], ...], key: str) -> tuple[tuple[str, ...], ...]:
    """The remainders of the patterns whose first segment matches `key`."""
    return tuple(p[1:] for p in patterns if p and (p[0] == "*" or p[0] == key))


def _walk(
    value: Any,
    keys: frozenset[str],
    patterns: tuple[tuple[str, ...], ...],
    depth: int,
    active: set[int],
) -> Any:
    """A JSON-ready copy of `value` with redact keys and paths replaced."""
    if isinstance(value, str):
        return _nested_text(value, keys, depth)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return _decode(value)
    if depth >= MAX_DEPTH:
        return "[too deep]"
    if id(value) in active:
        return "[circular]"
    plain = _plain(value)
    if plain is not value and not isinstance(plain, dict | list):
        return plain
    active.add(id(value))
    try:
        if isinstance(plain, dict):
            out: dict[str, Any] = {}
            for raw_key, item in plain.items():
                key = _safe_str(raw_key)
                norm = _normalise_key(key)
                rest = _advance(patterns, norm)
                if norm in keys or () in rest:
                    out[key] = REDACTED
                else:
                    out[key] = _walk(item, keys, rest, depth + 1, active)
            return out
        items = []
        for index, item in enumerate(plain):
            rest = _advance(patterns, str(index))
            if () in rest:
                items.append(REDACTED)
            else:
                items.append(_walk(item, keys, rest, depth + 1, active))
        return items
    finally:
        active.discard(id(value))


def _nested_text(text: str, keys: frozenset[str], depth: int) -> str:
    """A string value holding JSON or form text (an upstream echoing a request, say) has its
    redact keys replaced too; it is kept as it was unless something was redacted."""
    if depth >= MAX_DEPTH or len(text) < 3 or ("=" not in text and text.lstrip()[:1] not in ("{", "[")):
        return text
    parsed = _parse_json(text)
    if isinstance(parsed, dict | list):
        walked = _walk(parsed, keys, (), depth + 1, set())
        return text if walked == parsed else json.dumps(walked, ensure_ascii=False, default=_safe_str)
    return _redact_form(text, keys, ()) if _looks_like_form(text) else text


def _plain(value: Any) -> Any:
    """Mappings as dicts, collections as lists, models as their data, anything else as its str()."""
    if isinstance(value, dict | list):
        return value
    if isinstance(value, Mapping):
        return dict(value.items())
    if isinstance(value, tuple | set | frozenset):
        items = list(value)
        if isinstance(value, set | frozenset):
            items.sort(key=_safe_str)
        return items
    try:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        dump = getattr(value, "model_dump", None)  # pydantic v2
        if callable(dump) and not isinstance(value, type):
            dumped = dump()
            if isinstance(dumped, dict):
                return dumped
    except Exception:
        pass
    return _safe_str(value)


# -- text --------------------------------------------------------------------


def _redacted_text(data: Any, keys: frozenset[str], patterns: tuple[tuple[str, ...], ...]) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        data = _decode(data)
    if isinstance(data, str):
        parsed = _parse_json(data)
        if parsed is not None:
            data = parsed
        else:
            return _redact_form(data, keys, patterns) if _looks_like_form(data) else _clean_text(data)
    walked = _walk(data, keys, patterns, 0, set())
    if isinstance(walked, str):
        return walked
    return json.dumps(walked, ensure_ascii=False, default=_safe_str)


def _parse_json(text: str) -> Any:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):
        return None


def _looks_like_form(text: str) -> bool:
    """`a=1&b=2`: every `&`-separated field is `key=value`, no whitespace anywhere."""
    fields = text.split("&")
    return "=" in text and all(_FORM_FIELD.fullmatch(field) for field in fields)


def _redact_form(text: str, keys: frozenset[str], patterns: tuple[tuple[str, ...], ...]) -> str:
    """Redact urlencoded fields by key; `card[number]` is the path ``card.number``."""
    out = []
    for field in text.split("&"):
        raw_key, _, _value = field.partition("=")
        segments = [_normalise_key(s) for s in re.split(r"[\[\]]+", unquote_plus(raw_key)) if s]
        hit = any(s in keys for s in segments)
        if not hit and patterns:
            rest = patterns
            for segment in segments:
                rest = _advance(rest, segment)
            hit = () in rest
        out.append(f"{raw_key}={REDACTED}" if hit else field)
    return "&".join(out)


def _decode(value: bytes | bytearray | memoryview) -> str:
    return bytes(value).decode("utf-8", "replace")


def _clean_text(text: str) -> str:
    """Text any database stores: no lone surrogates, no NUL characters (PostgreSQL rejects them)."""
    if text.isascii():
        return text.replace("\x00", "\ufffd") if "\x00" in text else text
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd")


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


# -- secrets -----------------------------------------------------------------


def _secret_list(secrets: Iterable[str]) -> tuple[str, ...]:
    """Usable secrets, longest first: long enough, and not a piece of our own marker text."""
    if isinstance(secrets, tuple):
        with contextlib.suppress(TypeError):  # an unhashable item: sort it out below
            return _secret_tuple(secrets)
    return _usable_secrets(secrets)


@functools.lru_cache(maxsize=128)
def _secret_tuple(secrets: tuple[str, ...]) -> tuple[str, ...]:
    return _usable_secrets(secrets)


def _usable_secrets(secrets: Iterable[str]) -> tuple[str, ...]:
    usable = {s for s in _strings(secrets) if len(s) >= MIN_SECRET_LENGTH and s not in REDACTED}
    return tuple(sorted(usable, key=lambda s: (-len(s), s)))


def _spellings(secret: str) -> set[str]:
    """The ways a secret can appear in stored text: as is, URL-encoded, JSON-escaped."""
    forms: set[str] = set()
    for variant in {secret, _clean_text(secret)}:
        for spell in (
            lambda v: v,
            lambda v: quote(v, safe=""),
            quote,
            quote_plus,
            lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
            lambda v: json.dumps(v)[1:-1],
        ):
            with contextlib.suppress(Exception):  # e.g. quote() of a lone surrogate
                forms.add(_clean_text(spell(variant)))
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
