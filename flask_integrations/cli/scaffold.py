"""What `flask integrations make-provider` writes: a provider module and its test module.

The provider is written with the provider kit (SPEC 13): declarations (`auth`,
`base_url`, `health_check_endpoint`, `webhook_verifier`, the webhook keys) and
handler methods whose bodies work as written (they log what arrives) with a TODO
to store it in the app's tables. The test module runs as written with pytest
against fakes: its own small app on SQLite, the opt-in pytest plugin, and one
or two tests per capability. Both are laid out as `ruff format` would lay them
out at its default line length (88) and pass `ruff check`.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..providers import RESERVED_KEYS

NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: The `--sync` styles: ScheduledSync.sync() (every record each run) or
#: IncrementalSync.sync_incremental() (what changed since the cursor).
SYNC_STYLES = ("full", "incremental")

#: The line length of the generated code (ruff's and black's default).
LINE_LENGTH = 88

#: Credential values of the generated tests.
API_KEY = "test-api-key"
ACCESS_TOKEN = "test-access-token"


@dataclass(frozen=True)
class Capabilities:
    sync: str | None = None  # None, "full" or "incremental"
    webhooks: bool = False
    oauth: bool = False
    health_check: bool = False

    def __post_init__(self) -> None:
        if self.sync not in (None, *SYNC_STYLES):
            raise ValueError(f"sync must be None or one of {SYNC_STYLES}, not {self.sync!r}")


def check_name(name: str) -> str | None:
    """Why `name` cannot be a provider module and key, or None when it can."""
    if not NAME.match(name):
        return f"Provider name {name!r} must match ^[a-z][a-z0-9_]*$ (e.g. 'acme' or 'acme_crm')."
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"Provider name {name!r} is a Python keyword; choose another."
    if name in RESERVED_KEYS:
        return f"Provider name {name!r} is reserved for the package's routes; choose another."
    return None


def class_name(name: str) -> str:
    """'acme_crm' -> 'AcmeCrm'. The generated modules import no capitalised name, so no class
    name can shadow an import."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def handler_names(capabilities: Capabilities) -> list[str]:
    """The handler methods of the generated provider: `@on_sync_item`, then `@on_webhook`."""
    return ["store_item"] * bool(capabilities.sync) + ["item_changed"] * capabilities.webhooks


# -- the provider module -----------------------------------------------------------------------


def render(
    name: str, capabilities: Capabilities, module: str | None = None, test_path: str | None = None
) -> str:
    """The source of a new provider module for provider key `name`, importable as `module`;
    `test_path` is where its tests are (named in the docstring)."""
    c = capabilities
    stdlib = ["import dataclasses"]
    if c.sync or c.webhooks:
        stdlib.append("import logging")
    if c.oauth:
        stdlib.append("from urllib.parse import urlencode")
    kit = [
        part for part, on in (("auth", not c.oauth), ("pagination", c.sync), ("webhooks", c.webhooks)) if on
    ]
    third_party = ["import flask_integrations as fi", *(["import httpx"] * c.oauth)]
    if kit:
        third_party.append("from flask_integrations import " + ", ".join(kit))
    docstring = [
        '"""The {{title}} provider.',
        "",
        "Register it in the app's config:",
        "",
        *_wrap(
            "    INTEGRATIONS_PROVIDERS = {",
            ['"{{name}}": "{{module}}:{{cls}}"'],
            "}",
            indent=4,
            measure=lambda text: len(_fill(text, name, module or "<module>")),
        ),
    ]
    if test_path:
        docstring += ["", f"Its tests, against fakes: {test_path}"]
    head = "\n".join([*docstring, '"""', "", *stdlib, "", *third_party])
    if c.sync or c.webhooks:
        head += "\n\nlogger = logging.getLogger(__name__)"
    parts = [head, _credentials(c), _provider_class(name, c)]
    return _fill("\n\n\n".join(parts) + "\n", name, module or "<module>")


