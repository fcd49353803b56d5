"""Stored bodies: redact keys and paths, scrub credential values, cap the size, never raise."""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_integrations.config import DEFAULTS
from flask_integrations.redaction import REDACTED, credential_secrets, prepare_body, redact, scrub

KEYS = DEFAULTS["INTEGRATIONS_REDACT_KEYS"]


def body(data, *, paths=(), secrets=(), max_bytes=65536, keys=KEYS):
    return prepare_body(data, redact_keys=keys, paths=paths, secrets=secrets, max_bytes=max_bytes)


def stored(data, **kwargs):
    return json.loads(body(data, **kwargs))


# -- keys ----------------------------------------------------------------------


def test_none_stays_none():
    assert body(None) is None


def test_redact_keys_match_case_insensitively():
    assert stored({"Password": "p", "AUTHORIZATION": "Bearer x", "token": "t", "TOKEN": "T"}) == {
        "Password": REDACTED,
        "AUTHORIZATION": REDACTED,
        "token": REDACTED,
        "TOKEN": REDACTED,
    }


def test_redact_keys_match_whole_keys_only():
    assert stored({"token_type": "bearer", "tokens_used": 3}, keys=["token"]) == {
        "token_type": "bearer",
        "tokens_used": 3,
    }


def test_token_does_not_match_access_token_by_itself():
    assert stored({"access_token": "a"}, keys=["token"]) == {"access_token": "a"}


def test_default_keys_cover_access_and_refresh_tokens():
    assert stored({"access_token": "a", "refresh_token": "r", "client_secret": "c"}) == {
        "access_token": REDACTED,
        "refresh_token": REDACTED,
        "client_secret": REDACTED,
    }


def test_dashes_in_keys_match_underscores():
    assert stored({"X-Api-Key": "k", "api-key": "k"}) == {"X-Api-Key": "k", "api-key": REDACTED}


def test_redact_keys_apply_at_any_depth():
    data = {"user": {"name": "ada", "credentials": [{"password": "p", "apikey": "k"}]}}
    assert stored(data) == {
        "user": {"name": "ada", "credentials": [{"password": REDACTED, "apikey": REDACTED}]}
    }


def test_a_redacted_key_hides_a_nested_value_whole():
    assert stored({"secret": {"a": 1, "b": [1, 2]}}) == {"secret": REDACTED}


def test_redacting_does_not_change_the_callers_data():
    data = {"password": "p", "items": [{"ssn": "1"}]}
    body(data, paths=["items.*.ssn"])
    assert data == {"password": "p", "items": [{"ssn": "1"}]}


# -- dot paths -----------------------------------------------------------------


def test_dot_path_redacts_a_nested_field():
    assert stored({"card": {"number": "4242", "brand": "visa"}}, paths=["card.number"]) == {
        "card": {"number": REDACTED, "brand": "visa"}
    }


def test_star_in_a_path_matches_every_list_item():
    data = {"items": [{"ssn": "1", "id": 1}, {"ssn": "2", "id": 2}]}
    assert stored(data, paths=["items.*.ssn"]) == {
        "items": [{"ssn": REDACTED, "id": 1}, {"ssn": REDACTED, "id": 2}]
    }


def test_star_paths_reach_deep_fields():
    data = {"data": [{"attributes": {"secret_answer": "x", "name": "a"}}]}
    assert stored(data, paths=["data.*.attributes.secret_answer"]) == {
        "data": [{"attributes": {"secret_answer": REDACTED, "name": "a"}}]
    }


def test_a_numeric_path_segment_matches_one_list_index():
    assert stored({"items": ["a", "b"]}, paths=["items.1"]) == {"items": ["a", REDACTED]}


def test_a_path_on_a_top_level_list():
    assert stored([{"ssn": "1"}, {"ssn": "2"}], paths=["*.ssn"]) == [{"ssn": REDACTED}, {"ssn": REDACTED}]


def test_a_path_that_does_not_match_changes_nothing():
    assert stored({"card": "4242"}, paths=["card.number", "other"]) == {"card": "4242"}


# -- text, bytes, form data ----------------------------------------------------


def test_json_text_is_parsed_and_redacted():
    assert json.loads(body('{"password": "p", "ok": true}')) == {"password": REDACTED, "ok": True}


def test_json_bytes_are_parsed_and_redacted():
    assert json.loads(body(b'[{"token": "t"}]')) == [{"token": REDACTED}]


def test_plain_text_is_stored_as_is():
    assert body("hello world") == "hello world"


def test_invalid_utf8_bytes_are_decoded_with_replacement():
    assert body(b"caf\xe9") == "caf\ufffd"


