"""Webhooks (SPEC 6): the routes, dedup, the process_webhook job, recovery and replay."""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import abort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_integrations import (
    HandlesWebhooks,
    Integration,
    IntegrationLog,
    IntegrationWebhook,
    Provider,
    signals,
)
from flask_integrations import queue as queue_module
from flask_integrations.clock import utcnow
from flask_integrations.state import current_state
from flask_integrations.testing import run_queued_jobs, send_webhook
from flask_integrations.webhooks import dedup_key, filter_headers
from flask_integrations.webhooks.jobs import process_webhook
from tests.helpers.app import Loose, Tickets, db

ROOT = Path(__file__).resolve().parent.parent
handled: list[tuple[str, Any, Any]] = []
FAILURES = {"left": 0}


def handle_ping(integration, webhook):
    handled.append(("ping", integration.id if integration else None, webhook.json()))


def handle_fail(integration, webhook):
    if FAILURES["left"] > 0:
        FAILURES["left"] -= 1
        secret = integration.credentials_dict().get("signing_secret", "") if integration else ""
        raise RuntimeError(f"upstream refused with key {secret}")
    handled.append(("fail-recovered", integration.id if integration else None, webhook.json()))


def handle_flaky(integration, webhook):
    """Fails on the first attempt only (in whatever process runs it)."""
    if webhook.attempts == 1:
        raise RuntimeError("first attempt fails")
    handled.append(("flaky", None, webhook.json()))


class Hooks(Provider, HandlesWebhooks):
    """Verifies a shared header; events and delivery ids come from headers."""

    def verify_webhook(self, integration, request):
        signature = request.headers.get("X-Sig")
        if signature == "boom":
            raise ValueError("broken verifier")
        return signature == "good"

    def webhook_event(self, request):
        if request.headers.get("X-Event") == "boom":
            raise ValueError("broken event hook")
        return request.headers.get("X-Event")

    def webhook_delivery_id(self, request):
        return request.headers.get("X-Delivery")

    def webhook_handlers(self):
        return {"ping": handle_ping, "fail": handle_fail, "hang": handle_hang, "flaky": handle_flaky}

    def handle_webhook(self, integration, webhook):
        if webhook.event_type == "fallback":
            handled.append(("fallback", integration.id if integration else None, webhook.json()))
            return True
        return super().handle_webhook(integration, webhook)

    def resolve_webhook_integration(self, request):
        value = request.headers.get("X-Integration")
        if value == "boom":
            raise LookupError("broken resolver")
        return db.session.get(Integration, int(value)) if value else None


class Handshake(Provider, HandlesWebhooks):
    def verify_webhook(self, integration, request):
        return True

    def webhook_challenge(self, integration, request):
        if request.args.get("challenge") == "forbidden":
            abort(403)
        if request.args.get("challenge") == "crash":
            abort(500)
        return request.args.get("challenge", "")


PROVIDERS = {"hooks": Hooks, "handshake": Handshake, "loose": Loose, "tickets": Tickets}
GOOD = {"X-Sig": "good"}


@pytest.fixture(autouse=True)
def _reset():
    handled.clear()
    FAILURES["left"] = 0
    run_queued_jobs()
    handled.clear()
    yield


@pytest.fixture
def app(app_factory):
    return app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def hooked(ext, ctx):
    """An integration of the `hooks` provider whose credentials hold a signing secret."""
    return ext.create("hooks", "Acme hooks", {"signing_secret": "whsec-very-secret-value"})


def rows() -> list[IntegrationWebhook]:
    db.session.rollback()
    return db.session.scalars(sa.select(IntegrationWebhook).order_by(IntegrationWebhook.id)).all()


def logs() -> list[IntegrationLog]:
    db.session.rollback()
    return db.session.scalars(sa.select(IntegrationLog).order_by(IntegrationLog.id)).all()


def post(client, path, **kwargs):
    return client.post(path, buffered=True, **kwargs)


# -- receiving ------------------------------------------------------------------------------------


def test_a_verified_webhook_is_stored_acknowledged_and_processed_after_the_response(client, hooked):
    response = send_webhook(
        client, "hooks", {"n": 1}, integration=hooked, headers={**GOOD, "X-Event": "ping"}
    )
    assert response.status_code == 202
    assert response.json == {"id": 1, "status": "pending"}
    (row,) = rows()
    assert (row.status, row.attempts, row.event_type, row.integration_id) == (
        "processed",
        1,
        "ping",
        hooked.id,
    )
    assert row.processed_at is not None and row.error is None
    assert row.json() == {"n": 1}
    assert handled == [("ping", hooked.id, {"n": 1})]
    (log,) = logs()
    assert (log.operation, log.direction, log.status) == ("webhook", "inbound", "success")
    assert log.metadata["webhook_id"] == 1 and log.duration_ms is not None


