"""The fluent request builder: `integration.at(endpoint)....get(url)`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..models import Integration

Target = str | Callable[..., Any] | None


class RequestBuilder:
    """Collects the options of one outbound call; a verb runs it through the pipeline.

    `endpoint` is a logical label used in logs, rate-limit buckets, the cache
    key and fakes; the target passed to the verb is what is called.
    """

    def __init__(self, integration: Integration, endpoint: str):
        if not isinstance(endpoint, str) or not endpoint:
            raise ValueError("at() needs a non-empty endpoint label, e.g. '/repos/{owner}/{repo}/issues'.")
        self.integration = integration
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

    def __repr__(self) -> str:
        return f"<RequestBuilder integration={self.integration.id} endpoint={self.endpoint!r}>"

    def returning(self, cls: type) -> RequestBuilder:
        """Build `cls` from the result: `cls.model_validate(data)`, else `cls(**data)`, else `cls(data)`."""
        self.result_class = cls
        return self

    def with_cache(
        self, ttl: float, serve_stale: bool = False, methods: Iterable[str] | None = None
    ) -> RequestBuilder:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ValueError("with_cache() needs a positive ttl in seconds.")
        self.cache_ttl = ttl
        self.serve_stale = serve_stale
        if methods is not None:
            self.cache_methods = tuple(m.upper() for m in methods)
        return self

    def with_attempts(self, attempts: int) -> RequestBuilder:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError("with_attempts() needs an integer >= 1.")
        self.attempts = attempts
        return self

    def with_data(self, data: Any) -> RequestBuilder:
        """The query string on GET, the JSON body otherwise."""
        self.data = data
        return self

    def with_form(self, data: Any) -> RequestBuilder:
        self.form = data
        return self

    def with_headers(self, headers: dict[str, str]) -> RequestBuilder:
        self.headers.update(headers)
        return self

    def with_timeout(self, seconds: float) -> RequestBuilder:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ValueError("with_timeout() needs a positive number of seconds.")
        self.timeout = seconds
        return self

    def related_to(self, obj: Any) -> RequestBuilder:
        self.related = obj
        return self

    def retry_of(self, request_id: int) -> RequestBuilder:
        self.retry_of_id = request_id
        return self

    def with_idempotency_key(self, key: str) -> RequestBuilder:
        from .idempotency import check_key

        self.idempotency_key = check_key(key)
        return self

    def raw_response(self) -> RequestBuilder:
        """Make the verb return the `httpx.Response` itself (URL calls)."""
        self.raw = True
        return self

    def get(self, target: Target = None) -> Any:
        return self.execute("GET", target)

    def post(self, target: Target = None) -> Any:
        return self.execute("POST", target)

    def put(self, target: Target = None) -> Any:
        return self.execute("PUT", target)

    def patch(self, target: Target = None) -> Any:
        return self.execute("PATCH", target)

    def delete(self, target: Target = None) -> Any:
        return self.execute("DELETE", target)

    def execute(self, method: str, target: Target = None) -> Any:
        """Run the call. `target` is a URL, a path joined to `base_url`, or a callable.

        Without a target the endpoint itself is used as the path.
        """
        from .call import run

        if not isinstance(method, str) or not method:
            raise ValueError("execute() needs a method such as 'GET' or an SDK operation name.")
        return run(
            self, method.upper() if method.isalpha() else method, self.endpoint if target is None else target
        )

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
