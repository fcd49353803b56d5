"""The dashboard blueprint: server-rendered pages under ``{INTEGRATIONS_URL_PREFIX}/dashboard``.

Every route (the stylesheet too) first asks `access.denied` with
`INTEGRATIONS_DASHBOARD_AUTH`; every action also checks this session's CSRF
token, in testing mode too. Templates are ``flask_integrations/dashboard/*.html``
in the package's template folder, so an app overrides one by shipping a
template of the same name in its own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Flask, Response, abort, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from ...parsing import parse_int
from ...state import current_state
from ..access import add_security_headers, csrf_token, denied, exempt_from_app_csrf
from ..routing import add_converters
from . import formatting
from .formatting import exact_time, iso_time, relative_time

BLUEPRINT_NAME = "integrations_dashboard"
#: A page number past this is treated as this one (an offset no table here needs).
MAX_PAGE = 100_000

T = TypeVar("T")

blueprint = Blueprint(
    BLUEPRINT_NAME,
    __name__,
    template_folder=str(Path(__file__).resolve().parent.parent / "templates"),
    static_folder="static",
    static_url_path="/static",
)


def register(app: Flask, url_prefix: str) -> None:
    """Register the dashboard on `app`, exempt from Flask-WTF's CSRFProtect (it checks its own token)."""
    add_converters(app)
    app.register_blueprint(blueprint, url_prefix=f"{url_prefix.rstrip('/')}/dashboard")
    exempt_from_app_csrf(app, blueprint)


@blueprint.before_request
def check_access() -> Response | None:
    return denied(current_state().setting("DASHBOARD_AUTH"))


blueprint.after_request(add_security_headers)

#: What the dashboard's own error page says for each status it renders.
ERROR_TITLES = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed"}


def error_page(error: HTTPException) -> tuple[str, int]:
    """The dashboard's own 400/403/404/405 page, styled like the rest (the description is ours)."""
    code = error.code or 500
    return render_template(
        "flask_integrations/dashboard/error.html",
        code=code,
        title=ERROR_TITLES.get(code, "Error"),
        description=error.description,
    ), code


for _code in ERROR_TITLES:
    blueprint.register_error_handler(_code, error_page)


@blueprint.app_template_filter("integrations_ago")
def _ago(moment: Any) -> str:
    """``{{ moment|integrations_ago }}``: '3 min ago', 'in 2 h', 'never'."""
    return relative_time(moment)


@blueprint.app_template_filter("integrations_utc")
def _utc(moment: Any) -> str:
    """``{{ moment|integrations_utc }}``: '2026-11-27 14:03:09 UTC'."""
    return exact_time(moment)


@blueprint.context_processor
def template_helpers() -> dict[str, Any]:
    return {
        "csrf_token": csrf_token,
        "here": here(),
        "url_with": url_with,
        "iso_time": iso_time,
        "milliseconds": formatting.milliseconds,
        "percent": formatting.percent,
        "invalid_filters": request.environ.get(INVALID_FILTERS, []),
    }


# -- helpers of the views ------------------------------------------------------------------------


def here() -> str:
    """This page's path and query, for the `next` field of its forms."""
    return request.script_root + request.full_path.removesuffix("?")


def url_with(**changes: Any) -> str:
    """This page's URL with some query arguments changed (None or '' removes one).

    The query is encoded here, not by `url_for`, whose own parameters (`endpoint`, `_anchor`, ...)
    would otherwise take the request log's `?endpoint=` filter and its like.
    """
    args = request.args.to_dict()
    args.update(changes)
    kept = {k: v for k, v in args.items() if v is not None and v != ""}
    path = url_for(request.endpoint or ".overview", **(request.view_args or {}))
    return f"{path}?{urlencode(kept)}" if kept else path


INVALID_FILTERS = "flask_integrations.invalid_filters"
#: How much of a wrong filter value a page repeats back.
SHOWN_VALUE = 40


def report_invalid(name: str, value: str, expected: str) -> None:
    """Say on the page that a filter was ignored and what it takes (never silently ignored)."""
    shown = value if len(value) <= SHOWN_VALUE else value[:SHOWN_VALUE] + "…"
    invalid = request.environ.setdefault(INVALID_FILTERS, [])  # per request (g may outlive one)
    invalid.append(f"Ignored {name}={shown!r}: expected {expected}.")


def page_number(name: str = "page") -> int:
    """The page asked for (1 when absent or not a number), at most `MAX_PAGE`."""
    number = parse_int(request.args.get(name)) or 1
    return min(number, MAX_PAGE)


def found(value: T | None) -> T:
    """`value`, or a 404 when there is none."""
    if value is None:
        abort(404)
    return value


def back_to(fallback: str) -> Response:
    """Redirect to the form's `next` page when it is a dashboard path, else to `fallback`."""
    target = request.form.get("next", "")
    return redirect(target if is_dashboard_path(target) else fallback)


def is_dashboard_path(target: str) -> bool:
    """A local path under the dashboard: no scheme or host, no '..', no backslash or control character."""
    if not target or any(c == "\\" or ord(c) < 32 for c in target):
        return False
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or ".." in parts.path.split("/"):
        return False
    return parts.path.startswith(url_for(".overview"))