def test_nul_characters_are_replaced_so_postgresql_can_store_the_text():
    assert "\x00" not in body("a\x00b")


def test_form_dict_is_redacted_by_key():
    assert stored({"username": "ada", "password": "p"}) == {"username": "ada", "password": REDACTED}


def test_urlencoded_form_string_is_redacted_by_key():
    assert body("username=ada&Password=hunter2&x=") == f"username=ada&Password={REDACTED}&x="


def test_bracketed_form_keys_match_dot_paths():
    assert body("card%5Bnumber%5D=4242&card%5Bcvc%5D=1", paths=["card.number"]) == (
        f"card%5Bnumber%5D={REDACTED}&card%5Bcvc%5D=1"
    )


def test_text_that_only_looks_a_bit_like_a_form_is_left_alone():
    assert body("x = password=1 & more") == "x = password=1 & more"


# -- odd input -----------------------------------------------------------------


def test_a_cycle_is_stored_with_a_marker():
    data: dict = {"a": 1}
    data["self"] = data
    assert stored(data) == {"a": 1, "self": "[circular]"}


def test_sets_and_tuples_become_lists():
    assert stored({"tags": {"b", "a"}, "pair": (1, 2)}) == {"tags": ["a", "b"], "pair": [1, 2]}


def test_dataclasses_are_walked_so_their_keys_are_redacted():
    @dataclasses.dataclass
    class Login:
        user: str
        password: str

    assert stored(Login("ada", "p")) == {"user": "ada", "password": REDACTED}


def test_unknown_objects_are_stored_as_their_str():
    class Thing:
        def __str__(self):
            return "a thing"

    assert stored({"x": Thing()}) == {"x": "a thing"}


def test_an_object_whose_str_raises_does_not_break_logging():
    class Hostile:
        def __str__(self):
            raise RuntimeError("no")

        def __repr__(self):
            raise RuntimeError("no")

    assert stored({"x": Hostile()}) == {"x": "<unprintable Hostile>"}


def test_non_string_keys_become_strings():
    assert stored({1: "a", None: "b"}) == {"1": "a", "None": "b"}


def test_very_deep_nesting_is_cut_with_a_marker():
    data: list = []
    node = data
    for _ in range(500):
        node.append([])
        node = node[0]
    assert "[too deep]" in body(data)


def test_a_single_string_of_keys_is_one_key_not_its_letters():
    assert stored({"password": "p", "a": "x"}, keys="password") == {"password": REDACTED, "a": "x"}


def test_redact_returns_the_redacted_structure():
    assert redact({"token": "t", "n": 1}, redact_keys=["token"]) == {"token": REDACTED, "n": 1}


# -- credential secrets --------------------------------------------------------


def test_credential_values_are_scrubbed_anywhere_in_the_body():
    data = {"note": "key is sk_live_abcdef", "sk_live_abcdef": 1}
    assert "sk_live_abcdef" not in body(data, secrets=["sk_live_abcdef"])


def test_credential_values_are_scrubbed_from_plain_text():
    assert body("Bearer tok_123456 rejected", secrets=["tok_123456"]) == f"Bearer {REDACTED} rejected"


def test_url_encoded_credential_values_are_scrubbed_from_urls():
    secret = "p@ss/word+1"
    text = body(f"GET https://api.example.com/v1?key={quote(secret, safe='')}", secrets=[secret])
    assert quote(secret, safe="") not in text
    assert REDACTED in text


def test_json_escaped_credential_values_are_scrubbed():
    secret = 'pa"ss\\word'
    text = body({"echo": f"you sent {secret}"}, secrets=[secret])
    assert json.dumps(secret)[1:-1] not in text and secret not in text


def test_short_secrets_are_not_scrubbed():
    assert body("abc abc", secrets=["abc"]) == "abc abc"


def test_longer_secrets_are_replaced_before_their_substrings():
    assert scrub("token-abcdef", ["abcd", "token-abcdef"]) == REDACTED


def test_scrub_of_none_is_none():
    assert scrub(None, ["secret-value"]) is None


def test_scrub_hides_secrets_in_error_messages():
    message = "ConnectError: https://user:hunter22@api.example.com/ unreachable"
    assert (
        scrub(message, ["hunter22"]) == f"ConnectError: https://user:{REDACTED}@api.example.com/ unreachable"
    )


def test_credential_secrets_are_the_string_values_longest_first():
    creds = {"api_key": "sk_live_abcdef", "subdomain": "acme", "port": 8443, "sandbox": True, "pin": "123"}
    assert credential_secrets(creds) == ["sk_live_abcdef", "acme"]


