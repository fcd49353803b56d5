"""Provider contracts: registration checks and credential/metadata validation."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import pytest

from flask_integrations import (
    ConfigurationError,
    CustomizesRetry,
    HandlesWebhooks,
    HasHealthCheck,
    IncrementalSync,
    OAuth2,
    Provider,
    RedactsRequestData,
    ScheduledSync,
    SupportsIdempotency,
    ValidationError,
)
from flask_integrations.providers import check_provider_class


@dataclasses.dataclass
class Typed:
    name: str
    count: int
    ratio: float
    enabled: bool
    note: Optional[str] = None  # noqa: UP045 - Optional is part of the documented contract
    tags: list[str] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class TypedProvider(Provider):
    credential_class = Typed
    metadata_class = Typed


def provider() -> TypedProvider:
    instance = TypedProvider()
    instance.key = "typed"
    return instance


def test_valid_credentials_get_defaults():
    result = provider().validate_credentials({"name": "a", "count": 1, "ratio": 2, "enabled": False})
    assert result == {
        "name": "a",
        "count": 1,
        "ratio": 2,
        "enabled": False,
        "note": None,
        "tags": [],
        "extra": {},
    }


def test_every_bad_field_is_named_without_values():
    with pytest.raises(ValidationError) as info:
        provider().validate_credentials(
            {"count": True, "ratio": "1.5", "enabled": 1, "tags": ["ok", 3], "surprise": "hunter2"}
        )
    errors = info.value.errors
    assert errors == {
        "name": "required",
        "count": "expected int, got bool",
        "ratio": "expected float, got str",
        "enabled": "expected bool, got int",
        "tags": "expected list[str], got list",
        "surprise": "unknown field",
    }
    assert "hunter2" not in str(info.value)
    assert "provider 'typed'" in str(info.value)


def test_optional_accepts_none_and_its_type():
    base = {"name": "a", "count": 1, "ratio": 1.0, "enabled": True}
    assert provider().validate_metadata({**base, "note": None})["note"] is None
    assert provider().validate_metadata({**base, "note": "x"})["note"] == "x"
    with pytest.raises(ValidationError, match="note: expected"):
        provider().validate_metadata({**base, "note": 5})


def test_no_class_accepts_any_dict_but_only_a_dict():
    loose = Provider()
    loose.key = "loose"
    assert loose.validate_credentials({"anything": [1, 2]}) == {"anything": [1, 2]}
    with pytest.raises(ValidationError, match="expected a dict"):
        loose.validate_credentials(["not", "a", "dict"])


def test_oauth_providers_accept_token_fields():
    class OAuthy(Provider, OAuth2):
        credential_class = dataclasses.make_dataclass("C", [("client_id", str)])

        def authorization_url(self, integration, redirect_uri, state, code_challenge):
            return "https://example.invalid/authorize"

        def exchange_code(self, integration, code, redirect_uri, code_verifier):
            return {}

        def refresh_token(self, integration):
            return {}

        def revoke_token(self, integration):
            return None

    check_provider_class("oauthy", OAuthy)
    instance = OAuthy()
    instance.key = "oauthy"
    result = instance.validate_credentials(
        {"client_id": "c", "access_token": "a", "refresh_token": None, "token_expires_at": 1700000000}
    )
    assert result["access_token"] == "a"
    with pytest.raises(ValidationError, match="access_token: expected"):
        instance.validate_credentials({"client_id": "c", "access_token": 5})


@pytest.mark.parametrize(
    ("mixin", "method"),
    [
        (ScheduledSync, "sync"),
        (IncrementalSync, "sync_incremental"),
        (HandlesWebhooks, "verify_webhook"),
        (HasHealthCheck, "health_check"),
        (OAuth2, "authorization_url"),
    ],
)
def test_a_declared_capability_must_be_implemented(mixin, method):
    cls = type("Partial", (Provider, mixin), {})
    with pytest.raises(
        ConfigurationError, match=rf"declares {mixin.__name__} but does not define .*{method}"
    ):
        check_provider_class("partial", cls)


def test_marker_and_optional_mixins_register_as_they_are():
    cls = type("Plain", (Provider, SupportsIdempotency, RedactsRequestData, CustomizesRetry), {})
    check_provider_class("plain", cls)
    instance = cls()
    assert instance.is_retryable(RuntimeError()) is None
    assert instance.retry_delay(RuntimeError(), 1, 500) is None
    assert tuple(instance.sensitive_request_fields) == ()


def test_incremental_sync_defaults():
    class Inc(Provider, IncrementalSync):
        sync_interval = 5
        rate_limit = 83

        def sync_incremental(self, integration, session):
            return None

    check_provider_class("inc", Inc)
    assert Inc().reduce_checkpoints(["2024-01-02", None, "2024-01-03", "2024-01-01"]) == "2024-01-03"
    assert Inc().reduce_checkpoints([None]) is None


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"credential_class": dict}, "credential_class must be a dataclass"),
        ({"credential_class": dataclasses.make_dataclass("S", [("when", set)])}, "cannot be validated"),
        ({"sync_interval": 0}, "sync_interval must be a positive integer"),
        ({"rate_limit": True}, "rate_limit must be a positive integer"),
        ({"base_url": "ftp://x"}, "base_url must be an http(s) URL"),
    ],
)
def test_bad_provider_attributes(attrs, expected):
    cls = type("Bad", (Provider,), attrs)
    with pytest.raises(ConfigurationError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        check_provider_class("bad", cls)


def test_not_a_provider():
    with pytest.raises(ConfigurationError, match="is not a subclass of flask_integrations.Provider"):
        check_provider_class("x", object)
