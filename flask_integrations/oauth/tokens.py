"""OAuth2 tokens: when they expire, refreshing them once across processes, merging answers.

A refresh takes the integration's refresh lock (see `locks`), re-reads the
credentials from the database on a connection of its own (another process may
have refreshed while this one waited), asks the provider only if the stored
token still needs it, and commits the new tokens on that connection at once:
a rotated refresh token must never be lost to the caller's rollback. The
caller's in-memory `Integration` then takes the stored value, without becoming
dirty in the caller's session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from ..clock import utcnow
from ..db.models import Integration
from ..db.transactions import caller_holds_sqlite_write_lock, run_detached, shares_caller_connection
from ..errors import IntegrationsError
from ..parsing import parse_number
from ..providers import OAuth2
from ..redaction import failure_kind
from ..state import AppState, current_state
from . import locks

logger = logging.getLogger("flask_integrations")

#: The credential fields the OAuth flow owns.
TOKEN_FIELDS = ("access_token", "refresh_token", "token_expires_at")

#: What time it is, in unix seconds; tests may replace it.
clock: Callable[[], float] = time.time

# Integrations this context is refreshing: a provider whose refresh_token() goes through
# integration.at(...) must not try to refresh again under its own lock.
_refreshing: ContextVar[frozenset[int]] = ContextVar("flask_integrations_refreshing", default=frozenset())

REFRESHED, CURRENT, IMPOSSIBLE = "refreshed", "current", "impossible"
_WRITE_TRIES = 5


# -- reading tokens -------------------------------------------------------------------------------


def expires_at(credentials: Mapping[str, Any]) -> float | None:
    """`token_expires_at` as unix seconds (a number, a numeric string or an ISO 8601 string)."""
    value = credentials.get("token_expires_at")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip():
        number = parse_number(value)
        if number is not None:
            return number
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.timestamp() if parsed.tzinfo else parsed.replace(tzinfo=UTC).timestamp()
    return None


def expires_within(credentials: Mapping[str, Any], threshold: float) -> bool:
    """True when the expiry is known and within `threshold` seconds (or passed)."""
    expiry = expires_at(credentials)
    return expiry is not None and expiry - clock() <= threshold


def needs_refresh(credentials: Mapping[str, Any], threshold: float) -> bool:
    """A refresh token is there and the access token is missing or expires within `threshold`."""
    if not credentials.get("refresh_token"):
        return False
    return not credentials.get("access_token") or expires_within(credentials, threshold)


def oauth_provider(integration: Integration) -> OAuth2:
    provider = integration.provider_instance
    if not isinstance(provider, OAuth2):
        raise IntegrationsError(
            f"Integration {integration.id} uses provider {integration.provider!r}, which is not an "
            "OAuth2 provider."
        )
    return provider


def token_expires_soon(integration: Integration) -> bool:
    """True when `token_expires_at` is within the provider's `refresh_threshold`, or passed."""
    provider = oauth_provider(integration)
    return expires_within(integration.credentials_dict(), provider.refresh_threshold)


def access_token(integration: Integration) -> str | None:
    """The access token, refreshed first when it expires within `refresh_threshold`."""
    provider = oauth_provider(integration)
    credentials = integration.credentials_dict()
    if needs_refresh(credentials, provider.refresh_threshold) and not _in_refresh(integration):
        _refresh(integration, provider)
        credentials = integration.credentials_dict()
    return credentials.get("access_token") or None


def refresh_token_if_needed(integration: Integration) -> bool:
    """Refresh when the token expires within `refresh_threshold`; True if this call refreshed it."""
    provider = oauth_provider(integration)
    if not needs_refresh(integration.credentials_dict(), provider.refresh_threshold):
        return False
    if _in_refresh(integration):
        return False
    return _refresh(integration, provider) == REFRESHED


def bearer_token(provider: Any, integration: Integration) -> str | None:
    """The token a URL call of an `OAuth2` provider carries, or None for other providers."""
    return access_token(integration) if isinstance(provider, OAuth2) else None


def refresh_rejected(integration: Integration, rejected: str) -> bool:
    """After a 401 to `rejected`: refresh unless another process already replaced it.

    True when a different token is now stored (worth one retry). A failed
    refresh is logged and answers False, so the caller sees the 401.
    """
    provider = oauth_provider(integration)
    if _in_refresh(integration):
        return False
    try:
        return _refresh(integration, provider, rejected=rejected) != IMPOSSIBLE
    except IntegrationsError as exc:
        logger.warning("flask-integrations: integration %s answered 401 and %s", integration.id, exc)
        return False


