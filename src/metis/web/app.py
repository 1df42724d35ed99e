"""The dashboard at ``/ui``: pages, login and logout, error pages, `install`.

`install(comps)` adds the routes (hidden from the OpenAPI document) and the
form actions of `metis.web.actions` to the server's FastAPI app, and serves
``/ui/static`` (one CSS file, a favicon). Pages are plain HTML from Jinja2
templates (autoescaped) with server-side SVG charts and no JavaScript. Every
page takes the shared filters of `metis.web.params` and answers
``?csv=<table id>`` with that table as CSV.

Auth: ``/ui/login`` takes an admin token (``METIS_ADMIN_TOKEN`` or one from
``metis admin token create``) and sets the session cookie of
`metis.web.session`; any other ``/ui`` page without a valid session redirects
there (303). POST forms must carry the session's CSRF token (403 otherwise).
Bad input answers a 4xx HTML page naming the problem; nothing is half-written
(each change is one transaction in the identity library).
"""

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from metis.analytics.admin_tokens import verify
from metis.analytics.deps import app_engine, app_settings, auth_throttle, client_address
from metis.config import Settings
from metis.ledger.reconcile import cells_memo
from metis.web import insights, pages, session
from metis.web.actions import router as actions_router
from metis.web.http import (
    HERE,
    NAV,
    LoginRequired,
    authorized_post,
    current_session,
    read_form,
    render,
    safe_next,
    secure,
    set_cookie,
    ui_key,
)
from metis.web.params import PageQuery, UIError, parse_page_query
from metis.web.tables import Table
from metis.workspaces import list_workspaces

if TYPE_CHECKING:
    from metis.server import Components

Builder = Callable[[Connection, PageQuery], dict[str, Any]]
# name -> (builder, template)
PAGES: dict[str, tuple[Builder, str]] = {
    "overview": (pages.overview, "overview.html"),
    "teams": (pages.teams, "teams.html"),
    "keys": (pages.keys_and_users, "keys.html"),
    "reconciliation": (pages.reconciliation, "reconciliation.html"),
    "ingestion": (pages.ingestion, "ingestion.html"),
    "forecast": (insights.forecast, "forecast.html"),
    "savings": (insights.savings, "savings.html"),
    "routing": (insights.routing, "routing.html"),
}

router = APIRouter(include_in_schema=False)


# ---------------------------------------------------------------- login / logout


def _login_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    nonce = session.new_login_nonce()
    resp = render(
        request,
        "login.html",
        {
            "title": "Sign in",
            "csrf": nonce,
            "next": safe_next(request.query_params.get("next")),
            "error": error,
        },
        status=status,
    )
    set_cookie(request, resp, session.LOGIN_COOKIE, nonce, session.LOGIN_MAX_AGE_S, "/ui/login")
    return resp


@router.get("/ui/login")
def login_form(request: Request) -> Response:
    """The login form, with a fresh double-submit CSRF nonce."""
    return _login_page(request)


@router.post("/ui/login")
async def login(request: Request) -> Response:
    """Check the admin token, set the session cookie and go back to the page asked for."""
    form = await read_form(request)
    cookie = request.cookies.get(session.LOGIN_COOKIE) or ""
    if not cookie or not session.check_csrf(cookie, form.get("csrf")):
        raise UIError(403, "login form expired or forged (CSRF check failed): reload and retry")
    token = form.get("token", "").strip()
    if not token:
        return _login_page(request, error="enter an admin token", status=400)
    engine = app_engine(request)
    settings: Settings = app_settings(request)
    throttle = auth_throttle(request)
    keys = throttle.keys(client_address(request), token)
    wait = throttle.retry_after(*keys)
    if wait is not None:  # checked before the token: guessing gains nothing while throttled
        return _throttled_login(request, wait)
    key = ui_key(request)

    def check() -> str | None:
        with engine.begin() as conn:
            ident = verify(conn, settings, token)
            return None if ident is None else session.create_session(conn, key, ident, token)

    value = await run_in_threadpool(check)
    if value is None:
        throttle.failed(*keys)
        return _login_page(request, error="invalid or revoked admin token", status=401)
    resp = RedirectResponse(safe_next(form.get("next")), status_code=303)
    set_cookie(
        request,
        resp,
        session.SESSION_COOKIE,
        value,
        session.SESSION_MAX_AGE_S,
        session.COOKIE_PATH,
    )
    resp.delete_cookie(session.LOGIN_COOKIE, path="/ui/login")
    return secure(resp)


