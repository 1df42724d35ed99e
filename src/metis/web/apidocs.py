"""``/docs`` (Swagger UI): the API documentation, served offline.

FastAPI's own ``/docs`` and ``/redoc`` load their scripts from a public CDN
at floating versions, on the dashboard's origin, with no
Content-Security-Policy, and an air-gapped install shows blank pages (issue
19). Here ``/docs`` loads only files from this server:

- the Swagger UI bundle and CSS from the ``fastapi-offline`` package (pinned
  in ``pyproject.toml``: 1.7.7 ships Swagger UI 5.32.6, Apache-2.0);
- ``swagger-init.js`` from this package (starting Swagger UI needs a script,
  and an inline one would need ``'unsafe-inline'``).

``/redoc`` is gone (404): ReDoc's bundle loads its vendor's logo from a CDN
whatever the options, which the policy below blocks with a console error.
``/openapi.json`` and ``/docs`` serve the same document.

The page carries `DOCS_CSP`: scripts, styles, images and API calls from this
origin only (Swagger UI sets inline styles, so styles also allow
``'unsafe-inline'``). Assets are served under ``/docs/assets/`` from a fixed
list of names, with long-lived caching (they change only with the package).
"""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

if TYPE_CHECKING:
    from metis.server import Components

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_VENDOR = Path(str(files("fastapi_offline"))) / "static"
_OWN = Path(__file__).parent / "docs_static"
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (_VENDOR / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (_VENDOR / "swagger-ui.css", "text/css"),
    "favicon.png": (_VENDOR / "favicon.png", "image/png"),
    "swagger-init.js": (_OWN / "swagger-init.js", "text/javascript"),
}

router = APIRouter(include_in_schema=False)


def _page(request: Request, title: str, body: str) -> Response:
    root = html.escape(request.scope.get("root_path", ""))
    text = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="{root}/docs/assets/favicon.png">'
        f"{body.replace('{root}', root)}</html>\n"
    )
    resp = HTMLResponse(text)
    resp.headers["Content-Security-Policy"] = DOCS_CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "same-origin"
    return resp


@router.get("/docs")
def swagger_ui(request: Request) -> Response:
    """Swagger UI on ``/openapi.json``, all assets from this server."""
    return _page(
        request,
        f"{request.app.title} - Swagger UI",
        '<link rel="stylesheet" href="{root}/docs/assets/swagger-ui.css"></head><body>'
        '<div id="swagger-ui" data-openapi-url="{root}/openapi.json"></div>'
        '<script src="{root}/docs/assets/swagger-ui-bundle.js"></script>'
        '<script src="{root}/docs/assets/swagger-init.js"></script></body>',
    )


@router.get("/docs/assets/{name}")
def asset(name: str) -> Response:
    """One of `ASSETS` (404 for any other name: no path reaches the file system)."""
    found = ASSETS.get(name)
    if found is None:
        raise HTTPException(404, {"error": "not_found", "message": "no such asset"})
    path, media = found
    return FileResponse(
        path,
        media_type=media,
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


def install(comps: Components) -> None:
    """Serve ``/docs`` and its assets (FastAPI's CDN pages are turned off)."""
    comps.api.include_router(router)