# -- merging answers ------------------------------------------------------------------------------


def merge_tokens(credentials: Mapping[str, Any], answer: Any, integration_id: int | None) -> dict[str, Any]:
    """`credentials` with the tokens of a token endpoint's `answer` merged in.

    The refresh token is kept when the answer has none; `token_expires_at` comes
    from `expires_at` or `expires_in` (None when the answer gives neither).
    """
    if not isinstance(answer, Mapping) or not isinstance(answer.get("access_token"), str):
        raise IntegrationsError(
            f"The token endpoint's answer for integration {integration_id} has no access_token; "
            "the stored credentials are unchanged."
        )
    merged = dict(credentials)
    merged["access_token"] = answer["access_token"]
    if isinstance(answer.get("refresh_token"), str) and answer["refresh_token"]:
        merged["refresh_token"] = answer["refresh_token"]
    merged["token_expires_at"] = _expiry_of(answer)
    return merged


def without_tokens(credentials: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in credentials.items() if key not in TOKEN_FIELDS}


def _expiry_of(answer: Mapping[str, Any]) -> int | float | None:
    absolute = expires_at({"token_expires_at": answer.get("expires_at")})
    if absolute is not None:
        return int(absolute) if absolute.is_integer() else absolute
    expires_in = parse_number(answer.get("expires_in"))
    return None if expires_in is None else int(clock() + expires_in)


# -- the refresh ----------------------------------------------------------------------------------


def _in_refresh(integration: Integration) -> bool:
    return integration.id in _refreshing.get()


def _refresh(integration: Integration, provider: OAuth2, rejected: str | None = None) -> str:
    """Refresh under the lock: REFRESHED, CURRENT (the stored token is fine) or IMPOSSIBLE."""
    state = current_state()
    _ensure_independent_commit(state, integration.id)
    with (
        refreshing(integration.id),
        locks.refresh_lock(state, integration.id),
        TokenRow(state, integration.id) as row,
    ):
        adopt(integration, row.token)  # the provider must see the latest refresh token
        verdict = _verdict(row.credentials, provider.refresh_threshold, rejected)
        if verdict != REFRESHED:
            return verdict
        answer = _ask_provider(provider, integration)

        def encrypted(credentials: Mapping[str, Any]) -> str:
            merged = merge_tokens(credentials, answer, integration.id)
            return state.keyring.encrypt(provider.validate_credentials(merged))

        token = row.write(encrypted)
    adopt(integration, token)
    logger.info("flask-integrations: refreshed the access token of integration %s", integration.id)
    return REFRESHED


def _verdict(credentials: Mapping[str, Any], threshold: float, rejected: str | None) -> str:
    current = credentials.get("access_token")
    if rejected is not None and current and current != rejected:
        return CURRENT  # another process replaced the rejected token while this one waited
    if not credentials.get("refresh_token"):
        return IMPOSSIBLE
    if rejected is None and current and not expires_within(credentials, threshold):
        return CURRENT
    return REFRESHED


def _ask_provider(provider: OAuth2, integration: Integration) -> Any:
    try:
        return provider.refresh_token(integration)
    except Exception as exc:
        raise IntegrationsError(
            f"Token refresh of integration {integration.id} failed ({failure_kind(exc)}); "
            "the stored credentials are unchanged."
        ) from None


def adopt(integration: Integration, token: str) -> None:
    """Give the in-memory object the stored credentials without making it dirty."""
    set_committed_value(integration, "_credentials_token", token)


def _ensure_independent_commit(state: AppState, integration_id: int) -> None:
    engine = state.engine()
    if shares_caller_connection(engine):
        return  # one in-process database: the write is deferred (see TokenRow)
    if caller_holds_sqlite_write_lock(state.db.session(), engine):
        raise IntegrationsError(
            f"The access token of integration {integration_id} needs a refresh, which is committed on "
            "its own connection, but this SQLite session holds uncommitted writes: commit (or roll "
            "back) the session first."
        )


