"""What the secrets tests share: every text seen, by where it came from, and the search for secrets in it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, quote_plus

import sqlalchemy as sa

from flask_integrations.state import current_state
from tests.helpers.app import db


class Collected:
    """Every text the test saw, by where it came from."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.paths: set[str] = set()

    def add(self, where: str, text: Any) -> None:
        self.texts.append((where, text if isinstance(text, str) else str(text)))
        self.paths.add(where.split(":")[0])

    def bytes(self) -> int:
        return sum(len(text.encode("utf-8", "replace")) for _, text in self.texts)


def spellings(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}


def leaks(collected: Collected, secrets: dict[str, str]) -> list[tuple[str, str]]:
    found = []
    for where, text in collected.texts:
        for name, secret in secrets.items():
            if any(variant in text for variant in spellings(secret)):
                found.append((where, name))
    return found


def dump_tables() -> list[tuple[str, str]]:
    """Every column of every integration table, as text (the credentials column apart)."""
    state = current_state()
    db.session.rollback()
    dumped = []
    for kind, table in state.tables.items():
        for row in db.session.execute(sa.select(table)).mappings():
            for column, value in row.items():
                if value is None:
                    continue
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                where = f"db:{table.name}.{column}"
                if kind == "integrations" and column == "credentials":
                    assert state.keyring.decrypt(value, row["id"])  # a real token of the keyring
                dumped.append((where, text))
    return dumped
