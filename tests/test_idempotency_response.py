"""`IdempotencyConflict.response` (SPEC 15): the first call's stored status and decoded body
once it completed, None while it runs."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import sqlalchemy as sa

from flask_integrations import (
    IdempotencyConflict,
    Integration,
    IntegrationHTTPError,
    IntegrationIdempotencyKey,
    IntegrationRequest,
    Provider,
    StoredResponse,
)
from tests.helpers.app import db


@dataclasses.dataclass
class ApiCredentials:
    token: str


def provider(url: str) -> type[Provider]:
    class Api(Provider):
        credential_class = ApiCredentials
        base_url = url

    return Api


@pytest.fixture
def app(app_factory, upstream):
    app = app_factory(INTEGRATIONS_RETRY_AFTER_MAX=0.01)
    app.extensions["integrations"].register("api", provider(upstream.url))
    return app


@pytest.fixture
def api(ext, ctx):
    return ext.create("api", "API", {"token": "tok-SECRET-42"})


def rows(integration_id: int) -> list[IntegrationRequest]:
    db.session.expire_all()
    query = sa.select(IntegrationRequest).where(IntegrationRequest.integration_id == integration_id)
    return list(db.session.scalars(query.order_by(IntegrationRequest.id)))


def conflict(builder) -> IdempotencyConflict:
    with pytest.raises(IdempotencyConflict) as info:
        builder.post("/json")
    return info.value


def test_a_completed_call_gives_its_status_and_decoded_body(api, upstream):
    first = api.at("charge").with_data({"amount": 5}).with_idempotency_key("charge-1").post("/json")

    again = conflict(api.at("charge").with_idempotency_key("charge-1"))

    (row,) = rows(api.id)
    assert again.response == StoredResponse(200, first, row.id)
    assert again.response.body["body"] == '{"amount":5}'
    assert again.request_id == row.id
    assert upstream.hits("/json") == 1


def test_the_body_is_the_logged_body_redacted_and_scrubbed(api):
    api.at("charge").with_data({"password": "hunter2", "note": "tok-SECRET-42"}).with_idempotency_key(
        "k"
    ).post("/json")

    body = conflict(api.at("charge").with_idempotency_key("k")).response.body

    assert "hunter2" not in str(body) and "tok-SECRET-42" not in str(body)
    assert body["method"] == "POST"


def test_a_text_body_stays_text_and_an_unlogged_body_is_none(api):
    api.at("text").with_idempotency_key("text-1").get("/text")
    api.at("quiet").with_idempotency_key("quiet-1").without_body_logging().post("/json")

    text = conflict(api.at("text").with_idempotency_key("text-1")).response
    quiet = conflict(api.at("quiet").with_idempotency_key("quiet-1")).response

    assert (text.status_code, text.body) == (200, "plain text")
    assert (quiet.status_code, quiet.body) == (200, None)


def test_a_failed_call_that_keeps_its_key_gives_its_last_attempt(api):
    with pytest.raises(IntegrationHTTPError):
        api.at("charge").with_attempts(2).with_idempotency_key("k-503").post("/status/503")

    again = conflict(api.at("charge").with_idempotency_key("k-503"))

    first, last = rows(api.id)
    assert again.request_id == first.id
    assert again.response == StoredResponse(503, {"status": 503}, last.id)


def test_a_call_still_running_gives_none_then_its_answer(app, api, upstream):
    api_id = api.id
    db.session.remove()
    done = threading.Event()

    def first_call() -> None:
        with app.app_context():
            slow = db.session.get(Integration, api_id)
            slow.at("slow").with_idempotency_key("slow-1").post("/slow?delay=1")
            db.session.remove()
        done.set()

    thread = threading.Thread(target=first_call)
    thread.start()
    try:
        key_row = sa.select(IntegrationIdempotencyKey).where(IntegrationIdempotencyKey.key == "slow-1")
        for _ in range(400):
            if upstream.hits("/slow") and db.session.scalars(key_row).first() is not None:
                break
            db.session.remove()
            threading.Event().wait(0.005)
        integration = db.session.get(Integration, api_id)
        running = conflict(integration.at("slow").with_idempotency_key("slow-1"))
        assert not done.is_set()
        assert running.response is None
    finally:
        thread.join(10)

    ended = conflict(db.session.get(Integration, api_id).at("slow").with_idempotency_key("slow-1"))
    assert (ended.response.status_code, ended.response.body) == (200, {"slow": True})
    assert ended.response.request_id == rows(api_id)[0].id


def test_a_key_released_by_a_client_error_leaves_no_response_behind(api, upstream):
    upstream.script("/charge", [(400, {"e": "bad card"}), (201, {"id": "ch_1"})])
    with pytest.raises(IntegrationHTTPError):
        api.at("charge").with_idempotency_key("k-400").post("/charge")
    assert api.at("charge").with_idempotency_key("k-400").post("/charge") == {"id": "ch_1"}

    again = conflict(api.at("charge").with_idempotency_key("k-400"))

    assert again.response == StoredResponse(201, {"id": "ch_1"}, rows(api.id)[-1].id)