def _throttled_login(request: Request, wait: float) -> Response:
    seconds = max(1, math.ceil(wait))
    resp = _login_page(
        request,
        error=f"too many failed sign-ins from here; try again in {seconds} s",
        status=429,
    )
    resp.headers["Retry-After"] = str(seconds)
    return resp


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    """End the session server-side and delete its cookie (a CSRF-checked POST, so no
    other site can sign you out); a copy of the cookie no longer opens anything."""
    form = await read_form(request)
    engine = app_engine(request)
    await run_in_threadpool(authorized_post, request, engine, form)
    value = request.cookies.get(session.SESSION_COOKIE)

    def end() -> None:
        with engine.begin() as conn:
            session.end_session(conn, value)

    await run_in_threadpool(end)
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(session.SESSION_COOKIE, path=session.COOKIE_PATH)
    return secure(resp)


# ---------------------------------------------------------------- pages


def _page(name: str, path: str, title: str) -> Callable[[Request], Response]:
    build, template = PAGES[name]

    def handler(request: Request) -> Response:
        engine = app_engine(request)
        qp = request.query_params
        with engine.connect() as conn:
            s = current_session(request, conn)
            q = parse_page_query(
                conn,
                start=qp.get("from"),
                end=qp.get("to"),
                workspace=qp.get("workspace"),
                view=qp.get("view"),
                stack=qp.get("stack"),
                baseline=qp.get("baseline"),
            )
            with cells_memo():  # the page's tables share one window's reconciled cells
                ctx = build(conn, q)
            workspaces = list_workspaces(conn)
        tables: dict[str, Table] = ctx["tables"]
        want = qp.get("csv")
        if want is not None:
            table = tables.get(want)
            if table is None:
                raise UIError(404, f"no table {want[:60]!r} on this page")
            fname = f"metis-{name}-{table.id}-{q.start.isoformat()}-{q.end.isoformat()}.csv"
            resp = Response(
                table.to_csv(),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{fname}"'},
            )
            return secure(resp)
        return render(
            request,
            template,
            {
                **ctx,
                "title": title,
                "page": name,
                "page_path": path,
                "q": q,
                "session": s,
                "workspaces": workspaces,
                "here": path + "?" + q.qs(),
            },
        )

    handler.__name__ = f"page_{name}"
    return handler


for _name, _path, _title in NAV:
    router.add_api_route(
        _path, _page(_name, _path, _title), methods=["GET"], response_class=HTMLResponse
    )


@router.get("/ui/")
def ui_slash(request: Request) -> Response:
    """``/ui/`` is ``/ui``."""
    qs = request.url.query
    return RedirectResponse("/ui" + ("?" + qs if qs else ""), status_code=307)


# ---------------------------------------------------------------- errors and install


def _error_page(request: Request, exc: UIError) -> Response:
    ref = urlsplit(request.headers.get("referer") or "")
    back = safe_next(ref.path + ("?" + ref.query if ref.query else ""))
    return render(
        request,
        "error.html",
        {
            "title": f"Error {exc.status}",
            "status": exc.status,
            "message": exc.message,
            "back": back,
        },
        status=exc.status,
    )


def install(comps: "Components") -> None:
    """Add the dashboard to ``comps.api`` (routes, static files, its error pages)."""
    api: FastAPI = comps.api
    api.include_router(router)
    api.include_router(actions_router)
    api.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    async def on_ui_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UIError)
        return _error_page(request, exc)

    async def on_login_required(request: Request, exc: Exception) -> Response:
        target = request.url.path + ("?" + request.url.query if request.url.query else "")
        if request.method != "GET":
            target = "/ui"
        resp = RedirectResponse("/ui/login?" + urlencode({"next": target}), status_code=303)
        return secure(resp)

    api.add_exception_handler(UIError, on_ui_error)
    api.add_exception_handler(LoginRequired, on_login_required)
