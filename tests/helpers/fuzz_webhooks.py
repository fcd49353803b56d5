"""Coverage-guided fuzz (atheris) of the webhook routes and the OAuth callback.

Run by `tests/reliability/test_bad_input.py` in a subprocess (atheris exits the process when done)::

    FUZZ_DATABASE=/tmp/fuzz.db python -m tests.helpers.fuzz_webhooks -max_total_time=20

Each input becomes one request through the Flask test client: a route (generic
or specific webhook route, unknown provider or id, the OAuth callback), a
method, headers and a body. The target fails (and atheris reports a crash) on
any 5xx answer, and on a stored row for a webhook whose signature was not
verified.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

import atheris

with atheris.instrument_imports(include=["flask_integrations"]):
    import sqlalchemy as sa

    from flask_integrations import IntegrationWebhook
    from tests.helpers.app import db, make_app
    from tests.reliability.test_bad_input import PROVIDERS

ROUTES = (
    "/integrations/fuzzhooks/webhook",
    "/integrations/fuzzhooks/{id}/webhook",
    "/integrations/fuzzhooks/999999/webhook",
    "/integrations/loose/webhook",
    "/integrations/oauth/callback",
    "/integrations/{id}/oauth/authorize",
)
METHODS = ("POST", "POST", "POST", "GET", "PUT")
HEADERS = ("X-Event", "X-Delivery", "X-Integration", "Content-Type", "Content-Encoding", "X-Any")


def build() -> tuple[Any, Any, int]:
    path = os.environ.get("FUZZ_DATABASE") or os.path.join(tempfile.mkdtemp(), "fuzz.db")
    app = make_app(
        f"sqlite:///{path}",
        INTEGRATIONS_PROVIDERS=PROVIDERS,
        INTEGRATIONS_WEBHOOK={"max_payload_bytes": 2048},
    )
    with app.app_context():
        db.metadata.drop_all(db.engine)
        db.metadata.create_all(db.engine)
        integration_id = (
            app.extensions["integrations"].create("fuzzhooks", "Fuzz", {"signing_secret": "w"}).id
        )
        db.session.remove()
    return app, app.test_client(), integration_id


APP, CLIENT, INTEGRATION_ID = build()


def stored_rows() -> int:
    with APP.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(IntegrationWebhook)) or 0


def header_value(fdp: Any, size: int) -> str:
    """A value any HTTP server would pass on: latin-1, no line breaks (werkzeug refuses those)."""
    value = fdp.ConsumeString(size).encode("latin-1", "replace").decode("latin-1")
    return value.replace("\r", "").replace("\n", "").replace("\x00", "")


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    route = ROUTES[fdp.ConsumeIntInRange(0, len(ROUTES) - 1)].replace("{id}", str(INTEGRATION_ID))
    method = METHODS[fdp.ConsumeIntInRange(0, len(METHODS) - 1)]
    signed = fdp.ConsumeBool()
    headers = {"X-Sig": "good" if signed else header_value(fdp, 8) + "-unsigned"}
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        headers[HEADERS[fdp.ConsumeIntInRange(0, len(HEADERS) - 1)]] = header_value(fdp, 30)
    query = {"state": fdp.ConsumeUnicodeNoSurrogates(20), "code": fdp.ConsumeUnicodeNoSurrogates(20)}
    if fdp.ConsumeBool():
        query["error"] = fdp.ConsumeUnicodeNoSurrogates(20)
    body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 3000))
    before = stored_rows()
    response = CLIENT.open(
        route, method=method, data=body, headers=headers, query_string=query, buffered=True
    )
    status = response.status_code
    if status >= 500:
        raise AssertionError(f"{method} {route} answered {status}: {response.get_data()[:300]!r}")
    after = stored_rows()
    if not signed and after != before:
        raise AssertionError(f"an unverified webhook was stored ({method} {route}, {status})")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