def test_the_row_is_pending_when_the_response_is_sent(app, client, hooked):
    response = client.post(f"/integrations/hooks/{hooked.id}/webhook", json={}, headers=GOOD)
    assert response.status_code == 202
    assert [r.status for r in rows()] == ["pending"]
    response.close()  # what a WSGI server does once the response is sent
    assert [r.status for r in rows()] == ["processed"]


def test_the_generic_route_stores_without_an_integration(client, ctx):
    response = send_webhook(client, "hooks", {"a": 1}, headers={**GOOD, "X-Event": "ping"})
    assert response.status_code == 202
    (row,) = rows()
    assert row.integration_id is None and row.status == "processed"
    assert handled == [("ping", None, {"a": 1})]
    assert logs() == []  # an operation log belongs to an integration


def test_the_generic_route_uses_resolve_webhook_integration(client, hooked):
    headers = {**GOOD, "X-Event": "ping", "X-Integration": str(hooked.id)}
    assert send_webhook(client, "hooks", {}, headers=headers).status_code == 202
    assert rows()[0].integration_id == hooked.id


def test_an_inactive_integration_still_receives(client, hooked):
    hooked.update(is_active=False)
    assert send_webhook(client, "hooks", {}, integration=hooked, headers=GOOD).status_code == 202
    assert rows()[0].status == "processed"


def test_a_custom_url_prefix_is_used(app_factory):
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_URL_PREFIX="/hooks-in")
    with app.app_context():
        assert post(app.test_client(), "/hooks-in/hooks/webhook", headers=GOOD).status_code == 202


def test_the_blueprint_can_be_turned_off(app_factory):
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_BLUEPRINTS={"webhooks": False})
    assert post(app.test_client(), "/integrations/hooks/webhook", headers=GOOD).status_code == 404


# -- every refusal --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/integrations/nope/webhook",
        "/integrations/loose/webhook",  # provider without HandlesWebhooks
        "/integrations/hooks/999/webhook",
        "/integrations/hooks/99999999999999999999999/webhook",
    ],
)
def test_unknown_providers_and_integrations_are_404(client, ctx, path):
    assert post(client, path, headers=GOOD).status_code == 404
    assert rows() == []


def test_an_integration_of_another_provider_is_404(client, ext, ctx):
    other = ext.create("handshake", "Other", {})
    assert post(client, f"/integrations/hooks/{other.id}/webhook", headers=GOOD).status_code == 404


def test_get_without_a_challenge_hook_is_405(client, ctx):
    response = client.get("/integrations/hooks/webhook")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert client.put("/integrations/hooks/webhook").status_code == 405


def test_get_answers_the_subscription_handshake(client, ctx):
    response = client.get("/integrations/handshake/webhook?challenge=abc123")
    assert response.status_code == 200 and response.text == "abc123"
    assert client.get("/integrations/nope/webhook").status_code == 404


def test_the_handshake_hook_may_abort_but_never_with_a_500(client, ctx):
    assert client.get("/integrations/handshake/webhook?challenge=forbidden").status_code == 403
    assert client.get("/integrations/handshake/webhook?challenge=crash").status_code == 400


@pytest.fixture
def small_app(app_factory):
    return app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_WEBHOOK={"max_payload_bytes": 100})


def test_a_declared_length_over_the_limit_is_413(small_app, ctx):
    response = post(small_app.test_client(), "/integrations/hooks/webhook", data=b"x" * 101, headers=GOOD)
    assert response.status_code == 413
    assert (
        post(
            small_app.test_client(), "/integrations/hooks/webhook", data=b"x" * 100, headers=GOOD
        ).status_code
        == 202
    )


