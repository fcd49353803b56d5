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
   still appears in the text (see secrets.py).
3. Size: the UTF-8 text is cut to `max_bytes` on a character boundary and a
   marker says how much was cut.

Nothing here raises on odd input: unknown objects become their `str()`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

from .secrets import scrub, secret_list, truncate
from .text import MAX_DEPTH, REDACTED, clean_text, decode_bytes, plain, safe_str, strings

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
        secrets = secret_list(secrets)
        text = _redacted_text(data, _normalise_keys(redact_keys), _compile_paths(paths))
        text = scrub(text, secrets) or ""
        return truncate(text, max_bytes, secrets)
    except Exception:  # a body we cannot read must never break the call being logged
        return f"[unreadable body: {type(data).__name__}]"


def redact(data: Any, *, redact_keys: Iterable[str], paths: Iterable[str] = ()) -> Any:
    """A JSON-ready copy of `data` with redact keys and dot paths replaced by ``[REDACTED]``."""
    return _walk(data, _normalise_keys(redact_keys), _compile_paths(paths), 0, set())


def redact_query(query: str, *, redact_keys: Iterable[str]) -> str:
    """A urlencoded string (a URL's query, a form body) with the values of redact keys replaced."""
    return _redact_form(query, _normalise_keys(redact_keys), ())


def _normalise_key(key: Any) -> str:
    return safe_str(key).strip().lower().replace("-", "_")


def _normalise_keys(keys: Iterable[str]) -> frozenset[str]:
    try:  # the same few settings on every call: remember their normalised form
        return _normalised_key_set(tuple(keys) if not isinstance(keys, str) else (keys,))
    except TypeError:  # an unhashable item
        return frozenset(_normalise_key(k) for k in strings(keys))


@functools.lru_cache(maxsize=128)
def _normalised_key_set(keys: tuple[Any, ...]) -> frozenset[str]:
    return frozenset(_normalise_key(k) for k in strings(keys))


def _compile_paths(paths: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    compiled = []
    for path in strings(paths):
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
        return decode_bytes(value)
    if depth >= MAX_DEPTH:
        return "[too deep]"
    if id(value) in active:
        return "[circular]"
    flat = plain(value)
    if flat is not value and not isinstance(flat, dict | list):
        return flat
    active.add(id(value))
    try:
        if isinstance(flat, dict):
            out: dict[str, Any] = {}
            for raw_key, item in flat.items():
                key = safe_str(raw_key)
                norm = _normalise_key(key)
                rest = _advance(patterns, norm)
                if norm in keys or () in rest:
                    out[key] = REDACTED
                else:
                    out[key] = _walk(item, keys, rest, depth + 1, active)
            return out
        items = []
        for index, item in enumerate(flat):
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
        return text if walked == parsed else json.dumps(walked, ensure_ascii=False, default=safe_str)
    return _redact_form(text, keys, ()) if _looks_like_form(text) else text


def _redacted_text(data: Any, keys: frozenset[str], patterns: tuple[tuple[str, ...], ...]) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        data = decode_bytes(data)
    if isinstance(data, str):
        parsed = _parse_json(data)
        if parsed is not None:
            data = parsed
        else:
            return _redact_form(data, keys, patterns) if _looks_like_form(data) else clean_text(data)
    walked = _walk(data, keys, patterns, 0, set())
    if isinstance(walked, str):
        return walked
    return json.dumps(walked, ensure_ascii=False, default=safe_str)


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
