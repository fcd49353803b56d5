"""The state and PKCE verifier of one authorization, from authorize to callback.

Where things live, and why:

- The pending authorization (integration id, PKCE verifier, redirect URI,
  expiry) is encrypted with the credential keyring and kept in the Flask
  session of the browser that started it, under a hash of the state. The
  session is shared by every web process (it travels with the browser), and a
  state that arrives with another browser's session finds nothing there: the
  state is bound to the session without any server-side lookup.
- Single use is decided on the server by a ticket that exactly one callback
  can take, whatever the number of processes: a Redis key deleted with ``DEL``
  (whose count says who took it) in Redis mode; in the embedded mode a row in
  ``{p}_idempotency_keys`` deleted with a ``DELETE`` whose row count says the
  same. A second callback with the same state, even one racing the first or
  replaying an old copy of the cookie, finds no ticket and is refused.
- Expiry is checked twice: in the encrypted payload, and by the ticket's TTL
  (Redis) or creation time (database).

The state and the verifier are random (`secrets`), the challenge is S256:
base64url(sha256(verifier)) without padding.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import session

from ..clock import utcnow
from ..db.models import Integration
from ..errors import CredentialsDecryptionError
from ..state import AppState
from . import tokens

SESSION_KEY = "_integrations_oauth"
#: Pending authorizations one browser session keeps (the oldest is dropped past this).
MAX_PENDING = 4
#: Prefix of the state tickets in `{p}_idempotency_keys` (reserved: do not use it for calls).
TICKET_PREFIX = "flask-integrations:oauth-state:"


class StateRejected(Exception):
    """The callback's state is missing, unknown, used, expired or from another session."""


@dataclass(frozen=True)
class Pending:
    integration_id: int
    code_verifier: str
    redirect_uri: str

    def __repr__(self) -> str:
        return f"<Pending authorization of integration {self.integration_id}>"


def code_verifier() -> str:
    """A PKCE verifier: 86 characters of the unreserved alphabet (RFC 7636 allows 43 to 128)."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """The S256 challenge of `verifier`: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def begin(state: AppState, integration: Integration, redirect_uri: str) -> tuple[str, str]:
    """Start an authorization: returns (state, code_challenge) for the provider's URL."""
    ttl = int(state.setting("OAUTH")["state_ttl"])
    value = secrets.token_urlsafe(32)
    verifier = code_verifier()
    digest = _digest(value)
    payload = {"i": integration.id, "v": verifier, "r": redirect_uri, "e": tokens.clock() + ttl}
    _issue_ticket(state, digest, integration.id, ttl)
    pending = {k: v for k, v in _pending(state).items() if v[1] > tokens.clock()}
    pending[digest] = [state.keyring.encrypt(payload), payload["e"]]
    session[SESSION_KEY] = dict(sorted(pending.items(), key=lambda item: item[1][1])[-MAX_PENDING:])
    return value, code_challenge(verifier)


def take(state: AppState, value: str | None) -> Pending:
    """The pending authorization of the state `value`, which can never be taken again."""
    if not value:
        raise StateRejected("The callback has no state parameter; start the connection again.")
    digest = _digest(value)
    pending = _pending(state)
    entry = pending.get(digest)
    if entry is None:
        raise StateRejected(
            "This authorization is unknown, was already used, or was started in another browser "
            "session; start the connection again."
        )
    pending.pop(digest)
    session[SESSION_KEY] = pending
    try:
        payload = state.keyring.decrypt(entry[0], None)
    except CredentialsDecryptionError:
        raise StateRejected("This authorization can no longer be read; start the connection again.") from None
    if payload.get("e", 0) <= tokens.clock():
        raise StateRejected("This authorization has expired; start the connection again.")
    if not _take_ticket(state, digest, int(payload["i"])):
        raise StateRejected("This authorization was already used or has expired; start the connection again.")
    return Pending(int(payload["i"]), str(payload["v"]), str(payload["r"]))


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def _pending(state: AppState) -> dict[str, Any]:
    stored = session.get(SESSION_KEY)
    if not isinstance(stored, dict):
        return {}
    return {
        k: v
        for k, v in stored.items()
        if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int | float)
    }


# -- tickets: single use across processes --------------------------------------------------------


def _issue_ticket(state: AppState, digest: str, integration_id: int, ttl: int) -> None:
    if state.setting("REDIS_URL"):
        state.store.set(f"oauth-state:{digest}", str(integration_id), ttl)
        return
    table = state.tables["idempotency_keys"]
    now = utcnow()
    db_session = state.db.session
    db_session.execute(
        sa.delete(table).where(
            table.c.key.startswith(TICKET_PREFIX, autoescape=True),
            table.c.created_at < now - timedelta(seconds=ttl),
        )
    )
    db_session.execute(
        sa.insert(table).values(
            integration_id=integration_id, key=TICKET_PREFIX + digest, created_at=now, updated_at=now
        )
    )
    db_session.commit()


def _take_ticket(state: AppState, digest: str, integration_id: int) -> bool:
    if state.setting("REDIS_URL"):
        return state.store.delete(f"oauth-state:{digest}") == 1
    table = state.tables["idempotency_keys"]
    ttl = int(state.setting("OAUTH")["state_ttl"])
    db_session = state.db.session
    taken = db_session.execute(
        sa.delete(table).where(
            table.c.integration_id == integration_id,
            table.c.key == TICKET_PREFIX + digest,
            table.c.created_at >= utcnow() - timedelta(seconds=ttl),
        )
    )
    db_session.commit()
    return taken.rowcount == 1
