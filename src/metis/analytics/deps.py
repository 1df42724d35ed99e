"""FastAPI dependencies shared by every admin surface: database engine and admin auth.

Other components (reconciliation API, cron trigger, dashboard) reuse these::

    from metis.analytics.deps import AdminDep, EngineDep, require_admin

    @router.get("/analytics/reconciliation")
    def reconciliation(admin: AdminDep, engine: EngineDep) -> ...: ...

    # or, for a whole router:
    router = APIRouter(dependencies=[Depends(require_admin)])

`require_admin` answers 401 (``{"detail": {"error": "unauthorized", ...}}``,
``WWW-Authenticate: Bearer``) unless ``Authorization: Bearer <token>`` carries
``METIS_ADMIN_TOKEN`` or a live token from ``metis admin token create``.
Gateway keys and ingest tokens are not admin tokens, so they get 401 too.
Failed checks are counted per client address and credential prefix; over the
limit the answer is 429 with ``Retry-After`` before the token is checked
(`check_throttle`, `metis.security.throttle`).

The engine and settings come from ``app.state.metis_engine`` /
``app.state.metis_settings`` when a component set them (`bind_app` does), else
they are made once from the environment and cached on the app.
"""

import math
import threading
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy import Engine

from metis.analytics.admin_tokens import AdminIdentity, verify
from metis.config import Settings, get_settings
from metis.db.engine import make_engine
from metis.security.throttle import FailureThrottle, Policy

_lock = threading.Lock()


def bind_app(app: FastAPI, settings: Settings, engine: Engine | None = None) -> None:
    """Attach settings (and optionally an engine) to ``app`` for the dependencies below."""
    app.state.metis_settings = settings
    if engine is not None:
        app.state.metis_engine = engine


def app_settings(request: Request) -> Settings:
    """The settings the app was built with (the environment's when none were bound)."""
    s = getattr(request.app.state, "metis_settings", None)
    if s is None:
        s = get_settings()
        request.app.state.metis_settings = s
    return s


def app_engine(request: Request) -> Engine:
    """The app's shared engine, created on first use from its settings."""
    eng = getattr(request.app.state, "metis_engine", None)
    if eng is None:
        with _lock:
            eng = getattr(request.app.state, "metis_engine", None)
            if eng is None:
                eng = make_engine(settings=app_settings(request))
                request.app.state.metis_engine = eng
    return eng


def auth_throttle(request: Request) -> FailureThrottle:
    """The app's failed-auth throttle (`metis.security.throttle`), one per app and process."""
    t = getattr(request.app.state, "metis_throttle", None)
    if t is None:
        with _lock:
            t = getattr(request.app.state, "metis_throttle", None)
            if t is None:
                t = request.app.state.metis_throttle = throttle_for(app_settings(request))
    assert isinstance(t, FailureThrottle)
    return t


def throttle_for(settings: Settings) -> FailureThrottle:
    """A throttle with the policy of ``settings`` (``METIS_AUTH_FAIL_*``)."""
    return FailureThrottle(
        Policy(
            limit=settings.auth_fail_limit,
            prefix_limit=settings.auth_fail_prefix_limit,
            window_s=settings.auth_fail_window_seconds,
        )
    )


def client_address(request: Request) -> str | None:
    """The client's address (uvicorn applies X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else None


def throttled(wait: float) -> HTTPException:
    """The 429 of a throttled credential check (same ``detail`` shape as a 401)."""
    seconds = max(1, math.ceil(wait))
    return HTTPException(
        status_code=429,
        detail={
            "error": "too_many_failures",
            "message": f"too many failed authentications from this client or for this "
            f"credential; retry in {seconds} s",
        },
        headers={"Retry-After": str(seconds)},
    )


def check_throttle(
    request: Request, credential: str | None
) -> tuple[FailureThrottle, tuple[str, ...]]:
    """Raise 429 when the request's address or credential prefix is throttled; else return
    the throttle and the request's keys (for `FailureThrottle.failed` after a failed check)."""
    t = auth_throttle(request)
    keys = t.keys(client_address(request), credential)
    wait = t.retry_after(*keys)
    if wait is not None:
        raise throttled(wait)
    return t, keys


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=401,
        detail={"error": "unauthorized", "message": message},
        headers={"WWW-Authenticate": "Bearer"},
    )


def require_admin(request: Request) -> AdminIdentity:
    """Authenticate an admin request (see the module docstring); 401 otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    throttle, keys = check_throttle(request, token.strip() or None)
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("admin token required: Authorization: Bearer <admin token>")
    engine = app_engine(request)
    with engine.connect() as conn:
        ident = verify(conn, app_settings(request), token.strip())
    if ident is None:
        throttle.failed(*keys)
        raise _unauthorized("invalid or revoked admin token")
    return ident


AdminDep = Annotated[AdminIdentity, Depends(require_admin)]
EngineDep = Annotated[Engine, Depends(app_engine)]
SettingsDep = Annotated[Settings, Depends(app_settings)]
