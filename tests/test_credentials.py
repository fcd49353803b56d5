"""Encrypted credentials: typed access, validation, decryption errors, rotation, no leaks."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from flask_integrations import (
    CredentialsDecryptionError,
    Integration,
    ValidationError,
)
from tests.conftest import reset_tables
from tests.helpers.app import KEY, TicketCredentials, db, make_app

SECRET = "sk-live-123"


def raw_credentials(integration_id: int) -> str:
    table = db.metadata.tables["integrations"]
    return db.session.execute(sa.select(table.c.credentials).where(table.c.id == integration_id)).scalar_one()


def count_integrations() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(db.metadata.tables["integrations"]))


def test_stored_column_holds_no_plaintext(integration):
    raw = raw_credentials(integration.id)
    assert SECRET not in raw
    assert "acme" not in raw
    assert "api_key" not in raw
    assert Fernet(KEY).decrypt(raw.encode())  # a real Fernet token


def test_typed_read_only_credentials(integration, ext):
    fresh = ext.get(integration.id)
    db.session.expire_all()
    creds = fresh.credentials
    assert isinstance(creds, TicketCredentials)
    assert (creds.api_key, creds.subdomain, creds.timeout, creds.verify) == (SECRET, "acme", 10, True)
    with pytest.raises(AttributeError, match="read-only"):
        creds.api_key = "other"
    assert fresh.credentials_dict() == {"api_key": SECRET, "subdomain": "acme", "timeout": 10, "verify": True}


def test_dict_provider_credentials_are_read_only(ext, ctx):
    integration = ext.create("loose", "Loose", {"token": "abc", "n": 1})
    assert integration.credentials["token"] == "abc"
    with pytest.raises(TypeError, match="read-only"):
        integration.credentials["token"] = "x"
    assert "abc" not in repr(integration.credentials)


def test_invalid_credentials_name_every_field_and_write_nothing(ext, ctx):
    with pytest.raises(ValidationError) as info:
        ext.create(
            "tickets", "Bad", {"api_key": 12345, "verify": "yes", "region": "eu"}, metadata={"team": "t"}
        )
    assert info.value.errors == {
        "api_key": "expected str, got int",
        "subdomain": "required",
        "verify": "expected bool, got str",
        "region": "unknown field",
    }
    assert "12345" not in str(info.value)
    assert count_integrations() == 0


def test_invalid_metadata_writes_nothing(ext, ctx):
    with pytest.raises(ValidationError, match="metadata for provider 'tickets': team: required"):
        ext.create("tickets", "Bad", {"api_key": "k", "subdomain": "s"}, metadata={"tags": ["a"]})
    assert count_integrations() == 0


def test_update_merges_partial_credentials(integration, ext):
    integration.update(credentials={"timeout": 30})
    db.session.expire_all()
    assert ext.get(integration.id).credentials_dict() == {
        "api_key": SECRET,
        "subdomain": "acme",
        "timeout": 30,
        "verify": True,
    }


def test_update_replace(integration, ext):
    integration.update(credentials={"api_key": "new", "subdomain": "beta"}, replace=True)
    db.session.expire_all()
    assert ext.get(integration.id).credentials_dict()["timeout"] == 10  # default again
    assert ext.get(integration.id).credentials.api_key == "new"


def test_invalid_update_changes_nothing(integration, ext):
    before = raw_credentials(integration.id)
    with pytest.raises(ValidationError, match="timeout: expected int"):
        integration.update(credentials={"timeout": "soon"}, name="renamed")
    with pytest.raises(ValidationError, match="replace=True|subdomain: required"):
        integration.update(credentials={"api_key": "x"}, replace=True)
    db.session.rollback()
    db.session.expire_all()
    assert raw_credentials(integration.id) == before
    assert ext.get(integration.id).name == "Acme tickets"


def test_constructor_validates_on_flush(ctx, ext):
    good = Integration(
        provider="tickets",
        name="Ctor",
        credentials={"api_key": "k", "subdomain": "s"},
        metadata={"team": "t"},
    )
    db.session.add(good)
    db.session.commit()
    assert SECRET not in raw_credentials(good.id)
    assert good.credentials.api_key == "k"
    bad = Integration(provider="tickets", name="Bad", credentials={"api_key": "k"}, metadata={"team": "t"})
    db.session.add(bad)
    with pytest.raises(ValidationError, match="subdomain: required"):
        db.session.commit()
    db.session.rollback()
    assert count_integrations() == 1


def test_undecryptable_row_raises_naming_the_id(integration, ext):
    table = db.metadata.tables["integrations"]
    foreign = Fernet(Fernet.generate_key()).encrypt(b'{"api_key": "zzz"}').decode()
    db.session.execute(sa.update(table).where(table.c.id == integration.id).values(credentials=foreign))
    db.session.commit()
    db.session.expire_all()
    with pytest.raises(CredentialsDecryptionError) as info:
        ext.get(integration.id).credentials_dict()
    assert f"integration {integration.id}" in str(info.value)
    assert info.value.integration_id == integration.id
    assert "zzz" not in str(info.value) and foreign not in str(info.value)


def test_no_secret_in_repr_logs_or_errors(app, ext, ctx, caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    try:
        integration = ext.create(
            "tickets", "Leaky?", {"api_key": SECRET, "subdomain": "acme"}, metadata={"team": "t"}
        )
        integration.update(credentials={"timeout": 3})
        texts = [
            repr(integration),
            str(integration),
            repr(integration.credentials),
            str(integration.credentials),
        ]
        try:
            ext.create("tickets", "Bad", {"api_key": SECRET, "subdomain": 5})
        except ValidationError as exc:
            texts.append(str(exc))
            texts.append(repr(exc))
        db.session.rollback()
        texts.append(repr(app.extensions["integrations"].state_for(app)))
        texts.append(repr(app.extensions["integrations"].state_for(app).keyring))
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    assert "sk-live" in SECRET
    for text in [*texts, caplog.text]:
        assert SECRET not in text
    assert "INSERT INTO integrations" in caplog.text  # the SQL log was captured, secret-free


def test_rotate_key_reencrypts_with_the_first_key(database_url, tmp_path):
    old_app = make_app(database_url)
    with old_app.app_context():
        reset_tables()
        ext = old_app.extensions["integrations"]
        ids = [
            ext.create("tickets", f"T{n}", {"api_key": f"k{n}", "subdomain": "s"}, metadata={"team": "t"}).id
            for n in range(5)
        ]
        db.session.remove()
    new_key = Fernet.generate_key().decode()
    app = make_app(database_url, INTEGRATIONS_ENCRYPTION_KEYS=[new_key, KEY])
    runner = app.test_cli_runner()
    result = runner.invoke(args=["integrations", "rotate-key", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 5 integration(s)" in result.output
    with app.app_context():
        for n, integration_id in enumerate(ids):
            token = raw_credentials(integration_id)
            assert Fernet(new_key).decrypt(token.encode())  # readable with the new key alone
            assert db.session.get(Integration, integration_id).credentials.api_key == f"k{n}"
        db.session.remove()
    again = runner.invoke(args=["integrations", "rotate-key"])
    assert again.exit_code == 0, again.output


def test_rotate_key_lists_unreadable_rows_and_exits_1(integration, app):
    table = db.metadata.tables["integrations"]
    stranger = Fernet(Fernet.generate_key()).encrypt(b"{}").decode()
    other = Integration(
        provider="tickets",
        name="Other",
        credentials={"api_key": "k", "subdomain": "s"},
        metadata={"team": "t"},
    )
    db.session.add(other)
    db.session.commit()
    db.session.execute(sa.update(table).where(table.c.id == other.id).values(credentials=stranger))
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["integrations", "rotate-key"])
    assert result.exit_code == 1
    assert f"cannot be decrypted with any configured key: {other.id}" in result.output
    assert "Re-encrypted 1 integration(s)" in result.output


def test_a_call_with_undecryptable_credentials_raises_before_anything_is_sent(integration, ext):
    """Regression: the call used to go out, then its request row was lost (the row's scrubbing
    could not read the credentials)."""
    table = db.metadata.tables["integrations"]
    foreign = Fernet(Fernet.generate_key()).encrypt(b'{"api_key": "zzz"}').decode()
    db.session.execute(sa.update(table).where(table.c.id == integration.id).values(credentials=foreign))
    db.session.commit()
    db.session.expire_all()
    sent = []
    with pytest.raises(CredentialsDecryptionError, match=f"integration {integration.id}"):
        ext.get(integration.id).at("sdk").execute("POST", lambda: sent.append(1))
    assert sent == []