def test_credential_secrets_include_nested_strings():
    creds = {"keys": ["first-secret", "second"], "oauth": {"access_token": "at-123456"}}
    assert credential_secrets(creds) == ["first-secret", "at-123456", "second"]


def test_credential_secrets_of_nothing_is_empty():
    assert credential_secrets({}) == []
    assert credential_secrets(None) == []


# -- size ----------------------------------------------------------------------


def test_a_body_within_the_limit_is_not_cut():
    assert body("x" * 100, max_bytes=100) == "x" * 100


def test_a_long_body_is_cut_with_a_marker_saying_how_much():
    assert body("x" * 150, max_bytes=100) == "x" * 100 + "…[truncated 50 bytes]"


def test_the_cut_never_splits_a_character():
    text = body("é" * 10, max_bytes=5)  # é is two bytes: 2 fit, the third would be split
    assert text == "éé…[truncated 16 bytes]"


def test_a_redacted_json_body_is_cut_after_redaction():
    text = body({"password": "p" * 1000, "x": "y"}, max_bytes=40)
    assert text.startswith('{"password": "[REDACTED]"') and "truncated" not in text


# -- property ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=12,
)
secret_values = st.text(min_size=4, max_size=16).filter(lambda s: s not in REDACTED)


@st.composite
def planted(draw):
    """Arbitrary JSON with secrets planted in values, keys, URLs and sentences."""
    secrets = draw(st.lists(secret_values, min_size=1, max_size=3))
    data = draw(json_values)
    for secret in secrets:
        where = draw(st.sampled_from(["value", "key", "url", "sentence", "list"]))
        planted_value = {
            "value": secret,
            "key": {secret: draw(json_values)},
            "url": f"https://api.example.com/x?token={quote(secret, safe='')}&n=1",
            "sentence": f"{draw(st.text(max_size=8))}{secret}{draw(st.text(max_size=8))}",
            "list": [draw(json_values), secret],
        }[where]
        data = {"data": data, draw(st.text(max_size=6)): planted_value}
    as_text = draw(st.booleans())
    return (json.dumps(data) if as_text else data), secrets


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=planted(), max_bytes=st.integers(min_value=1, max_value=4096))
def test_property_no_planted_secret_survives_and_the_size_is_capped(case, max_bytes):
    data, secrets = case
    text = body(data, secrets=secrets, max_bytes=max_bytes)
    assert isinstance(text, str) and not text.startswith("[unreadable body")
    for secret in secrets:
        assert secret not in text
        assert quote(secret, safe="") not in text
    assert len(text.encode("utf-8")) <= max_bytes + 64


@settings(max_examples=200, deadline=None)
@given(st.from_type(object) | st.binary() | st.text() | st.sets(st.integers()), st.integers(-5, 100))
def test_property_prepare_body_never_raises(data, max_bytes):
    text = body(data, max_bytes=max_bytes)
    assert text is None or isinstance(text, str)


def test_json_and_form_text_inside_string_values_is_redacted_too():
    """Regression: an upstream echoing the request in a string field stored its password."""
    keys = DEFAULTS["INTEGRATIONS_REDACT_KEYS"]
    body = {
        "echo": json.dumps({"password": "hunter22", "items": [{"token": "t0k3n"}], "n": 1}),
        "form": "client_secret=s3cr3t&grant=x",
        "plain": "a = b {not json",
        "kept": json.dumps({"n": 1}, indent=1),
    }
    stored = json.loads(prepare_body(body, redact_keys=keys, max_bytes=10_000))
    assert json.loads(stored["echo"]) == {"password": REDACTED, "items": [{"token": REDACTED}], "n": 1}
    assert stored["form"] == f"client_secret={REDACTED}&grant=x"
    assert stored["plain"] == body["plain"] and stored["kept"] == body["kept"]  # unchanged text stays as is


def test_httpx_request_log_lines_redact_query_values_under_redact_keys(caplog):
    import logging

    import httpx

    from flask_integrations.pipeline import http  # noqa: F401  (installs the filter)

    url = httpx.URL("https://api.example.com/x?api_key=k-123456&q=ok&Password=p-654321&user[password]=s-777")
    with caplog.at_level(logging.INFO, "httpx"):
        logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "GET", url, "HTTP/1.1", 200, "OK")
    assert "k-123456" not in caplog.text and "p-654321" not in caplog.text and "s-777" not in caplog.text
    assert "q=ok" in caplog.text
    assert "api_key=[REDACTED]" in caplog.text and "Password=[REDACTED]" in caplog.text
