"""The fluent request builder: `integration.at(endpoint)....get(url)`.

The builder only collects a call's options; its verbs hand it to the pipeline through
the `run` function it was made with (`pipeline.call.run`, see `call.request`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..pagination import Page, Pagination
from ..parsing import dotted

#: What a verb calls: a URL, a path joined to the provider's `base_url`, or a callable wrapping an SDK.
Target = str | Callable[..., Any] | None
#: How a builder runs: ``run(builder, method, target)``.
Runner = Callable[["RequestBuilder", str, Any], Any]

#: The longest idempotency key (the column is VARCHAR(191), for MySQL's index limits).
MAX_KEY_LENGTH = 191


def check_key(key: object) -> str:
    """`key` when it is a usable idempotency key; ValueError otherwise."""
    if not isinstance(key, str) or not key:
        raise ValueError("with_idempotency_key() needs a non-empty string key.")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"Idempotency keys are at most {MAX_KEY_LENGTH} characters, got {len(key)}.")
    return key


class RequestBuilder:
    """Collects the options of one outbound call; a verb runs it through the pipeline.

    `endpoint` is a logical label used in logs, rate-limit buckets, the cache
    key and fakes; the target passed to the verb is what is called.
    """

    def __init__(self, integration: Any, endpoint: str, run: Runner):
        if not isinstance(endpoint, str) or not endpoint:
            raise ValueError("at() needs a non-empty endpoint label, e.g. '/repos/{owner}/{repo}/issues'.")
        #: the `Integration` being called
        self.integration = integration
        self._run = run
        self.endpoint = endpoint
        self.result_class: type | None = None
        self.cache_ttl: float | None = None
        self.serve_stale = False
        self.cache_methods: tuple[str, ...] = ("GET",)
        self.attempts: int | None = None
        self.data: Any = None
        self.form: Any = None
        self.headers: dict[str, str] = {}
        self.timeout: float | None = None
        self.related: Any = None
        self.retry_of_id: int | None = None
        self.idempotency_key: str | None = None
        self.raw = False
        #: False for a health check's own call: its caller records the check's outcome once
        self.records_health = True
        #: False after `without_body_logging()`
        self.log_bodies = True

    def __repr__(self) -> str:
        return f"<RequestBuilder integration={self.integration.id} endpoint={self.endpoint!r}>"

    def returning(self, cls: type) -> RequestBuilder:
        """Build `cls` from the result: `cls.model_validate(data)`, else `cls(**data)`, else `cls(data)`."""
        self.result_class = cls
        return self

    def with_cache(
        self, ttl: float, serve_stale: bool = False, methods: Iterable[str] | None = None
    ) -> RequestBuilder:
        """Cache the JSON result for `ttl` seconds (GET only unless `methods` says otherwise);
        with `serve_stale`, a failed call returns a stale copy (kept `INTEGRATIONS_CACHE["stale_ttl"]`)."""
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ValueError("with_cache() needs a positive ttl in seconds.")
        self.cache_ttl = ttl
        self.serve_stale = serve_stale
        if methods is not None:
            self.cache_methods = tuple(m.upper() for m in methods)
        return self

    def with_attempts(self, attempts: int) -> RequestBuilder:
        """Try at most `attempts` times (default: 3 for GET, 1 otherwise); only transient failures retry."""
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError("with_attempts() needs an integer >= 1.")
        self.attempts = attempts
        return self

    def with_data(self, data: Any) -> RequestBuilder:
        """The query string on GET, the JSON body otherwise."""
        self.data = data
        return self

    def with_form(self, data: Any) -> RequestBuilder:
        """Send `data` as a form-encoded body."""
        self.form = data
        return self

    def with_headers(self, headers: dict[str, str]) -> RequestBuilder:
        """Add request headers (they are never stored)."""
        self.headers.update(headers)
        return self

    def with_timeout(self, seconds: float) -> RequestBuilder:
        """The timeout of each attempt, instead of `INTEGRATIONS_HTTP_TIMEOUT`."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ValueError("with_timeout() needs a positive number of seconds.")
        self.timeout = seconds
        return self

    def related_to(self, obj: Any) -> RequestBuilder:
        """Store `obj` (a mapped object with an integer key) as the rows' `related_type`/`related_id`."""
        self.related = obj
        return self

    def retry_of(self, request_id: int) -> RequestBuilder:
        """Mark this call as a retry of the call whose first request row is `request_id`."""
        self.retry_of_id = request_id
        return self

    def with_idempotency_key(self, key: str) -> RequestBuilder:
        """Run the call at most once per (integration, `key`) across all processes (1-191 characters);
        a second call with the key raises `IdempotencyConflict` without running."""
        self.idempotency_key = check_key(key)
        return self

    def without_body_logging(self) -> RequestBuilder:
        """Keep neither the request nor the response body in this call's request rows (the rest
        of each row as usual), whatever the provider and `INTEGRATIONS_LOG_BODIES` say."""
        self.log_bodies = False
        return self

    def raw_response(self) -> RequestBuilder:
        """Make the verb return the `httpx.Response` itself (URL calls)."""
        self.raw = True
        return self

    def get(self, target: Target = None) -> Any:
        """Run the call as GET (see `execute`)."""
        return self.execute("GET", target)

    def post(self, target: Target = None) -> Any:
        """Run the call as POST (see `execute`)."""
        return self.execute("POST", target)

    def put(self, target: Target = None) -> Any:
        """Run the call as PUT (see `execute`)."""
        return self.execute("PUT", target)

    def patch(self, target: Target = None) -> Any:
        """Run the call as PATCH (see `execute`)."""
        return self.execute("PATCH", target)

    def delete(self, target: Target = None) -> Any:
        """Run the call as DELETE (see `execute`)."""
        return self.execute("DELETE", target)

    def execute(self, method: str, target: Target = None) -> Any:
        """Run the call. `target` is a URL, a path joined to `base_url`, or a callable.

        Without a target the endpoint itself is used as the path.
        """
        if not isinstance(method, str) or not method:
            raise ValueError("execute() needs a method such as 'GET' or an SDK operation name.")
        return self._run(
            self, method.upper() if method.isalpha() else method, self.endpoint if target is None else target
        )

    def paginate(
        self,
        target: str | None = None,
        items: str | None = None,
        pages: Pagination | None = None,
        max_pages: int | None = None,
    ) -> Iterator[Any]:
        """Yield the items of every page of a listing (built with `returning(cls)` when set).

        Each page is one GET of `target` (a URL or a path; None: the endpoint label) through the
        pipeline with this builder's settings: cache, attempts, limits, breaker, one logged row.
        `items` is a dotted path to the list in the JSON body (None: the body is the list);
        `pages` a style of `flask_integrations.pagination` (None: one page only); `max_pages`
        stops after that many pages.
        """
        if callable(target):
            raise ValueError("paginate() needs a URL or a path: a callable pages itself.")
        style = pages or Pagination()
        url = self.endpoint if target is None else target
        params: dict[str, Any] | None = style.first()
        first_size: int | None = None
        for number in itertools.count(1):
            answer = self._page_builder(params, raw=style.needs_response).execute("GET", url)
            response = answer if style.needs_response else None
            body = _decoded(answer) if style.needs_response else answer
            found = body if items is None else dotted(body, items)
            if found is None:
                found = []
            if not isinstance(found, list):
                where = "the body" if items is None else f"{items!r} in the body"
                raise ValueError(f"paginate(): {where} of page {number} of {self.endpoint!r} is not a list.")
            yield from (self.build(item) for item in found)
            first_size = len(found) if first_size is None else first_size
            page = Page(params or {}, response, body, found, first_size)
            next_url = style.next_url(page)
            if next_url and number != max_pages:
                url, params = next_url, None
                continue
            params = style.next(page)
            if params is None or number == max_pages:
                return

    def _page_builder(self, params: dict[str, Any] | None, raw: bool) -> RequestBuilder:
        """This builder for one page: the page's query over `with_data` (a next-page URL carries its
        own), the raw response when the style reads it, no `returning` (items are built one by one)."""
        page = copy.copy(self)
        page.headers = dict(self.headers)
        page.data = None if params is None else {**(self.data or {}), **params}
        page.raw, page.result_class = raw, None
        return page

    def build(self, value: Any) -> Any:
        """Apply `returning(cls)` to a live or cached value."""
        cls = self.result_class
        if cls is None or value is None:
            return value
        if hasattr(cls, "model_validate"):
            return cls.model_validate(value)
        if isinstance(value, dict):
            return cls(**value)
        return cls(value)


def _decoded(response: Any) -> Any:
    """A raw page's body: decoded JSON, else text; None when empty."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text
