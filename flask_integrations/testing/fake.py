"""`integrations.fake(...)`: answer outbound calls from a table instead of calling out.

A faked call records itself and returns the configured answer; it touches no
rate limit, cache, breaker, health or database row. Failed answers are retried as the
pipeline would retry them (its attempts and rules), without waiting. A URL call is built as a real one
would be (templated `base_url`, an `OAuth2` bearer from the stored token, `auth`,
`prepare_request`), so `call.headers` holds what would go on the wire.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import ConfigurationError, IntegrationHTTPError
from ..pipeline import retry
from ..pipeline.wire import build_request, query
from ..providers import OAuth2
from ..state import current_state

Responses = dict[str, Any]


class UnexpectedRequest(AssertionError):
    """A faked pipeline received a call no pattern matches."""


@dataclass(frozen=True)
class FakeResponse:
    """An HTTP answer: `fake.response(404, json={...})`. 4xx/5xx raise IntegrationHTTPError."""

    status: int
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_httpx(self, method: str, url: str) -> httpx.Response:
        request = httpx.Request(method if method.isalpha() else "POST", url)
        if self.json is None:
            return httpx.Response(self.status, headers=self.headers, request=request)
        return httpx.Response(self.status, json=self.json, headers=self.headers, request=request)


class ResponseSequence:
    """Answers taken in order, one per call; a call after the last raises."""

    def __init__(self, *answers: Any):
        self._answers = list(answers)
        self._next = 0

    def take(self, call: RecordedCall) -> Any:
        if self._next >= len(self._answers):
            raise UnexpectedRequest(
                f"ResponseSequence for {call.method} {call.endpoint} is exhausted "
                f"after {len(self._answers)} answer(s)."
            )
        answer = self._answers[self._next]
        self._next += 1
        return answer


@dataclass(frozen=True)
class RecordedCall:
    """One call a faked pipeline received; `headers` (case-insensitive) are those a real call
    would send, auth included."""

    integration_id: int
    method: str
    endpoint: str
    target: str | None
    data: Any
    form: Any
    headers: httpx.Headers
    idempotency_key: str | None
    attempt: int = 1


def _split(pattern: str) -> tuple[str | None, str]:
    method, sep, rest = pattern.partition(":")
    if sep and method.isalpha() and method.isupper():
        return method, rest
    return None, pattern


def _specificity(pattern: str) -> tuple[int, int]:
    method, path = _split(pattern)
    return (len(path.replace("*", "")), 1 if method else 0)


def _names(call: RecordedCall) -> list[str]:
    names = [call.endpoint, call.endpoint.lstrip("/")]
    if call.target:
        url = httpx.URL(call.target) if call.target.startswith(("http://", "https://")) else None
        path = url.path if url is not None else call.target
        names += [call.target, path, path.lstrip("/")]
    return names


def matches(pattern: str, call: RecordedCall) -> bool:
    method, path = _split(pattern)
    if method is not None and method != call.method:
        return False
    return any(fnmatch.fnmatchcase(name, path) for name in _names(call))


class Fake:
    """The installed fake; see the testing docs for the patterns it understands."""

    def __init__(
        self,
        responses: Responses | None,
        uninstall: Callable[[Fake], None],
        passthrough: frozenset[str] = frozenset(),
    ):
        self._responses = dict(responses or {})
        self._per_integration: dict[int, Responses] = {}
        self._uninstall = uninstall
        #: the providers whose calls go out for real, through the whole pipeline
        self.passthrough = passthrough
        self.calls: list[RecordedCall] = []

    def __enter__(self) -> Fake:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Call out for real again."""
        self._uninstall(self)

    @staticmethod
    def response(status: int, json: Any = None, headers: dict[str, str] | None = None) -> FakeResponse:
        return FakeResponse(status, json, dict(headers or {}))

    def for_integration(self, integration: Any, responses: Responses) -> Fake:
        """Answers used for this integration before the general ones."""
        self._per_integration.setdefault(integration.id, {}).update(responses)
        return self

    # -- answering -------------------------------------------------------------------------

    def passes_through(self, provider_key: str) -> bool:
        """Whether calls of this provider go out for real (`passthrough=[...]`)."""
        return provider_key in self.passthrough

    def record_passthrough(self, spec: Any, method: str, target: Any, attempt: int) -> None:
        """Record an attempt of a passthrough call as it goes out, as a faked one is recorded.

        Never raises: what keeps the headers from being built (a `base_url` placeholder without
        a value, a failing `prepare_request`) fails the real attempt, which the pipeline records;
        the recorded call then has the caller's headers only.
        """
        try:
            headers = wire_headers(spec, method, target)
        except Exception:  # noqa: BLE001
            headers = httpx.Headers(spec.headers)
        self.calls.append(_recorded(spec, method, target, attempt, headers))

    def answer(self, spec: Any, method: str, target: Any) -> Any:
        """The answer to a call, attempted again (at once) where the pipeline would retry."""
        state = current_state()
        provider = state.provider(spec.integration.provider)
        max_attempts = spec.attempts or retry.default_attempts(method)
        attempt = 1
        while True:
            try:
                return self._answer_once(spec, method, target, attempt)
            except UnexpectedRequest:
                raise
            except Exception as exc:
                http = isinstance(exc, IntegrationHTTPError)
                delay = retry.retry_delay(
                    attempt=attempt,
                    max_attempts=max_attempts,
                    status=exc.status_code if http else None,
                    exc=None if http else exc,
                    provider=provider,
                    retry_after_max=state.setting("RETRY_AFTER_MAX"),
                    response=exc.response if http else None,
                )
                if delay is None:
                    raise
                attempt += 1

    def _answer_once(self, spec: Any, method: str, target: Any, attempt: int) -> Any:
        call = _recorded(spec, method, target, attempt)
        self.calls.append(call)
        answer = self._lookup(call)
        while isinstance(answer, ResponseSequence):
            answer = answer.take(call)
        if callable(answer) and not isinstance(answer, type):
            answer = answer(call) if _wants_call(answer) else answer()
        if isinstance(answer, BaseException) or (
            isinstance(answer, type) and issubclass(answer, BaseException)
        ):
            raise answer
        if isinstance(answer, FakeResponse):
            response = answer.to_httpx(method, call.target or spec.endpoint)
            if answer.status >= 400:
                raise IntegrationHTTPError(
                    answer.status, response, f"{method} {spec.endpoint} answered HTTP {answer.status}."
                )
            return response if spec.raw else spec.build(answer.json)
        if spec.raw:  # a plain value answers a `raw_response()` call as a 200 with that JSON body
            return FakeResponse(200, answer).to_httpx(method, call.target or spec.endpoint)
        return spec.build(answer)

    def _lookup(self, call: RecordedCall) -> Any:
        for table in (self._per_integration.get(call.integration_id, {}), self._responses):
            for pattern in sorted(table, key=_specificity, reverse=True):
                if matches(pattern, call):
                    return table[pattern]
        raise UnexpectedRequest(
            f"No fake answer for {call.method} {call.endpoint!r} (integration {call.integration_id}); "
            f"patterns: {sorted(self._responses) or 'none'}."
        )

    # -- assertions ------------------------------------------------------------------------

    def _matching(self, endpoint: str, method: str | None, integration: Any) -> list[RecordedCall]:
        pattern = f"{method.upper()}:{endpoint}" if method else endpoint
        found = [c for c in self.calls if matches(pattern, c)]
        if integration is not None:
            found = [c for c in found if c.integration_id == integration.id]
        return found

    def assert_requested(
        self, endpoint: str, times: int | None = None, method: str | None = None, integration: Any = None
    ) -> None:
        found = self._matching(endpoint, method, integration)
        if times is None and not found:
            raise AssertionError(f"Expected a request to {endpoint!r}; got: {self._summary()}.")
        if times is not None and len(found) != times:
            raise AssertionError(
                f"Expected {times} request(s) to {endpoint!r}, got {len(found)}: {self._summary()}."
            )

    def assert_not_requested(self, endpoint: str, method: str | None = None, integration: Any = None) -> None:
        found = self._matching(endpoint, method, integration)
        if found:
            raise AssertionError(f"Expected no request to {endpoint!r}, got {len(found)}.")

    def assert_requested_with(self, endpoint: str, predicate: Callable[[RecordedCall], bool]) -> None:
        found = self._matching(endpoint, None, None)
        if not any(predicate(call) for call in found):
            raise AssertionError(
                f"No request to {endpoint!r} matched the predicate ({len(found)} request(s) seen)."
            )

    def assert_request_count(self, count: int) -> None:
        if len(self.calls) != count:
            raise AssertionError(f"Expected {count} request(s), got {len(self.calls)}: {self._summary()}.")

    def assert_nothing_requested(self) -> None:
        self.assert_request_count(0)

    def _summary(self) -> str:
        return ", ".join(f"{c.method} {c.endpoint}" for c in self.calls) or "none"


