"""How an API pages its lists, for `RequestBuilder.paginate(target, items=..., pages=...)`.

Each style says which query parameters ask for the first page, and, from a page's answer,
which ones ask for the next (or None: that was the last page). Every page is one call
through the pipeline, logged, cached, limited and retried like any other. A style keeps no
state of its own: one instance serves every listing, in any thread.
"""

from __future__ import annotations

from typing import Any

import httpx

from .parsing import dotted

__all__ = ["Cursor", "LinkHeader", "Offset", "Page", "PageNumber", "Pagination"]


class Page:
    """One answered page: its parameters, its response, its decoded body, its items, and how many
    items the first page of this listing had (a full page's size, when the API does not say)."""

    def __init__(
        self,
        params: dict[str, Any],
        response: httpx.Response | None,
        body: Any,
        items: list[Any],
        first_size: int,
    ):
        self.params, self.response, self.body, self.items = params, response, body, items
        self.first_size = first_size


class Pagination:
    """A paging style: `first()` parameters, and `next(page)` parameters or None to stop.

    The base class is a listing of one page. `needs_response`: the style reads the response's
    headers, so its pages are not served from the cache.
    """

    needs_response = False

    def first(self) -> dict[str, Any]:
        """Query parameters of the first page (merged over the builder's `with_data`)."""
        return {}

    def next(self, page: Page) -> dict[str, Any] | None:
        """Query parameters of the page after `page`, or None when `page` was the last."""
        return None

    def next_url(self, page: Page) -> str | None:
        """A URL to call for the next page instead of parameters (see `LinkHeader`)."""
        return None


class Cursor(Pagination):
    """The body holds the next page's cursor at `next_path` (``"meta.next"``); it goes back in the
    query as `param`. Stops when the cursor is empty (missing, None, "")."""

    def __init__(self, next_path: str, param: str):
        self.next_path, self.param = next_path, param

    def next(self, page: Page) -> dict[str, Any] | None:
        cursor = dotted(page.body, self.next_path)
        if cursor in (None, "", [], {}) or cursor == page.params.get(self.param):
            return None  # the end, or a cursor that did not move (no endless loop)
        return {**page.params, self.param: cursor}


class PageNumber(Pagination):
    """``?page=1``, ``?page=2``, ... Stops on an empty page, or on one shorter than the first
    (or than `size`, when the API's page size is known)."""

    def __init__(self, param: str = "page", start: int = 1, size: int | None = None):
        self.param, self.start, self.size = param, start, size

    def first(self) -> dict[str, Any]:
        return {self.param: self.start}

    def next(self, page: Page) -> dict[str, Any] | None:
        if not page.items or len(page.items) < (self.size or page.first_size):
            return None
        return {**page.params, self.param: int(page.params[self.param]) + 1}


class Offset(Pagination):
    """``?offset=0&limit=100``, ``?offset=100&limit=100``, ... Stops on an empty or short page."""

    def __init__(self, param: str = "offset", limit_param: str = "limit", limit: int = 100):
        self.param, self.limit_param, self.limit = param, limit_param, limit

    def first(self) -> dict[str, Any]:
        return {self.param: 0, self.limit_param: self.limit}

    def next(self, page: Page) -> dict[str, Any] | None:
        if len(page.items) < self.limit:
            return None
        return {**page.params, self.param: int(page.params[self.param]) + len(page.items)}


class LinkHeader(Pagination):
    """The response's ``Link: <...>; rel="next"`` header (GitHub's style) names the next page."""

    needs_response = True

    def next_url(self, page: Page) -> str | None:
        return page.response.links.get("next", {}).get("url")
