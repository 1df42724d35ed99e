"""The dashboard at ``/ui``: routes, login, CSRF checks and rendering.

`install(comps)` adds the routes to the server's FastAPI app (hidden from
the OpenAPI document) and serves ``/ui/static`` (one CSS file, a favicon).
Pages are plain HTML from Jinja2 templates (autoescaped) with server-side SVG
charts and no JavaScript. Every page takes the shared filters of
`metis.web.params` and answers ``?csv=<table id>`` with that table as CSV.

Auth: ``/ui/login`` takes an admin token (``METIS_ADMIN_TOKEN`` or one from
``metis admin token create``) and sets the session cookie of
`metis.web.session`; any other ``/ui`` page without a valid session redirects
there (303). POST forms must carry the session's CSRF token (403 otherwise).
Bad input answers a 4xx HTML page naming the problem; nothing is half-written
(each change is one transaction in the identity library).
"""

import asyncio
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from metis.analytics.admin_tokens import verify
from metis.analytics.deps import app_engine, app_settings
from metis.config import Settings
from metis.credentials import get_credential, list_credentials
from metis.errors import ConfigError, ConflictError, MetisError, NotFoundError
from metis.identity.keys import get_key, issue_key, revoke_key
from metis.identity.teams import KEEP, _Keep, disable_team, get_team, set_caps
from metis.identity.users import disable_user, get_user
from metis.identity.validate import parse_cap_usd
from metis.ingest.jobs import run_job
from metis.web import pages, session
from metis.web.params import PageQuery, UIError, parse_page_query
from metis.web.tables import Table, fmt_cell, fmt_usd
from metis.workspaces import list_workspaces

if TYPE_CHECKING:
    from metis.server import Components

HERE = Path(__file__).parent
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
MAX_FORM_BYTES = 64 * 1024
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

router = APIRouter(include_in_schema=False)

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals.update(fmt_cell=fmt_cell, fmt_usd=fmt_usd)
env.filters["exact"] = lambda v: "" if v is None else format(Decimal(v), "f")
env.filters["plain"] = lambda v: "" if v is None else format(Decimal(v).normalize(), "f")

# name -> (path, builder, template, title)
PAGES: dict[str, tuple[str, Callable[[Connection, PageQuery], dict[str, Any]], str, str]] = {
    "overview": ("/ui", pages.overview, "overview.html", "Overview"),
    "teams": ("/ui/teams", pages.teams, "teams.html", "Teams"),
    "keys": ("/ui/keys", pages.keys_and_users, "keys.html", "Keys and users"),
    "reconciliation": (
        "/ui/reconciliation",
        pages.reconciliation,
        "reconciliation.html",
        "Reconciliation",
    ),
    "ingestion": ("/ui/ingestion", pages.ingestion, "ingestion.html", "Ingestion"),
}


class LoginRequired(Exception):
    """No valid session: redirect to the login page."""


# ---------------------------------------------------------------- helpers


def _ui_key(request: Request) -> bytes:
    key = getattr(request.app.state, "metis_ui_key", None)
    if key is None:
        try:
            key = session.session_key(app_settings(request))
        except ConfigError as exc:
            raise UIError(503, f"dashboard unavailable: {exc.message}") from None
        request.app.state.metis_ui_key = key
    return bytes(key)


def _secure(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(
    request: Request, resp: Response, name: str, value: str, max_age: int, path: str
) -> None:
    resp.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=_https(request),
    )


def _safe_next(value: str | None) -> str:
    """A local ``/ui`` path to go back to (never another host: no open redirect)."""
    if (
        value
        and (value == "/ui" or value.startswith(("/ui/", "/ui?")))
        and "//" not in value
        and ".." not in value
        and "\\" not in value
        and len(value) < 2000
        and not any(ord(ch) < 0x20 for ch in value)
    ):
        return value
    return "/ui"


def _session(request: Request, conn: Connection) -> session.Session:
    s = session.load_session(
        _ui_key(request), conn, app_settings(request), request.cookies.get(session.SESSION_COOKIE)
    )
    if s is None:
        raise LoginRequired
    return s