def _recorded(
    spec: Any, method: str, target: Any, attempt: int, headers: httpx.Headers | None = None
) -> RecordedCall:
    return RecordedCall(
        integration_id=spec.integration.id,
        method=method,
        endpoint=spec.endpoint,
        target=target if isinstance(target, str) else None,
        data=query(spec.data) if method == "GET" and spec.data is not None else spec.data,
        form=spec.form,
        headers=wire_headers(spec, method, target) if headers is None else headers,
        idempotency_key=spec.idempotency_key,
        attempt=attempt,
    )


def wire_headers(spec: Any, method: str, target: Any) -> httpx.Headers:
    """The headers a real call would send: the caller's, then what `auth` and `prepare_request`
    add (a callable target is no HTTP request: the caller's headers only). No token is refreshed."""
    if not isinstance(target, str):
        return httpx.Headers(spec.headers)
    state = current_state()
    integration = spec.integration
    provider = state.provider(integration.provider)
    if not target.startswith(("http://", "https://")) and provider.base_url is None:
        target = "http://faked.invalid/" + target.lstrip("/")  # an endpoint label, as fakes allow
    bearer = integration.credentials_dict().get("access_token") if isinstance(provider, OAuth2) else None
    return build_request(state, provider, spec, method, target, bearer or None).headers


def _wants_call(fn: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in parameters
    )


def passthrough_keys(states: list[Any], passthrough: Iterable[str]) -> frozenset[str]:
    """The provider keys of `passthrough`, each registered; ConfigurationError naming one that is not."""
    if isinstance(passthrough, str):
        raise ConfigurationError(
            f"fake(passthrough=...) takes a list of provider keys, e.g. passthrough=[{passthrough!r}]."
        )
    registered = {key for state in states for key in state.providers}
    for key in passthrough:
        if key not in registered:
            raise ConfigurationError(
                f"fake(passthrough=...) names provider {key!r}, which is not registered "
                f"(registered: {', '.join(sorted(registered)) or 'none'})."
            )
    return frozenset(passthrough)


def install(states: Iterable[Any], responses: Responses | None, passthrough: Iterable[str] = ()) -> Fake:
    states = list(states)
    keys = passthrough_keys(states, passthrough)

    def uninstall(fake: Fake) -> None:
        for state in states:
            if state.fake is fake:
                state.fake = None

    fake = Fake(responses, uninstall, keys)
    for state in states:
        state.fake = fake
    return fake
