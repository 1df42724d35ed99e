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

The engine and settings come from ``app.state.metis_engine`` /
``app.state.metis_settings`` when a component set them (`bind_app` does), else
they are made once from the environment and cached on the app.
"""

import threading
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from sqlalchemy import Engine

from metis.analytics.admin_tokens import AdminIdentity, verify
from metis.config import Settings, get_settings
from metis.db.engine import make_engine

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
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("admin token required: Authorization: Bearer <admin token>")
    engine = app_engine(request)
    with engine.connect() as conn:
        ident = verify(conn, app_settings(request), token.strip())
    if ident is None:
        raise _unauthorized("invalid or revoked admin token")
    return ident


AdminDep = Annotated[AdminIdentity, Depends(require_admin)]
EngineDep = Annotated[Engine, Depends(app_engine)]
SettingsDep = Annotated[Settings, Depends(app_settings)]
