"""The provider module `flask integrations make-provider` writes.

The generated class passes `check_provider_class` as written: each chosen
capability's required methods are defined, as stubs that raise
NotImplementedError with a TODO for the user to fill in.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

from ..providers import RESERVED_KEYS

NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: Names the generated module imports; a class of the same name gets a "Provider" suffix.
_IMPORTED = frozenset(
    {"Any", "HandlesWebhooks", "HasHealthCheck", "OAuth2", "Provider", "ScheduledSync", "dataclasses"}
)


@dataclass(frozen=True)
class Capabilities:
    sync: bool = False
    webhooks: bool = False
    oauth: bool = False
    health_check: bool = False


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
    """'acme_crm' -> 'AcmeCrm' (with a 'Provider' suffix where it would shadow an import)."""
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    return camel + "Provider" if camel in _IMPORTED or camel + "Credentials" in _IMPORTED else camel


def render(name: str, capabilities: Capabilities, module: str | None = None) -> str:
    """The source of a new provider module for provider key `name`, importable as `module`."""
    cls = class_name(name)
    mixins = ["Provider"]
    if capabilities.sync:
        mixins.append("ScheduledSync")
    if capabilities.webhooks:
        mixins.append("HandlesWebhooks")
    if capabilities.oauth:
        mixins.append("OAuth2")
    if capabilities.health_check:
        mixins.append("HasHealthCheck")
    parts = [_header(sorted(mixins)), _credentials(capabilities.oauth)]
    body = [_class_attributes(mixins, capabilities)]
    if not capabilities.oauth:
        body.append(_PREPARE_REQUEST)
    if capabilities.sync:
        body.append(_SYNC)
    if capabilities.webhooks:
        body.append(_WEBHOOKS)
    if capabilities.oauth:
        body.append(_OAUTH)
    if capabilities.health_check:
        body.append(_HEALTH_CHECK)
    parts.append("\n\n".join(body))
    source = "\n\n\n".join(parts) + "\n"
    title = name.replace("_", " ").title().strip()
    source = source.replace("{module}", module or name).replace("{title}", title)
    return source.replace("{cls}", cls).replace("{name}", name)


def _header(mixins: list[str]) -> str:
    return (
        '"""The {name} provider.\n\n'
        "Register it in the app's config:\n\n"
        '    INTEGRATIONS_PROVIDERS = {"{name}": "{module}:{cls}"}\n'
        '"""\n\n'
        "import dataclasses\n"
        "from typing import Any\n\n"
        "from flask_integrations import " + ", ".join(mixins)
    )


def _credentials(oauth: bool) -> str:
    if oauth:
        fields = (
            "    client_id: str\n"
            "    client_secret: str\n"
            "    # access_token, refresh_token and token_expires_at are added by the OAuth flow."
        )
    else:
        fields = (
            "    api_key: str\n    # TODO: add the other fields an integration needs (str, int, bool, ...)."
        )
    return (
        "@dataclasses.dataclass\n"
        "class {cls}Credentials:\n"
        '    """What each integration stores, encrypted, to call the API."""\n\n' + fields
    )


def _class_attributes(mixins: list[str], capabilities: Capabilities) -> str:
    lines = [
        "class {cls}(" + ", ".join(mixins) + "):",
        '    name = "{title}"',
        "    credential_class = {cls}Credentials",
        "    metadata_class = None  # or a dataclass, to validate integration.metadata",
        '    base_url = None  # TODO: e.g. "https://api.example.com/v1"',
        "    rate_limit = None  # requests per minute across all processes, or None",
    ]
    if capabilities.sync:
        lines.append("    sync_interval = 60  # minutes between scheduled syncs")
    if capabilities.oauth:
        lines.append("    refresh_threshold = 300  # refresh tokens expiring within this many seconds")
    return "\n".join(lines)


_PREPARE_REQUEST = '''\
    def prepare_request(self, integration: Any, request: Any) -> None:
        """Authenticate an outgoing URL call (an httpx.Request)."""
        request.headers["Authorization"] = f"Bearer {integration.credentials.api_key}"'''

_SYNC = '''\
    def sync(self, integration: Any, session: Any) -> None:
        """Enumerate what changed upstream; one session.dispatch(...) per item."""
        raise NotImplementedError(
            "TODO: {cls}.sync: fetch items and call "
            "session.dispatch('{name}.item', payload, external_id=...)"
        )'''

_WEBHOOKS = '''\
    def verify_webhook(self, integration: Any, request: Any) -> bool:
        """True when the request really comes from the provider (check its signature)."""
        raise NotImplementedError(
            "TODO: {cls}.verify_webhook: check the signature header"
        )

    def webhook_event(self, request: Any) -> str | None:
        return None  # TODO: the event type, e.g. request.headers.get("X-Event")

    def webhook_delivery_id(self, request: Any) -> str | None:
        return None  # TODO: the delivery id, to deduplicate redeliveries

    def webhook_handlers(self) -> dict[str, Any]:
        return {}  # TODO: {"event.type": handler(integration, webhook)}'''

_OAUTH = """\
    def authorization_url(
        self, integration: Any, redirect_uri: str, state: str, code_challenge: str
    ) -> str:
        raise NotImplementedError(
            "TODO: {cls}.authorization_url: build the provider's authorize URL"
        )

    def exchange_code(
        self, integration: Any, code: str, redirect_uri: str, code_verifier: str
    ) -> dict[str, Any]:
        raise NotImplementedError(
            "TODO: {cls}.exchange_code: trade the code for tokens"
        )

    def refresh_token(self, integration: Any) -> dict[str, Any]:
        raise NotImplementedError(
            "TODO: {cls}.refresh_token: get a new access token"
        )

    def revoke_token(self, integration: Any) -> None:
        raise NotImplementedError(
            "TODO: {cls}.revoke_token: revoke the tokens upstream"
        )"""

_HEALTH_CHECK = '''\
    def health_check(self, integration: Any) -> bool:
        """True when the credentials work (used by `flask integrations install` and `test`)."""
        raise NotImplementedError(
            "TODO: {cls}.health_check: call a cheap endpoint and return True if it works"
        )'''
