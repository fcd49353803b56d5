"""Text any database stores and any page shows: the shared helpers of the redaction passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

#: What a redacted value or scrubbed secret is replaced with.
REDACTED = "[REDACTED]"

#: Nesting deeper than this is stored as a marker instead of being walked.
MAX_DEPTH = 64


def clean_text(text: str) -> str:
    """Text any database stores: no lone surrogates, no NUL characters (PostgreSQL rejects them)."""
    if text.isascii():
        return text.replace("\x00", "\ufffd") if "\x00" in text else text
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd")


def safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


def strings(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """The non-empty strings of an iterable; a lone string counts as one, not as its characters."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = (values,)
    return tuple(v for v in values if isinstance(v, str) and v.strip())


def plain(value: Any) -> Any:
    """Mappings as dicts, collections as lists, models as their data, anything else as its str()."""
    if isinstance(value, dict | list):
        return value
    if isinstance(value, Mapping):
        return dict(value.items())
    if isinstance(value, tuple | set | frozenset):
        items = list(value)
        if isinstance(value, set | frozenset):
            items.sort(key=safe_str)
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
    return safe_str(value)


def decode_bytes(value: bytes | bytearray | memoryview) -> str:
    return bytes(value).decode("utf-8", "replace")


def cut_to_bytes(text: str, max_bytes: int) -> str:
    """`text` cut to `max_bytes` UTF-8 bytes, never inside a character, with a marker if cut."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= max_bytes:
        return text
    head = encoded[: max(0, max_bytes)].decode("utf-8", "ignore")
    return f"{head}…[truncated {len(encoded) - len(head.encode('utf-8'))} bytes]"


def one_line(text: str, width: int) -> str:
    """`text` on one line (runs of white space as one space), cut to `width` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
