"""Request and response plumbing of the dashboard: templates, cookies, forms, CSRF checks.

Shared by the page routes (`metis.web.app`) and the form actions
(`metis.web.actions`). Every HTML answer goes through `render` (security
headers, the one-shot flash message); every POST through `read_form` (bounded,
urlencoded only) and `authorized_post` (session + CSRF token, else 303 to the
login page or a 403 page).
"""

import re
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection, Engine

from metis.analytics.deps import app_settings
from metis.errors import ConfigError, ConflictError, MetisError, NotFoundError
from metis.web import session
from metis.web.params import UIError
from metis.web.tables import exact_usd, fmt_cell, fmt_usd

HERE = Path(__file__).parent
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
MAX_FORM_BYTES = 64 * 1024
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# (name, path, title) of the pages, in navigation order
NAV: tuple[tuple[str, str, str], ...] = (
    ("overview", "/ui", "Overview"),
    ("teams", "/ui/teams", "Teams"),
    ("keys", "/ui/keys", "Keys and users"),
    ("forecast", "/ui/forecast", "Forecast"),
    ("savings", "/ui/savings", "Savings and cache"),
    ("routing", "/ui/routing", "Routing and reliability"),
    ("reconciliation", "/ui/reconciliation", "Reconciliation"),
    ("ingestion", "/ui/ingestion", "Ingestion"),
)

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals.update(fmt_cell=fmt_cell, fmt_usd=fmt_usd, exact_usd=exact_usd)
env.filters["exact"] = lambda v: "" if v is None else format(Decimal(v), "f")
env.filters["plain"] = lambda v: "" if v is None else format(Decimal(v).normalize(), "f")


class LoginRequired(Exception):
    """No valid session: redirect to the login page."""


def ui_key(request: Request) -> bytes:
    """The cookie-signing key (derived once per app; 503 page without a master key)."""
    key = getattr(request.app.state, "metis_ui_key", None)
    if key is None:
        try:
            key = session.session_key(app_settings(request))
        except ConfigError as exc:
            raise UIError(503, f"dashboard unavailable: {exc.message}") from None
        request.app.state.metis_ui_key = key
    return bytes(key)


def secure(resp: Response) -> Response:
    """Add the dashboard's security headers (CSP without inline code, no framing, no caching)."""
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Cache-Control"] = "no-store"
    return resp


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https (uvicorn applies X-Forwarded-Proto)."""
    return request.url.scheme == "https"


def set_cookie(
    request: Request, resp: Response, name: str, value: str, max_age: int, path: str
) -> None:
    """Set a dashboard cookie: HttpOnly, SameSite=Strict, Secure over https."""
    resp.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def safe_next(value: str | None) -> str:
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


def current_session(request: Request, conn: Connection) -> session.Session:
    """The request's verified session; `LoginRequired` (303 to the login page) otherwise."""
    s = session.load_session(
        ui_key(request), conn, app_settings(request), request.cookies.get(session.SESSION_COOKIE)
    )
    if s is None:
        raise LoginRequired
    return s


def render(
    request: Request,
    template: str,
    ctx: dict[str, Any],
    *,
    status: int = 200,
) -> HTMLResponse:
    """A page from ``template`` with the security headers; shows and clears a flash message."""
    flash = None
    raw_flash = request.cookies.get(session.FLASH_COOKIE)
    if raw_flash:
        try:
            flash = session.load_flash(ui_key(request), raw_flash)
        except UIError:
            flash = None
    body = env.get_template(template).render(
        request_path=request.url.path,
        nav=NAV,
        flash=flash,
        **ctx,
    )
    resp = HTMLResponse(body, status_code=status)
    if raw_flash:
        resp.delete_cookie(session.FLASH_COOKIE, path=session.COOKIE_PATH)
    secure(resp)
    return resp


def redirect_with_flash(
    request: Request, to: str, message: str, kind: str = "ok"
) -> RedirectResponse:
    resp = RedirectResponse(to, status_code=303)
    set_cookie(
        request,
        resp,
        session.FLASH_COOKIE,
        session.dump_flash(ui_key(request), message, kind),
        session.FLASH_MAX_AGE_S,
        session.COOKIE_PATH,
    )
    secure(resp)
    return resp


async def read_form(request: Request) -> dict[str, str]:
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


def check_id(value: str, what: str) -> str:
    if not ID_RE.match(value):
        raise UIError(400, f"invalid {what}: must match ^[A-Za-z0-9_-]{{1,200}}$")
    return value


def ui_error(exc: MetisError) -> UIError:
    if isinstance(exc, NotFoundError):
        return UIError(404, exc.message)
    if isinstance(exc, ConflictError):
        return UIError(409, exc.message)
    return UIError(400, exc.message)


def authorized_post(request: Request, engine: Engine, form: dict[str, str]) -> session.Session:
    """The session of a POST whose CSRF token matches; `LoginRequired` / 403 otherwise."""
    with engine.connect() as conn:
        s = current_session(request, conn)
    if not session.check_csrf(s.csrf, form.get("csrf")):
        raise UIError(403, "missing or invalid CSRF token: reload the page and submit again")
    return s