def _credentials(c: Capabilities) -> str:
    fields = ["client_id: str", "client_secret: str"] if c.oauth else ["api_key: str"]
    if c.webhooks:
        fields.append("webhook_secret: str  # the key {{title}} signs its webhooks with")
    if c.oauth:
        fields.append("# The OAuth flow adds access_token, refresh_token and token_expires_at.")
    fields.append("# TODO: add the other fields an integration needs (str, int, bool, ...).")
    return "\n".join(
        [
            "@dataclasses.dataclass",
            "class {{cls}}Credentials:",
            '    """What each integration stores, encrypted, to call the API."""',
            "",
            *("    " + field for field in fields),
        ]
    )


def _provider_class(name: str, c: Capabilities) -> str:
    sync = {"full": "fi.ScheduledSync", "incremental": "fi.IncrementalSync", None: None}[c.sync]
    wanted = [
        ("fi.Provider", True),
        (sync, c.sync),
        ("fi.HandlesWebhooks", c.webhooks),
        ("fi.OAuth2", c.oauth),
        ("fi.HasHealthCheck", c.health_check),
    ]
    bases = [base for base, on in wanted if on]
    lines = [
        *_wrap("class {{cls}}(", bases, "):", indent=0, measure=lambda text: len(_fill(text, name, ""))),
        '    name = "{{title}}"',
        "    credential_class = {{cls}}Credentials",
        '    base_url = "https://api.{{host}}.example/v1"  # TODO: the real API',
    ]
    if not c.oauth:
        lines.append('    auth = auth.Bearer("api_key")')
    if c.health_check:
        lines.append('    health_check_endpoint = "/me"')
    if c.sync:
        lines.append("    sync_interval = 60  # minutes between scheduled syncs")
    if c.webhooks:
        lines += [
            "    webhook_verifier = webhooks.Hmac(  # TODO: the provider's headers",
            '        "X-Signature", secret="webhook_secret", timestamp_header="X-Timestamp"',
            "    )",
            '    webhook_event_key = "type"',
            '    webhook_delivery_key = "id"  # in the signed body: redeliveries are dropped',
        ]
    if c.oauth:
        lines += [
            "    # TODO: the addresses of the OAuth server, and the scopes the app needs.",
            '    authorize_url = "https://{{host}}.example/oauth/authorize"',
            '    token_url = "https://{{host}}.example/oauth/token"',
            '    revoke_url = "https://{{host}}.example/oauth/revoke"',
            '    scope = "read"',
        ]
    methods = []
    if c.sync == "full":
        methods.append(_SYNC_FULL)
    elif c.sync == "incremental":
        methods.append(_SYNC_INCREMENTAL)
    if c.sync:
        methods.append(_STORE_ITEM)
    if c.webhooks:
        methods.append(_WEBHOOK_AFTER_SYNC if c.sync else _WEBHOOK)
    if c.oauth:
        methods.append(_OAUTH)
    return "\n\n".join(["\n".join(lines), *methods])


_SYNC_FULL = '''\
    def sync(self, integration, session):
        """Every record, page by page: one session.dispatch(...) per item."""
        listing = integration.at("items.list")
        pages = pagination.Cursor("next", param="after")
        for item in listing.paginate("/items", items="items", pages=pages):
            session.dispatch("item", item, external_id=item["id"])'''

_SYNC_INCREMENTAL = """\
    def sync_incremental(self, integration, session):
        listing = integration.at("items.list").with_data({"since": session.cursor})
        pages = pagination.Cursor("next", param="after")
        for item in listing.paginate("/items", items="items", pages=pages):
            updated = item["updated_at"]  # the next run's session.cursor
            session.dispatch("item", item, checkpoint=updated, external_id=item["id"])"""

_STORE_ITEM = """\
    @fi.on_sync_item("item")
    def store_item(self, integration, item):
        # TODO: store the item in your app's tables (raise to have it retried).
        logger.info("received item %s (integration %s)", item["id"], integration.id)"""

_WEBHOOK_AFTER_SYNC = """\
    @fi.on_webhook("item.created", "item.updated")
    def item_changed(self, integration, webhook):
        self.store_item(integration, webhook.json()["data"])"""

