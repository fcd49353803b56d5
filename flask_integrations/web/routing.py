"""Ids in the package's URLs: ASCII digits, within what a database stores.

Werkzeug's ``<int:...>`` matches the digits of every script (``١٢``) and any length; the
package's routes take ``<id:...>`` instead, so an id is read by the one strict parser
(`flask_integrations.parsing`) and anything else is a 404, never an OverflowError.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.routing import BaseConverter, ValidationError

from ..db.tables import MAX_ID
from ..parsing import parse_int


class IdConverter(BaseConverter):
    """``<id:name>``: 1 to `MAX_ID`, in ASCII digits."""

    regex = r"[0-9]{1,19}"
    weight = 50

    def to_python(self, value: str) -> int:
        number = parse_int(value, maximum=MAX_ID)
        if not number:
            raise ValidationError()
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


def add_converters(app: Flask) -> None:
    """Let the app's URL map read ``<id:...>`` (before the blueprints are registered)."""
    app.url_map.converters.setdefault("id", IdConverter)
