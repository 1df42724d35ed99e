"""Every HTML page carries a Content-Security-Policy and loads nothing from another origin.

Issue 19 item 8: "/docs and /redoc load scripts from a public CDN at floating
versions, on the dashboard's origin, with no CSP; an air-gapped install shows
blank pages." Pages are found from the server's own route table (every GET
route that answers HTML), so a new page is covered without editing this
file. The browser side (no CSP violation in Chromium's console, the docs
actually render) is in tests/web/test_browser.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from metis.analytics.admin_tokens import create_token
from metis.server import create_app
from metis.util.server_thread import ServerThread
from metis.web.apidocs import ASSETS
from tests.security.test_auth_matrix import enumerate_routes

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
# Any attribute or CSS url() that points at another origin (scheme or protocol-relative).
EXTERNAL = re.compile(
    r"""(?:\b(?:src|href|action|srcset|data|poster|formaction)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:)?//)"""
    r"""|(?:url\(\s*["']?\s*(?:https?:)?//)|(?:@import\s+["']?(?:https?:)?//)""",
    re.IGNORECASE,
)


@pytest.fixture
def server(metis_env: dict[str, str], engine: Engine) -> Iterator[tuple[ServerThread, str, object]]:
    with engine.begin() as c:
        token = create_token(c, "csp")[1]
    app = create_app()
    with ServerThread(app) as srv:
        yield srv, token, app


def _html_paths(app: object) -> list[str]:
    """Every GET route without path parameters (those answering HTML are checked)."""
    return sorted(p for m, p in enumerate_routes(app) if m == "GET" and "{" not in p)


def test_every_html_page_has_a_csp_and_no_external_origin(
    server: tuple[ServerThread, str, object],
) -> None:
    srv, token, app = server
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        nonce = CSRF_RE.search(c.get("/ui/login").text)
        assert nonce
        r = c.post("/ui/login", data={"csrf": nonce.group(1), "token": token, "next": "/ui"})
        assert r.status_code == 303
        seen = []
        pages = [
            *_html_paths(app),
            "/ui?from=0001-01-01",  # an error page
            "/ui/teams?csv=nope",  # another one (404)
        ]
        for path in pages:
            resp = c.get(path, headers={"Authorization": f"Bearer {token}"})
            if "text/html" not in resp.headers.get("content-type", ""):
                continue
            seen.append(path)
            csp = resp.headers.get("content-security-policy", "")
            assert "default-src 'none'" in csp, (path, resp.headers)
            assert "script-src 'self'" in csp or "script-src" not in csp, (path, csp)
            assert "unsafe-eval" not in csp and "http" not in csp, (path, csp)
            assert "frame-ancestors 'none'" in csp, (path, csp)
            assert not EXTERNAL.findall(resp.text), (path, EXTERNAL.findall(resp.text))
            assert "<script>" not in resp.text.replace(" ", ""), path  # no inline scripts
        # The dashboard pages, the login page, the docs and error pages were all checked.
        for p in ("/ui", "/ui/teams", "/ui/keys", "/ui/login", "/docs", "/ui?from=0001-01-01"):
            assert p in seen, (p, seen)


def test_docs_assets_come_from_the_package(server: tuple[ServerThread, str, object]) -> None:
    srv, _, _ = server
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        page = c.get("/docs").text
        for name, (path, media) in ASSETS.items():
            r = c.get(f"/docs/assets/{name}")
            assert r.status_code == 200, name
            assert r.headers["content-type"].startswith(media)
            assert r.content == path.read_bytes()
            if name != "favicon.png":
                assert f"/docs/assets/{name}" in page, name
        assert c.get("/docs/assets/..%2f..%2fapidocs.py").status_code == 404
        assert c.get("/docs/assets/nope.js").status_code == 404
        assert c.get("/redoc").status_code == 404  # dropped: its bundle calls a CDN
        assert c.get("/docs/oauth2-redirect").status_code == 404
        assert c.get("/openapi.json").status_code == 200