def test_a_body_without_content_length_is_counted_while_read(small_app, ctx):
    response = post(
        small_app.test_client(),
        "/integrations/hooks/webhook",
        input_stream=io.BytesIO(b"y" * 5000),
        headers=GOOD,
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert rows() == []


def test_a_lying_content_length_cannot_bypass_the_limit(small_app, ctx):
    # Declared 50 bytes, sent 5000: only the declared bytes are read, and they are what is verified.
    response = post(
        small_app.test_client(),
        "/integrations/hooks/webhook",
        input_stream=io.BytesIO(b'{"a": 1}' + b" " * 5000),
        headers=GOOD,
        environ_overrides={"CONTENT_LENGTH": "50"},
    )
    assert response.status_code == 202
    assert len(rows()[0].payload) == 50


def test_a_content_length_longer_than_the_body_is_400(client, ctx):
    response = post(
        client,
        "/integrations/hooks/webhook",
        input_stream=io.BytesIO(b"short"),
        headers=GOOD,
        environ_overrides={"CONTENT_LENGTH": "500"},
    )
    assert response.status_code == 400
    assert rows() == []


def test_chunked_bodies_over_the_limit_are_413_on_a_real_server(small_app, ctx):
    """A real HTTP server, a chunked request (no Content-Length at all)."""
    import http.client

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, small_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        statuses = []
        for size in (80, 5000):
            connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
            body = iter([b"z" * (size // 2), b"z" * (size - size // 2)])
            connection.request(
                "POST", "/integrations/hooks/webhook", body=body, headers=GOOD, encode_chunked=True
            )
            statuses.append(connection.getresponse().status)
            connection.close()
    finally:
        server.shutdown()
    assert statuses == [202, 413]
    assert [len(r.payload) for r in rows()] == [80]


def test_a_body_that_is_not_utf8_is_400(client, ctx):
    assert post(client, "/integrations/hooks/webhook", data=b"\xff\xfe\x00", headers=GOOD).status_code == 400
    assert post(client, "/integrations/hooks/webhook", data=b"a\x00b", headers=GOOD).status_code == 400
    assert rows() == []


def test_a_failed_signature_is_401_stores_nothing_and_logs_one_warning(client, ctx, caplog):
    with caplog.at_level(logging.WARNING, "flask_integrations"):
        response = post(client, "/integrations/hooks/webhook", json={"a": 1}, headers={"X-Sig": "bad"})
    assert response.status_code == 401
    assert rows() == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "signature" in warnings[0].getMessage()


def test_a_verifier_that_raises_is_401(client, ctx, caplog):
    with caplog.at_level(logging.WARNING, "flask_integrations"):
        response = post(client, "/integrations/hooks/webhook", json={}, headers={"X-Sig": "boom"})
    assert response.status_code == 401
    assert rows() == []
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


@pytest.mark.parametrize(
    "path,headers",
    [
        ("/integrations/hooks/1/webhook", GOOD),
        ("/integrations/hooks/webhook", {**GOOD, "X-Integration": "1"}),
    ],
)
def test_an_unreachable_database_is_503_not_400(tmp_path, path, headers):
    # found by the fault suite: with PostgreSQL restarting, looking up the integration raised
    # OperationalError and the catch-all answered 400, which a provider takes as "do not retry"
    from tests.helpers.app import make_app

    app = make_app(f"sqlite:///{tmp_path / 'missing-dir' / 'app.db'}", INTEGRATIONS_PROVIDERS=PROVIDERS)
    response = post(app.test_client(), path, json={"a": 1}, headers=headers)
    assert response.status_code == 503
    assert response.get_json() == {"error": "the webhook could not be stored; retry later"}


@pytest.mark.parametrize("headers", [{**GOOD, "X-Event": "boom"}, {**GOOD, "X-Integration": "boom"}])
def test_broken_provider_hooks_are_400_not_500(client, ctx, headers):
    assert post(client, "/integrations/hooks/webhook", json={}, headers=headers).status_code == 400
    assert rows() == []


# -- what is stored -------------------------------------------------------------------------------


def test_credential_headers_are_not_stored(client, ctx):
    headers = {
        **GOOD,
        "Authorization": "Bearer abc",
        "Proxy-Authorization": "Basic xyz",
        "Cookie": "session=1",
        "X-Api-Key": "k",
        "X-Hub-Token": "t",
        "X-Client-Secret": "s",
        "X-Webhook-Password": "p",
        "X-Hook-Auth": "a",
        "X-Passphrase": "pp",
        "X-Github-Event": "push",
    }
    assert post(client, "/integrations/hooks/webhook", json={}, headers=headers).status_code == 202
    stored = {name.lower() for name in rows()[0].headers}
    assert "x-github-event" in stored and "user-agent" in stored
    dropped = {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-hub-token"}
    assert not stored & (dropped | {"x-client-secret", "x-webhook-password", "x-hook-auth", "x-passphrase"})
    assert "x-sig" not in stored  # the signature was checked on the request; nothing after needs it


def test_an_integrations_credential_values_are_scrubbed_from_the_headers_kept():
    kept = filter_headers([("X-Echo", "sent sk-live-123 back"), ("X-Other", "fine")], ["sk-live-123"])
    assert kept == {"X-Echo": "sent [REDACTED] back", "X-Other": "fine"}


def test_filter_headers_joins_repeated_names():
    assert filter_headers([("X-A", "1"), ("X-A", "2"), ("Set-Key", "k")]) == {"X-A": "1, 2"}


def test_the_signal_is_sent_after_the_commit(app, client, ctx):
    seen = []

    def receiver(sender, webhook):
        with db.engine.connect() as connection:  # another connection sees only committed rows
            status = connection.execute(
                sa.select(IntegrationWebhook.status).where(IntegrationWebhook.id == webhook.id)
            ).scalar()
        seen.append((sender, webhook.id, status))

    with signals.webhook_received.connected_to(receiver):
        send_webhook(client, "hooks", {}, headers={**GOOD, "X-Delivery": "d-1"})
        send_webhook(client, "hooks", {}, headers={**GOOD, "X-Delivery": "d-1"})  # duplicate: no signal
    assert seen == [(app, 1, "pending")]


def test_a_signal_receiver_using_the_session_does_not_hold_the_job_back(app, client, ctx):
    def receiver(sender, webhook):
        db.session.get(IntegrationWebhook, webhook.id)  # begins a transaction nobody commits

    with signals.webhook_received.connected_to(receiver):
        assert send_webhook(client, "hooks", {}, headers=GOOD).status_code == 202
    assert rows()[0].status == "processed"


# -- deduplication --------------------------------------------------------------------------------


def test_a_repeated_delivery_id_is_a_duplicate(client, hooked):
    headers = {**GOOD, "X-Event": "ping", "X-Delivery": "evt_1"}
    first = send_webhook(client, "hooks", {"n": 1}, integration=hooked, headers=headers)
    second = send_webhook(client, "hooks", {"n": 1}, integration=hooked, headers=headers)
    assert first.status_code == 202
    assert second.status_code == 200 and second.json == {"id": first.json["id"], "status": "duplicate"}
    original, duplicate = rows()
    assert original.dedup_key == dedup_key("hooks", hooked.id, "evt_1")
    assert (duplicate.status, duplicate.dedup_key, duplicate.delivery_id) == ("duplicate", None, "evt_1")
    assert handled == [("ping", hooked.id, {"n": 1})]


def test_dedup_is_per_provider_and_integration(client, ext, hooked):
    other = ext.create("hooks", "Other hooks", {})
    headers = {**GOOD, "X-Delivery": "same"}
    statuses = [
        send_webhook(client, "hooks", {}, integration=hooked, headers=headers).status_code,
        send_webhook(client, "hooks", {}, integration=other, headers=headers).status_code,
        send_webhook(client, "hooks", {}, headers=headers).status_code,
        send_webhook(client, "hooks", {}, headers=headers).status_code,
    ]
    assert statuses == [202, 202, 202, 200]


def test_deliveries_without_an_id_are_not_deduplicated(client, ctx):
    assert [send_webhook(client, "hooks", {}, headers=GOOD).status_code for _ in range(3)] == [202] * 3
    assert {r.dedup_key for r in rows()} == {None}


# -- processing -----------------------------------------------------------------------------------


def test_events_without_a_handler_end_processed_with_a_note(client, hooked):
    send_webhook(client, "hooks", {}, integration=hooked, headers={**GOOD, "X-Event": "unknown.event"})
    assert rows()[0].status == "processed"
    (log,) = logs()
    assert log.status == "success" and "no handler" in log.metadata["note"]


def test_handle_webhook_is_the_fallback(client, hooked):
    send_webhook(client, "hooks", {"f": 1}, integration=hooked, headers={**GOOD, "X-Event": "fallback"})
    assert handled == [("fallback", hooked.id, {"f": 1})]
    assert "note" not in logs()[0].metadata


def test_failures_retry_then_end_failed_with_a_scrubbed_error(app_factory):
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_WEBHOOK={"retry_delay": 0})
    with app.app_context():
        hooked = app.extensions["integrations"].create(
            "hooks", "A", {"signing_secret": "whsec-very-secret-value"}
        )
        FAILURES["left"] = 10
        send_webhook(app.test_client(), "hooks", {}, integration=hooked, headers={**GOOD, "X-Event": "fail"})
        (row,) = rows()
        assert (row.status, row.attempts) == ("failed", 3)
        assert "RuntimeError: upstream refused" in row.error and "whsec-very-secret-value" not in row.error
        assert [log.status for log in logs()] == ["failed"] * 3
        assert all("whsec-very-secret-value" not in log.error for log in logs())
        db.session.remove()


def test_a_failure_waits_for_its_delay_then_recover_runs_it(app, client, hooked):
    FAILURES["left"] = 1
    send_webhook(client, "hooks", {"r": 1}, integration=hooked, headers={**GOOD, "X-Event": "fail"})
    (row,) = rows()
    assert (row.status, row.attempts) == ("pending", 1)
    assert "upstream refused" in row.error
    runner = app.test_cli_runner()
    assert "0 pending" in runner.invoke(args=["integrations", "recover-webhooks"]).output  # delay not passed
    _age(row.id, seconds=31)
    result = runner.invoke(args=["integrations", "recover-webhooks"])
    assert result.exit_code == 0 and "1 pending" in result.output
    (row,) = rows()
    assert (row.status, row.attempts, row.error) == ("processed", 2, None)
    assert handled == [("fail-recovered", hooked.id, {"r": 1})]


def _age(webhook_id: int, seconds: float) -> None:
    table = current_state().tables["webhooks"]
    db.session.execute(
        sa.update(table)
        .where(table.c.id == webhook_id)
        .values(updated_at=utcnow() - timedelta(seconds=seconds))
    )
    db.session.commit()


def _insert(status: str, attempts: int = 0, **values: Any) -> int:
    table = current_state().tables["webhooks"]
    now = utcnow()
    webhook_id = db.session.execute(
        sa.insert(table)
        .values(
            {
                "provider": "hooks",
                "payload": '{"stored": true}',
                "headers": {},
                "event_type": "ping",
                "status": status,
                "attempts": attempts,
                "created_at": now,
                "updated_at": now,
                **values,
            }
        )
        .returning(table.c.id)
    ).scalar_one()
    db.session.commit()
    return webhook_id


def test_recover_restarts_stale_processing_and_old_pending_rows(app, ctx):
    stale = _insert("processing", attempts=1)
    fresh = _insert("processing", attempts=1)
    lost = _insert("pending")
    recent = _insert("pending")
    _age(stale, seconds=1801)
    _age(lost, seconds=301)
    result = app.test_cli_runner().invoke(args=["integrations", "recover-webhooks"])
    assert result.exit_code == 0
    assert result.output.strip() == "Re-enqueued 1 stale processing and 1 pending webhook(s)."
    status = {r.id: (r.status, r.attempts) for r in rows()}
    assert status == {
        stale: ("processed", 2),
        fresh: ("processing", 1),
        lost: ("processed", 1),
        recent: ("pending", 0),
    }


def test_the_attempts_value_fences_a_stale_claim(ctx, app):
    webhook_id = _insert("pending", attempts=2)
    assert process_webhook(webhook_id, attempts_seen=1) is None  # a job from before a recovery
    assert rows()[0].status == "pending"
    assert process_webhook(webhook_id, attempts_seen=2) == "processed"
    assert process_webhook(webhook_id, attempts_seen=2) is None  # claimed once only
    assert handled == [("ping", None, {"stored": True})]


def test_replay_reruns_a_stored_webhook(app, ctx):
    webhook_id = _insert("processed", attempts=1)
    result = app.test_cli_runner().invoke(args=["integrations", "replay-webhook", str(webhook_id)])
    assert result.exit_code == 0, result.output
    assert (rows()[0].status, rows()[0].attempts) == ("processed", 2)
    assert handled == [("ping", None, {"stored": True})]


def test_a_failing_replay_past_the_attempt_budget_logs_what_it_was(app_factory, caplog):
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_WEBHOOK={"max_attempts": 2})
    with app.app_context():
        FAILURES["left"] = 1
        webhook_id = _insert("failed", attempts=2, event_type="fail")
        with caplog.at_level(logging.WARNING, logger="flask_integrations"):
            result = app.test_cli_runner().invoke(args=["integrations", "replay-webhook", str(webhook_id)])
        assert result.exit_code == 0, result.output
        assert (rows()[0].status, rows()[0].attempts) == ("failed", 3)
        assert f"webhook {webhook_id} failed (attempt 3: a manual retry after the 2 allowed)" in caplog.text
        assert "of 2" not in caplog.text
        db.session.remove()


def test_replay_of_an_unknown_id_is_one_clear_error(app, ctx):
    result = app.test_cli_runner().invoke(args=["integrations", "replay-webhook", "4242"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: no webhook with id 4242"


def test_replay_refuses_duplicates(app, ctx):
    webhook_id = _insert("duplicate")
    result = app.test_cli_runner().invoke(args=["integrations", "replay-webhook", str(webhook_id)])
    assert result.exit_code == 1 and "duplicate" in result.output


# -- property: no input gives a 500, and an unverified body is never stored ------------------------

header_names = st.from_regex(r"X-[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True)
header_values = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300), st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace"))
    ),
    headers=st.dictionaries(header_names, header_values, max_size=5),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "",
            "a/b; c",
        ]
    ),
    signed=st.booleans(),
    specific=st.booleans(),
    event=st.one_of(st.none(), st.text(max_size=300)),
    delivery=st.one_of(st.none(), st.text(max_size=300)),
)
def test_no_input_gives_a_500_and_unverified_bodies_are_never_stored(
    client, hooked, body, headers, content_type, signed, specific, event, delivery
):
    headers = {k: v for k, v in headers.items() if k.lower() not in ("x-sig", "x-integration")}
    headers["X-Sig"] = "good" if signed else "bad"
    if content_type:
        headers["Content-Type"] = content_type
    for name, value in (("X-Event", event), ("X-Delivery", delivery)):
        if value is not None:
            headers[name] = (
                value.encode("latin-1", "replace").decode("latin-1").replace("\r", "").replace("\n", "")
            )
    before = len(rows())
    path = f"/integrations/hooks/{hooked.id}/webhook" if specific else "/integrations/hooks/webhook"
    response = post(client, path, data=body, headers=headers)
    assert response.status_code < 500
    after = len(rows())
    if not signed:  # an unreadable body is refused (400) before the signature is checked (401)
        assert response.status_code in (400, 401) and after == before
    elif response.status_code in (200, 202):
        assert after == before + 1
    else:
        assert response.status_code == 400 and after == before


# -- Redis mode with real RQ workers --------------------------------------------------------------

APP_MODULE = """
import os
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from flask_integrations import Integrations
from tests.test_webhooks import PROVIDERS

app = Flask("worker_app")
app.config.update(
    SQLALCHEMY_DATABASE_URI=os.environ["WH_DATABASE_URL"],
    INTEGRATIONS_ENCRYPTION_KEYS=[os.environ["WH_KEY"]],
    INTEGRATIONS_PROVIDERS=PROVIDERS,
    INTEGRATIONS_REDIS_URL=os.environ["WH_REDIS_URL"],
    INTEGRATIONS_BLUEPRINTS={"webhooks": True, "oauth": False, "dashboard": False},
    INTEGRATIONS_WEBHOOK={"retry_delay": int(os.environ.get("WH_RETRY_DELAY", "30"))},
)
db = SQLAlchemy(app)
Integrations(app, db=db)
"""


@pytest.fixture
def redis_app(app_factory, redis_url, tmp_path):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    app = app_factory(INTEGRATIONS_PROVIDERS=PROVIDERS, INTEGRATIONS_REDIS_URL=redis_url)
    (tmp_path / "worker_app.py").write_text(textwrap.dedent(APP_MODULE))
    with app.app_context():
        yield app
        db.session.remove()
    redis.Redis.from_url(redis_url).flushdb()


def _worker_env(app, redis_url, tmp_path) -> dict[str, str]:
    from tests.helpers.app import KEY

    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "FLASK_APP": "worker_app",
        "WH_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "WH_KEY": KEY,
        "WH_REDIS_URL": redis_url,
    }


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("options", [[], ["--simple"]], ids=["forking", "simple"])
def test_flask_integrations_worker_processes_a_webhook(redis_app, redis_url, tmp_path, options):
    hooked = redis_app.extensions["integrations"].create("hooks", "A", {})
    response = send_webhook(redis_app.test_client(), "hooks", {"w": 1}, integration=hooked, headers=GOOD)
    assert response.status_code == 202
    assert rows()[0].status == "pending"  # nothing runs in the web process in Redis mode
    env = _worker_env(redis_app, redis_url, tmp_path)
    done = _run([sys.executable, "-m", "flask", "integrations", "worker", "--burst", *options], env, tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = rows()
    assert (row.status, row.attempts) == ("processed", 1)
    assert [log.status for log in logs()] == ["success"]


@pytest.mark.redis
@pytest.mark.slow
def test_a_failed_attempt_is_retried_by_the_rq_scheduler(app_factory, redis_url, tmp_path):
    import time

    import redis

    redis.Redis.from_url(redis_url).flushdb()
    (tmp_path / "worker_app.py").write_text(textwrap.dedent(APP_MODULE))
    app = app_factory(
        INTEGRATIONS_PROVIDERS=PROVIDERS,
        INTEGRATIONS_REDIS_URL=redis_url,
        INTEGRATIONS_WEBHOOK={"retry_delay": 1},
    )
    with app.app_context():
        send_webhook(app.test_client(), "hooks", {"f": 1}, headers={**GOOD, "X-Event": "flaky"})
        env = {**_worker_env(app, redis_url, tmp_path), "WH_RETRY_DELAY": "1"}
        first = _run([sys.executable, "-m", "flask", "integrations", "worker", "--burst"], env, tmp_path)
        assert first.returncode == 0, first.stderr
        (row,) = rows()
        assert (row.status, row.attempts) == ("pending", 1)
        assert queue_module.rq_queue(current_state(), "integrations").scheduled_job_registry.count == 1
        time.sleep(1.5)
        second = _run([sys.executable, "-m", "flask", "integrations", "worker", "--burst"], env, tmp_path)
        assert second.returncode == 0, second.stderr
        (row,) = rows()
        assert (row.status, row.attempts, row.error) == ("processed", 2, None), second.stdout + second.stderr
        db.session.remove()
    redis.Redis.from_url(redis_url).flushdb()


def test_the_worker_command_needs_redis(app, ctx):
    result = app.test_cli_runner().invoke(args=["integrations", "worker", "--burst"])
    assert result.exit_code == 1 and "INTEGRATIONS_REDIS_URL is not set" in result.output


WORKER_PROBE = """
import sys

import rq
import sqlalchemy as sa
from flask.cli import main


def work(self, **kwargs):  # what a forked work horse would inherit
    from flask_integrations import Integration, IntegrationWebhook

    configured = sa.inspect(Integration).configured and sa.inspect(IntegrationWebhook).configured
    imported = {"flask_integrations.webhooks.jobs", "flask_integrations.sync.jobs"} <= set(sys.modules)
    print("configured", configured, "imported", imported)


rq.Worker.work = work
sys.argv = ["flask", "integrations", "worker", "--burst"]
main()
"""


@pytest.mark.redis
@pytest.mark.slow
def test_the_worker_configures_the_orm_before_it_forks_work_horses(redis_app, redis_url, tmp_path):
    # found by the load test: each forked work horse configured the mappers anew, ~0.3 s of CPU per job
    (tmp_path / "probe.py").write_text(WORKER_PROBE)
    env = _worker_env(redis_app, redis_url, tmp_path)
    done = _run([sys.executable, str(tmp_path / "probe.py")], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["configured", "True", "imported", "True"]


@pytest.mark.redis
@pytest.mark.slow
def test_plain_rq_worker_finds_the_app_through_flask_app(redis_app, redis_url, tmp_path):
    send_webhook(redis_app.test_client(), "hooks", {}, headers=GOOD)
    env = _worker_env(redis_app, redis_url, tmp_path)
    command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--with-scheduler", "--url", redis_url]
    done = _run([*command, "integrations"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert rows()[0].status == "processed", done.stderr


@pytest.mark.redis
@pytest.mark.slow
def test_redis_down_during_receipt_still_acknowledges_then_recovery_enqueues(
    app_factory, redis_app, redis_url, tmp_path, caplog
):
    database_url = redis_app.config["SQLALCHEMY_DATABASE_URI"]
    down = app_factory(
        INTEGRATIONS_PROVIDERS=PROVIDERS,
        INTEGRATIONS_REDIS_URL="redis://127.0.0.1:1/0",
        SQLALCHEMY_DATABASE_URI=database_url,
    )
    with down.app_context(), caplog.at_level(logging.WARNING, "flask_integrations"):
        response = send_webhook(down.test_client(), "hooks", {"down": 1}, headers=GOOD)
    assert response.status_code == 202
    assert "could not enqueue" in caplog.text
    (row,) = rows()
    assert row.status == "pending"
    _age(row.id, seconds=301)
    result = redis_app.test_cli_runner().invoke(args=["integrations", "recover-webhooks"])
    assert "1 pending" in result.output
    env = _worker_env(redis_app, redis_url, tmp_path)
    done = _run([sys.executable, "-m", "flask", "integrations", "worker", "--burst"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert rows()[0].status == "processed"


# -- PostgreSQL: concurrent deliveries of one id ----------------------------------------------------


def _deliver_concurrently(database_url: str, count: int, barrier: Any, results: Any) -> None:
    from tests.helpers.app import make_app

    app = make_app(database_url, INTEGRATIONS_PROVIDERS=PROVIDERS)
    statuses: list[int] = []

    def one() -> None:
        client = app.test_client()
        barrier.wait()
        response = send_webhook(
            client, "hooks", {"race": 1}, headers={**GOOD, "X-Event": "ping", "X-Delivery": "race-1"}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.extend(statuses)


@pytest.mark.slow
def test_concurrent_deliveries_of_one_id_store_one_original(server_database_url):
    from tests.conftest import reset_tables
    from tests.helpers.app import make_app

    app = make_app(server_database_url, INTEGRATIONS_PROVIDERS=PROVIDERS)
    with app.app_context():
        reset_tables()
    processes, per_process = 4, 5
    context = multiprocessing.get_context("fork")
    with app.app_context():
        db.engine.dispose()
    with context.Manager() as manager:
        barrier = manager.Barrier(processes * per_process)
        results = manager.list()
        workers = [
            context.Process(
                target=_deliver_concurrently, args=(server_database_url, per_process, barrier, results)
            )
            for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        statuses = sorted(results)
    assert statuses == [200] * (processes * per_process - 1) + [202]
    with app.app_context():
        stored = rows()
        originals = [r for r in stored if r.status != "duplicate"]
        assert len(stored) == processes * per_process
        assert [(r.status, r.attempts) for r in originals] == [("processed", 1)]
        assert all(r.dedup_key is None for r in stored if r.status == "duplicate")
        db.session.remove()


# -- examples/webhook_providers.py ----------------------------------------------------------------


def _load_example() -> Any:
    import importlib.util

    if "webhook_providers" in sys.modules:
        return sys.modules["webhook_providers"]
    spec = importlib.util.spec_from_file_location(
        "webhook_providers", ROOT / "examples" / "webhook_providers.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["webhook_providers"] = module
    spec.loader.exec_module(module)
    return module


EXAMPLE_SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@pytest.fixture
def example(app_factory):
    module = _load_example()
    app = app_factory(
        INTEGRATIONS_PROVIDERS={"signed": module.SignedWebhooks, "standard": module.StandardWebhooks}
    )
    with app.app_context():
        ext = app.extensions["integrations"]
        signed = ext.create("signed", "Signed", {"signing_secret": "s3cret-signing-key"})
        standard = ext.create("standard", "Standard", {"signing_secret": EXAMPLE_SECRET})
        yield module, app.test_client(), signed, standard
        db.session.remove()


def test_example_hmac_signature_is_verified(example):
    module, client, signed, _ = example
    body = b'{"action": "opened"}'
    good = {"X-Signature-256": module.hmac_signature("s3cret-signing-key", body), "X-Event": "issue"}
    assert send_webhook(client, "signed", body, integration=signed, headers=good).status_code == 202
    tampered = send_webhook(client, "signed", body + b" ", integration=signed, headers=good)
    assert tampered.status_code == 401
    assert send_webhook(client, "signed", body, headers=good).status_code == 401  # no integration, no secret
    assert [(r.event_type, r.status) for r in rows()] == [("issue", "processed")]


def test_example_standard_webhooks_signature_is_verified(example):
    import time

    module, client, _, standard = example
    body = b'{"type": "invoice.paid", "data": {}}'
    now = int(time.time())

    def headers(message_id: str, timestamp: int, signature: str | None = None) -> dict[str, str]:
        signature = signature or module.standard_signature(EXAMPLE_SECRET, message_id, timestamp, body)
        return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}

    def send(hdrs: dict[str, str], payload: bytes = body) -> int:
        return send_webhook(client, "standard", payload, integration=standard, headers=hdrs).status_code

    rotated = "v1,b2xkLXNpZ25hdHVyZQ== " + module.standard_signature(EXAMPLE_SECRET, "msg_2", now, body)
    assert send(headers("msg_1", now)) == 202
    assert send(headers("msg_1", now)) == 200  # the same message id again: a duplicate
    assert send(headers("msg_2", now, rotated)) == 202  # one of several signatures matches
    assert send(headers("msg_3", now), body.replace(b"paid", b"void")) == 401
    assert send(headers("msg_4", now - 3600)) == 401  # too old: a replay
    assert send({**headers("msg_5", now), "webhook-signature": "v1,AAAA"}) == 401
    assert send({"webhook-id": "msg_6"}) == 401
    stored = [(r.delivery_id, r.event_type, r.status) for r in rows()]
    assert stored == [
        ("msg_1", "invoice.paid", "processed"),
        ("msg_1", "invoice.paid", "duplicate"),
        ("msg_2", "invoice.paid", "processed"),
    ]


# -- wiring ---------------------------------------------------------------------------------------


def test_the_routes_are_exempt_from_csrf_protection_when_the_app_has_it():
    from flask import Flask

    from flask_integrations.web.webhooks import blueprint, register

    exempted = []

    class FakeCSRF:  # the one method of Flask-WTF's CSRFProtect the extension uses
        def exempt(self, view):
            exempted.append(view)

    app = Flask("csrf")
    app.extensions["csrf"] = FakeCSRF()
    register(app, "/integrations")
    assert exempted == [blueprint]
    assert "/integrations/<provider>/webhook" in {rule.rule for rule in app.url_map.iter_rules()}


# -- a worker killed in the middle of a handler --------------------------------------------------


def handle_hang(integration, webhook):
    """Hangs on its first attempt (the test kills the worker then); succeeds on the next."""
    import time

    if webhook.attempts == 1:
        time.sleep(120)
    handled.append(("hang-recovered", None, webhook.json()))


@pytest.mark.redis
@pytest.mark.slow
def test_a_webhook_survives_a_sigkilled_worker(redis_app, redis_url, tmp_path):
    import signal
    import time

    send_webhook(redis_app.test_client(), "hooks", {"k": 1}, headers={**GOOD, "X-Event": "hang"})
    env = _worker_env(redis_app, redis_url, tmp_path)
    worker = subprocess.Popen(
        # --simple: the job runs in the worker process itself, so the SIGKILL really ends it (a forking
        # worker's work horse runs in a session of its own and would outlive killpg).
        [sys.executable, "-m", "flask", "integrations", "worker", "--simple"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while rows()[0].status != "processing" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rows()[0].status == "processing"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    (row,) = rows()
    assert (row.status, row.attempts) == ("processing", 1)
    _age(row.id, seconds=1801)
    result = redis_app.test_cli_runner().invoke(args=["integrations", "recover-webhooks"])
    assert "1 stale processing" in result.output
    done = _run([sys.executable, "-m", "flask", "integrations", "worker", "--burst"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = rows()
    assert (row.status, row.attempts) == ("processed", 2)