_WEBHOOK = """\
    @fi.on_webhook("item.created", "item.updated")
    def item_changed(self, integration, webhook):
        item = webhook.json()["data"]
        # TODO: store the item in your app's tables (raise to have it retried).
        logger.info("received item %s (integration %s)", item["id"], integration.id)"""

_OAUTH = '''\
    def authorization_url(self, integration, redirect_uri, state, code_challenge):
        query = {
            "response_type": "code",
            "client_id": integration.credentials.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.scope,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.authorize_url}?{urlencode(query)}"

    def exchange_code(self, integration, code, redirect_uri, code_verifier):
        return self._oauth_post(
            integration,
            self.token_url,
            grant_type="authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
        )

    def refresh_token(self, integration):
        token = integration.credentials_dict()["refresh_token"]
        return self._oauth_post(
            integration, self.token_url, grant_type="refresh_token", refresh_token=token
        )

    def revoke_token(self, integration):
        tokens = integration.credentials_dict()
        token = tokens.get("refresh_token") or tokens.get("access_token")
        self._oauth_post(integration, self.revoke_url, token=token)

    def _oauth_post(self, integration, url, **form):
        """POST `form` with the client's id and secret to the OAuth server (plain httpx:
        integration.at(...) would send the old access token along)."""
        client = integration.credentials
        form.update(client_id=client.client_id, client_secret=client.client_secret)
        response = httpx.post(url, data=form, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else {}'''


# -- the test module ---------------------------------------------------------------------------


def render_test(name: str, capabilities: Capabilities, module: str | None) -> str:
    """The source of the test module of the provider module `render` writes.

    It names the provider by `module` (or `name` when the module has no import path from the
    current directory) in INTEGRATIONS_PROVIDERS, as the app's config does.
    """
    c = capabilities
    stdlib = ["import logging"] * bool(c.sync or c.webhooks)
    stdlib += ["from urllib.parse import parse_qs, urlsplit"] * c.oauth
    testing = ["Fake"] * c.health_check + ["send_webhook"] * c.webhooks
    third_party = [
        "import flask_integrations as fi",
        *(["import httpx"] * c.oauth),
        "import pytest",
        "from cryptography.fernet import Fernet",
        "from flask import Flask",
        *(["from flask_integrations.testing import " + ", ".join(testing)] if testing else []),
        "from flask_sqlalchemy import SQLAlchemy",
    ]
    if c.oauth:
        credentials = {"client_id": "test-client-id", "client_secret": "test-client-secret"}
    else:
        credentials = {"api_key": API_KEY}
    if c.webhooks:
        credentials["webhook_secret"] = "test-webhook-secret"
    if c.oauth:
        credentials["access_token"] = ACCESS_TOKEN  # as if connected
    head = "\n".join(
        [
            '"""Tests of the {{title}} provider, against fakes: nothing here calls out.',
            "",
            "Run them with `python -m pytest` from the project's root. They use an app of their",
            "own (the `app` fixture): replace it with your app factory to test the provider",
            "inside your app.",
            '"""',
            "",
            *stdlib,
            *([""] if stdlib else []),
            *third_party,
            "",
            'pytest_plugins = ["flask_integrations.testing.pytest_plugin"]',
            "",
            'PROVIDER = "{{name}}"',
            'PROVIDER_CLASS = "{{module}}:{{cls}}"',
            *_dict_lines("CREDENTIALS = {", credentials, "}", indent=0),
            *([_TEST_WEBHOOK_EVENT] if c.webhooks else []),
            "",
            "db = SQLAlchemy()",
        ]
    )
    parts = [head, _TEST_FIXTURES]
    if c.oauth:
        parts.append(_TEST_TOKEN_ENDPOINT)
    calls = _TEST_HEALTH_CHECK if c.health_check else _TEST_CALLS
    bearer = f"Bearer {ACCESS_TOKEN if c.oauth else API_KEY}"
    parts.append(
        calls.replace("{{bearer}}", bearer).replace("{{what}}", "access_token" if c.oauth else "api_key")
    )
    if c.sync:
        parts.append(_TEST_SYNC)
    if c.sync == "incremental":
        parts.append(_TEST_SYNC_CURSOR)
    if c.webhooks:
        parts.append(_TEST_WEBHOOKS)
    if c.oauth:
        parts.append(_TEST_OAUTH)
    source = "\n\n\n".join(parts) + "\n"
    return _fill(source, name, module or name)