def _render(
    request: Request,
    template: str,
    ctx: dict[str, Any],
    *,
    status: int = 200,
) -> HTMLResponse:
    flash = None
    raw_flash = request.cookies.get(session.FLASH_COOKIE)
    if raw_flash:
        try:
            flash = session.load_flash(_ui_key(request), raw_flash)
        except UIError:
            flash = None
    body = env.get_template(template).render(
        request_path=request.url.path,
        nav=[(name, p[0], p[3]) for name, p in PAGES.items()],
        flash=flash,
        **ctx,
    )
    resp = HTMLResponse(body, status_code=status)
    if raw_flash:
        resp.delete_cookie(session.FLASH_COOKIE, path=session.COOKIE_PATH)
    _secure(resp)
    return resp


def _redirect_with_flash(
    request: Request, to: str, message: str, kind: str = "ok"
) -> RedirectResponse:
    resp = RedirectResponse(to, status_code=303)
    _set_cookie(
        request,
        resp,
        session.FLASH_COOKIE,
        session.dump_flash(_ui_key(request), message, kind),
        session.FLASH_MAX_AGE_S,
        session.COOKIE_PATH,
    )
    _secure(resp)
    return resp


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (at most `MAX_FORM_BYTES`, 50 fields)."""
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_FORM_BYTES:
        raise UIError(413, f"form too large (at most {MAX_FORM_BYTES} bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # bounded even without a Content-Length
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise UIError(413, f"form too large (at most {MAX_FORM_BYTES} bytes)")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        return {}  # then the CSRF check refuses it (403)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise UIError(415, "forms must be sent as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=50
        )
    except (UnicodeDecodeError, ValueError):
        raise UIError(400, "malformed form data") from None
    return dict(pairs)


def _check_id(value: str, what: str) -> str:
    if not ID_RE.match(value):
        raise UIError(400, f"invalid {what}: must match ^[A-Za-z0-9_-]{{1,200}}$")
    return value


def _metis_error(exc: MetisError) -> UIError:
    if isinstance(exc, NotFoundError):
        return UIError(404, exc.message)
    if isinstance(exc, ConflictError):
        return UIError(409, exc.message)
    return UIError(400, exc.message)


def _authorized_post(request: Request, engine: Engine, form: dict[str, str]) -> session.Session:
    """The session of a POST whose CSRF token matches; `LoginRequired` / 403 otherwise."""
    with engine.connect() as conn:
        s = _session(request, conn)
    if not session.check_csrf(s.csrf, form.get("csrf")):
        raise UIError(403, "missing or invalid CSRF token: reload the page and submit again")
    return s


# ---------------------------------------------------------------- login / logout


def _login_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    nonce = session.new_login_nonce()
    resp = _render(
        request,
        "login.html",
        {
            "title": "Sign in",
            "csrf": nonce,
            "next": _safe_next(request.query_params.get("next")),
            "error": error,
        },
        status=status,
    )
    _set_cookie(request, resp, session.LOGIN_COOKIE, nonce, session.LOGIN_MAX_AGE_S, "/ui/login")
    return resp


@router.get("/ui/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/ui/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    cookie = request.cookies.get(session.LOGIN_COOKIE) or ""
    if not cookie or not session.check_csrf(cookie, form.get("csrf")):
        raise UIError(403, "login form expired or forged (CSRF check failed): reload and retry")
    token = form.get("token", "").strip()
    if not token:
        return _login_page(request, error="enter an admin token", status=400)
    engine = app_engine(request)
    settings: Settings = app_settings(request)

    def check() -> Any:
        with engine.connect() as conn:
            return verify(conn, settings, token)

    ident = await run_in_threadpool(check)
    if ident is None:
        return _login_page(request, error="invalid or revoked admin token", status=401)
    value = session.new_session_cookie(_ui_key(request), ident, token)
    resp = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    _set_cookie(
        request,
        resp,
        session.SESSION_COOKIE,
        value,
        session.SESSION_MAX_AGE_S,
        session.COOKIE_PATH,
    )
    resp.delete_cookie(session.LOGIN_COOKIE, path="/ui/login")
    return _secure(resp)


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    await run_in_threadpool(_authorized_post, request, app_engine(request), form)
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(session.SESSION_COOKIE, path=session.COOKIE_PATH)
    return _secure(resp)


# ---------------------------------------------------------------- pages


def _page(name: str) -> Callable[[Request], Response]:
    path, build, template, title = PAGES[name]

    def handler(request: Request) -> Response:
        engine = app_engine(request)
        qp = request.query_params
        with engine.connect() as conn:
            s = _session(request, conn)
            q = parse_page_query(
                conn,
                start=qp.get("from"),
                end=qp.get("to"),
                workspace=qp.get("workspace"),
                view=qp.get("view"),
                stack=qp.get("stack"),
            )
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
            return _secure(resp)
        return _render(
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


for _name, (_path, *_rest) in PAGES.items():
    router.add_api_route(_path, _page(_name), methods=["GET"], response_class=HTMLResponse)


@router.get("/ui/")
def ui_slash(request: Request) -> Response:
    qs = request.url.query
    return RedirectResponse("/ui" + ("?" + qs if qs else ""), status_code=307)


# ---------------------------------------------------------------- actions


def _opt_cap(form: dict[str, str], field: str, label: str) -> int | None:
    """An optional cap field in USD: empty or ``none`` is no cap."""
    raw = form.get(field, "").strip().lstrip("$").replace(",", "")
    if raw == "" or raw.lower() == "none":
        return None
    try:
        return parse_cap_usd(raw, label)
    except MetisError as exc:
        raise UIError(400, exc.message) from None


def _cap_change(form: dict[str, str], field: str, label: str) -> int | _Keep | None:
    """A cap field of the set-caps form: empty keeps the cap, ``none`` clears it."""
    if not form.get(field, "").strip():
        return KEEP
    return _opt_cap(form, field, label)


@router.post("/ui/teams/caps")
async def team_caps(request: Request) -> Response:
    form = await _form(request)
    engine = app_engine(request)

    def do() -> str:
        _authorized_post(request, engine, form)
        team_id = _check_id(form.get("team", ""), "team")
        daily = _cap_change(form, "daily_cap_usd", "daily cap")
        monthly = _cap_change(form, "monthly_cap_usd", "monthly cap")
        try:
            with engine.begin() as conn:
                get_team(conn, team_id)
                t = set_caps(conn, team_id, daily_cap_nanousd=daily, monthly_cap_nanousd=monthly)
        except MetisError as exc:
            raise _metis_error(exc) from None

        def show(v: int | None) -> str:
            return "none" if v is None else fmt_usd(Decimal(v) / 10**9)

        return (
            f"Caps of team {t.name}: daily {show(t.daily_cap_nanousd)}, "
            f"monthly {show(t.monthly_cap_nanousd)}"
        )

    msg = await run_in_threadpool(do)
    return _redirect_with_flash(request, _safe_next(form.get("return_to")), msg)


@router.post("/ui/teams/{team_id}/disable")
async def team_disable(request: Request, team_id: str) -> Response:
    form = await _form(request)
    _check_id(team_id, "team id")
    engine = app_engine(request)

    def do() -> str:
        _authorized_post(request, engine, form)
        try:
            with engine.begin() as conn:
                t = disable_team(conn, team_id)
        except MetisError as exc:
            raise _metis_error(exc) from None
        return f"Team {t.name} disabled: its keys stop working from the next request"

    msg = await run_in_threadpool(do)
    return _redirect_with_flash(request, _safe_next(form.get("return_to")), msg)


@router.post("/ui/users/{user_id}/disable")
async def user_disable(request: Request, user_id: str) -> Response:
    form = await _form(request)
    _check_id(user_id, "user id")
    engine = app_engine(request)

    def do() -> str:
        _authorized_post(request, engine, form)
        try:
            with engine.begin() as conn:
                get_user(conn, user_id)
                u = disable_user(conn, user_id)
        except MetisError as exc:
            raise _metis_error(exc) from None
        return f"User {u.alias} disabled: their keys stop working from the next request"

    msg = await run_in_threadpool(do)
    return _redirect_with_flash(request, _safe_next(form.get("return_to")), msg)


@router.post("/ui/keys/{key_id}/revoke")
async def key_revoke(request: Request, key_id: str) -> Response:
    form = await _form(request)
    _check_id(key_id, "key id")
    engine = app_engine(request)

    def do() -> str:
        _authorized_post(request, engine, form)
        try:
            with engine.begin() as conn:
                get_key(conn, key_id)
                k, changed = revoke_key(conn, key_id, reason=form.get("reason") or None)
        except MetisError as exc:
            raise _metis_error(exc) from None
        return f"Key {k.name} ({k.id}) " + ("revoked" if changed else "was already revoked")

    msg = await run_in_threadpool(do)
    return _redirect_with_flash(request, _safe_next(form.get("return_to")), msg)


@router.post("/ui/keys")
async def key_issue(request: Request) -> Response:
    form = await _form(request)
    engine = app_engine(request)

    def do() -> Response:
        s = _authorized_post(request, engine, form)
        name = form.get("name", "").strip()
        if not name:
            raise UIError(400, "key name is required")
        workspace = form.get("workspace", "").strip()
        if not workspace:
            raise UIError(400, "workspace is required")
        user = form.get("user", "").strip() or None
        team = form.get("team", "").strip() or None
        cap = _opt_cap(form, "daily_cap_usd", "daily cap")
        models_raw = form.get("allowed_models", "").strip()
        models = [m.strip() for m in models_raw.split(",") if m.strip()] or None
        try:
            with engine.begin() as conn:
                key, secret = issue_key(
                    conn,
                    name=name,
                    workspace=workspace,
                    user=user,
                    team=team,
                    allowed_models=models,
                    daily_cap_nanousd=cap,
                )
        except MetisError as exc:
            raise _metis_error(exc) from None
        return _render(
            request,
            "key_issued.html",
            {
                "title": "Key issued",
                "key": key,
                "secret": secret,
                "session": s,
                "back": _safe_next(form.get("return_to")),
            },
        )

    return await run_in_threadpool(do)


@router.post("/ui/ingestion/{credential_id}/sync")
async def sync_now(request: Request, credential_id: str) -> Response:
    form = await _form(request)
    _check_id(credential_id, "credential id")
    engine = app_engine(request)
    settings = app_settings(request)

    def check() -> None:
        _authorized_post(request, engine, form)
        with engine.connect() as conn:
            try:
                cred = get_credential(conn, credential_id)
            except MetisError as exc:
                raise _metis_error(exc) from None
            if cred.id not in {c.id for c in list_credentials(conn, purpose="usage_admin")}:
                raise UIError(
                    400,
                    f"credential {credential_id} is not an active usage_admin key: nothing to sync",
                )

    await run_in_threadpool(check)
    outcomes = await asyncio.to_thread(
        run_job, engine, settings, name="ui", credential=credential_id, kind="sync"
    )
    if not outcomes:
        return _redirect_with_flash(
            request, _safe_next(form.get("return_to")), "Sync did not run (see the logs)", "error"
        )
    o = outcomes[0]
    msg = (
        f"Sync of {o.credential_id}: {o.status}, {o.stored} stored, {o.updated} updated, "
        f"{o.unchanged} unchanged" + (f"; error: {o.error_message}" if o.error_message else "")
    )
    return _redirect_with_flash(
        request,
        _safe_next(form.get("return_to")),
        msg,
        "error" if o.status == "failed" else "ok",
    )


# ---------------------------------------------------------------- errors and install


def _error_page(request: Request, exc: UIError) -> Response:
    ref = urlsplit(request.headers.get("referer") or "")
    back = _safe_next(ref.path + ("?" + ref.query if ref.query else ""))
    return _render(
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
    api.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    async def on_ui_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UIError)
        return _error_page(request, exc)

    async def on_login_required(request: Request, exc: Exception) -> Response:
        target = request.url.path + ("?" + request.url.query if request.url.query else "")
        if request.method != "GET":
            target = "/ui"
        resp = RedirectResponse("/ui/login?" + urlencode({"next": target}), status_code=303)
        return _secure(resp)

    api.add_exception_handler(UIError, on_ui_error)
    api.add_exception_handler(LoginRequired, on_login_required)
