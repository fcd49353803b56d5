"""What the dashboard's test modules share: its path, reading a page, its rows and cells, counting SQL."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from tests.helpers.app import db, recorded_statements

DASH = "/integrations/dashboard"


def html(response: Any) -> str:
    """A page's text; the test fails (showing the page) unless it answered 200."""
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def row_of(page: str, attribute: str, row_id: int) -> str:
    match = re.search(rf'<tr {attribute}="{row_id}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no row {attribute}={row_id}"
    return match.group(1)


def cell(row: str, css_class: str) -> str:
    match = re.search(rf'<td class="[^"]*\b{css_class}\b[^"]*">(.*?)</td>', row, re.S)
    assert match, f"no cell .{css_class}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def create_tickets(ext: Any, api_key: str) -> Any:
    """The "Acme tickets" integration of the `Tickets` test provider, holding `api_key`."""
    return ext.create(
        "tickets", "Acme tickets", {"api_key": api_key, "subdomain": "acme"}, metadata={"team": "support"}
    )


def statements_of(app: Flask, client: Any, url: str) -> int:
    """The statements a page runs, from an empty identity map (the test's session is the page's)."""
    db.session.commit()
    db.session.expunge_all()
    with recorded_statements() as statements:
        html(client.get(url))
    return len(statements)