def _dict_lines(head: str, values: dict[str, str], tail: str, indent: int) -> list[str]:
    items = [f'"{key}": "{value}"' for key, value in values.items()]
    return _wrap(head, items, tail, indent=indent)


_TEST_FIXTURES = '''\
@pytest.fixture
def app(tmp_path):
    app = Flask(__name__)
    app.config.update(
        TESTING=True,
        SECRET_KEY="test-secret-key",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'test.db'}",
        INTEGRATIONS_ENCRYPTION_KEYS=[Fernet.generate_key().decode()],
        INTEGRATIONS_PROVIDERS={PROVIDER: PROVIDER_CLASS},
    )
    db.init_app(app)
    fi.Integrations(app, db=db)
    return app


@pytest.fixture
def integrations(integrations_app):
    """The extension; `integrations_app` (of the plugin) pushes an app context."""
    return integrations_app.extensions["integrations"]


@pytest.fixture
def integration(integrations, integrations_db):
    """An integration of the provider (in place of the plugin's `integration` factory),
    in tables `integrations_db` creates."""
    return integrations.create(PROVIDER, "Test {{title}}", CREDENTIALS)'''

_TEST_TOKEN_ENDPOINT = '''\
@pytest.fixture
def token_endpoint(monkeypatch):
    """Stands in for the OAuth server: records each form posted, answers new tokens."""
    forms = []

    def post(url, data, **kwargs):
        forms.append(dict(data, url=url))
        tokens = {
            "access_token": "new-access-token",
            "refresh_token": "new-refresh-token",
        }
        return httpx.Response(200, json=tokens, request=httpx.Request("POST", url))

    monkeypatch.setattr(httpx, "post", post)
    return forms'''

_TEST_HEALTH_CHECK = """\
def test_health_check_gets_me_with_the_{{what}}(integrations, integration):
    provider = integration.provider_instance
    with integrations.fake({"GET:/me": {"id": "me"}}) as fake:
        assert provider.health_check(integration) is True
    assert fake.calls[-1].headers["Authorization"] == "{{bearer}}"
    with integrations.fake({"GET:/me": Fake.response(401)}):
        assert provider.health_check(integration) is False"""

_TEST_CALLS = '''\
def test_calls_carry_the_{{what}}(integrations, integration):
    # TODO: test the calls your app makes through integration.at(...) like this one.
    with integrations.fake({"GET:/me": {"id": "me"}}) as fake:
        assert integration.at("me").get("/me") == {"id": "me"}
    assert fake.calls[-1].headers["Authorization"] == "{{bearer}}"'''

_TEST_SYNC = """\
def test_sync_hands_every_item_of_every_page_to_the_handler(
    integrations, integrations_db, integration, caplog
):
    caplog.set_level(logging.INFO)
    pages = fi.ResponseSequence(
        {"items": [{"id": "1001", "updated_at": "2026-01-01T00:00:00Z"}], "next": "p2"},
        {"items": [{"id": "1002", "updated_at": "2026-01-02T00:00:00Z"}], "next": None},
    )
    with integrations.fake({"GET:items.list": pages}) as fake:
        run = integration.sync_now()  # in tests, the items are handled at once
    assert fake.calls[1].data["after"] == "p2"
    integrations_db.session.refresh(run)
    assert run.status == "success"
    # TODO: assert on what store_item() stored in your app's tables instead.
    assert "received item 1001" in caplog.text
    assert "received item 1002" in caplog.text"""

_TEST_SYNC_CURSOR = '''\
def test_the_next_sync_asks_for_what_changed_since_the_last_one(
    integrations, integrations_db, integration
):
    item = {"id": "1001", "updated_at": "2026-01-01T00:00:00Z"}
    with integrations.fake({"GET:items.list": {"items": [item], "next": None}}):
        integration.sync_now()
    integrations_db.session.refresh(integration)
    assert integration.sync_cursor == "2026-01-01T00:00:00Z"
    with integrations.fake({"GET:items.list": {"items": [], "next": None}}) as fake:
        integration.sync_now()
    assert fake.calls[0].data["since"] == "2026-01-01T00:00:00Z"'''