class TokenRow:
    """The integration's stored credentials, read and written beside the caller's transaction.

    PostgreSQL: one transaction on its own connection, ``SELECT ... FOR UPDATE``
    (waiting at most `refresh_lock_wait`), the UPDATE, COMMIT on exit. SQLite
    file: a read, then a short write transaction that only replaces the value
    it read. Single-connection pool (in-memory SQLite, whose only connection is
    the caller's): read through the caller's session, write right after the
    caller's transaction ends (`db.transactions.run_detached`); that database lives and
    dies with this process, so no other process can miss the new token.
    """

    def __init__(self, state: AppState, integration_id: int):
        self.state = state
        self.integration_id = integration_id
        self.table = state.tables["integrations"]
        self.engine = state.engine()
        self.token: str = ""
        self.credentials: dict[str, Any] = {}
        self._connection: sa.Connection | None = None

    def __enter__(self) -> TokenRow:
        query = sa.select(self.table.c.credentials).where(self.table.c.id == self.integration_id)
        if shares_caller_connection(self.engine):
            token = self.state.db.session.execute(query).scalar()
        elif self.engine.dialect.name == "postgresql":
            token = self._lock_postgresql_row(query)
        else:
            with self.engine.connect() as connection:
                token = connection.execute(query).scalar()
        if token is None:
            self.__exit__(None, None, None)
            raise IntegrationsError(
                f"Integration {self.integration_id} is not in the database (deleted, or not committed yet)."
            )
        self.token = token
        self.credentials = self.state.keyring.decrypt(token, self.integration_id)
        return self

    def _lock_postgresql_row(self, query: sa.Select) -> str | None:
        settings = self.state.setting("OAUTH")
        self._connection = self.engine.connect()
        self._connection.begin()
        wait_ms = int(float(settings["refresh_lock_wait"]) * 1000)
        idle_ms = int(float(settings["refresh_lock_ttl"]) * 1000)
        self._connection.execute(sa.text(f"SET LOCAL lock_timeout = {wait_ms}"))
        self._connection.execute(sa.text(f"SET LOCAL idle_in_transaction_session_timeout = {idle_ms}"))
        try:
            return self._connection.execute(query.with_for_update(key_share=True)).scalar()
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                self.__exit__(None, None, None)
                raise locks.lock_wait_exceeded(self.integration_id, settings["refresh_lock_wait"]) from None
            raise

    def write(self, encrypted: Callable[[Mapping[str, Any]], str]) -> str:
        """Store `encrypted(current credentials)`; returns the stored value."""
        token = encrypted(self.credentials)
        if self._connection is not None:  # PostgreSQL: the row is locked, COMMIT on exit
            self._connection.execute(self._update(token))
        elif shares_caller_connection(self.engine):
            update = self._update(token)
            run_detached(self.state.db.session, self.engine, lambda connection: connection.execute(update))
        else:
            token = self._write_if_unchanged(encrypted, token)
        return token

    def _update(self, token: str, *, expected: str | None = None) -> sa.Update:
        table = self.table
        update = sa.update(table).where(table.c.id == self.integration_id)
        if expected is not None:
            update = update.where(table.c.credentials == expected)
        return update.values(credentials=token, updated_at=utcnow())

    def _write_if_unchanged(self, encrypted: Callable[[Mapping[str, Any]], str], token: str) -> str:
        """Compare-and-set: an `update()` of other fields meanwhile is merged, never overwritten."""
        expected = self.token
        for _ in range(_WRITE_TRIES):
            with self.engine.begin() as connection:
                if connection.execute(self._update(token, expected=expected)).rowcount == 1:
                    return token
                expected = connection.execute(
                    sa.select(self.table.c.credentials).where(self.table.c.id == self.integration_id)
                ).scalar()
            if expected is None:
                break
            token = encrypted(self.state.keyring.decrypt(expected, self.integration_id))
        raise IntegrationsError(
            f"The refreshed token of integration {self.integration_id} could not be stored: its "
            "credentials kept changing or the row is gone."
        )

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if exc_type is None and connection.in_transaction():
                connection.commit()
        finally:
            connection.close()


@contextmanager
def refreshing(integration_id: int) -> Iterator[None]:
    """Mark `integration_id` as being refreshed in this context (no nested refresh)."""
    marker = _refreshing.set(_refreshing.get() | {integration_id})
    try:
        yield
    finally:
        _refreshing.reset(marker)