_TEST_WEBHOOK_EVENT = """\
EVENT = {"id": "delivery-1", "type": "item.updated", "data": {"id": "1003"}}"""

_TEST_WEBHOOKS = """\
def test_a_signed_webhook_reaches_the_handler_once(app, integration, caplog):
    caplog.set_level(logging.INFO)
    client = app.test_client()
    answer = send_webhook(client, PROVIDER, EVENT, integration=integration, sign=True)
    assert answer.status_code == 202
    # TODO: assert on what item_changed() stored in your app's tables instead.
    assert "received item 1003" in caplog.text
    again = send_webhook(client, PROVIDER, EVENT, integration=integration, sign=True)
    assert again.json["status"] == "duplicate"  # the same delivery id


def test_an_unsigned_webhook_is_refused(app, integration):
    client = app.test_client()
    answer = send_webhook(client, PROVIDER, EVENT, integration=integration)
    assert answer.status_code == 401"""

_TEST_OAUTH = """\
def test_connecting_exchanges_the_code_for_tokens(app, integration, token_endpoint):
    client = app.test_client()
    authorize = client.get(f"/integrations/{integration.id}/oauth/authorize")
    assert authorize.status_code == 302
    query = parse_qs(urlsplit(authorize.location).query)
    assert query["client_id"] == ["test-client-id"]
    assert query["code_challenge_method"] == ["S256"]
    state = query["state"][0]
    callback = client.get(f"/integrations/oauth/callback?state={state}&code=test-code")
    assert callback.status_code == 302
    assert token_endpoint[0]["grant_type"] == "authorization_code"
    assert token_endpoint[0]["code"] == "test-code"
    assert token_endpoint[0]["code_verifier"]
    assert integration.credentials_dict()["access_token"] == "new-access-token"


def test_an_expiring_token_is_refreshed(integration, token_endpoint):
    tokens = {"refresh_token": "test-refresh-token", "token_expires_at": 0}
    integration.update(credentials=tokens)
    assert integration.access_token() == "new-access-token"
    assert token_endpoint[0]["grant_type"] == "refresh_token"
    assert token_endpoint[0]["refresh_token"] == "test-refresh-token"


def test_disconnecting_revokes_the_token(integration, token_endpoint):
    integration.provider_instance.revoke_token(integration)
    assert token_endpoint[0]["token"] == "{{access_token}}"
    assert token_endpoint[0]["url"] == integration.provider_instance.revoke_url""".replace(
    "{{access_token}}", ACCESS_TOKEN
)


# -- layout ------------------------------------------------------------------------------------


def _names(name: str) -> dict[str, str]:
    parts = [part for part in name.split("_") if part]
    return {
        "cls": class_name(name),
        "title": " ".join(part[:1].upper() + part[1:] for part in parts),
        "host": "-".join(parts),
        "name": name,
    }


def _fill(text: str, name: str, module: str) -> str:
    values = {**_names(name), "module": module}
    return re.sub(r"\{\{(cls|title|host|name|module)\}\}", lambda m: values[m.group(1)], text)


def _wrap(
    head: str, items: list[str], tail: str, indent: int, measure: Callable[[str], int] = len
) -> list[str]:
    """`head` + items + `tail` as `ruff format` lays a bracketed list out: on one line when it
    fits, else the items on one indented line, else one item a line with a trailing comma.
    `measure` is the length of a line as written (with the provider's names filled in)."""
    joined, inner = ", ".join(items), " " * (indent + 4)
    if measure(head + joined + tail) <= LINE_LENGTH:
        return [head + joined + tail]
    if measure(inner + joined) <= LINE_LENGTH:
        return [head, inner + joined, " " * indent + tail]
    return [head, *(inner + item + "," for item in items), " " * indent + tail]
