"""Fixtures: a real Metis server with seeded ledger data and a logged-in dashboard client.

``ui`` is an httpx client on a `ServerThread` running `metis.server.create_app`
(the same app ``metis serve`` runs), already signed in at ``/ui/login`` with an
admin token; ``ui.csrf`` is the session's CSRF token scraped from a page, as
a browser would submit it. ``api`` is an admin-token client for the JSON API
on the same server (one server per test keeps the suite quick).
"""

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from metis.analytics.admin_tokens import create_token
from metis.server import create_app
from metis.util.server_thread import ServerThread
from tests.web.seed import Seeded, seed_all

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class UIClient(httpx.Client):
    csrf: str = ""

    def form(self, path: str, data: dict[str, str], **kw: object) -> httpx.Response:
        """POST ``data`` as a browser form, with the session's CSRF token."""
        return self.post(path, data={"csrf": self.csrf, **data}, **kw)  # type: ignore[arg-type]


def login(client: httpx.Client, token: str) -> httpx.Response:
    page = client.get("/ui/login")
    m = CSRF_RE.search(page.text)
    assert m, page.text
    return client.post("/ui/login", data={"csrf": m.group(1), "token": token, "next": "/ui"})


@pytest.fixture
def admin_token(metis_env: dict[str, str], engine: Engine) -> str:
    """A fresh admin token named ``tests`` (`metis admin token create` does the same)."""
    with engine.begin() as conn:
        return create_token(conn, "tests")[1]


@pytest.fixture
def api(server: ServerThread, admin_token: str) -> Iterator[httpx.Client]:
    """The JSON admin API of the same server, with the admin token."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
        yield c


@pytest.fixture
def server(metis_env: dict[str, str]) -> Iterator[ServerThread]:
    with ServerThread(create_app()) as srv:
        yield srv


@pytest.fixture
def anon(server: ServerThread) -> Iterator[httpx.Client]:
    """A client without a session (no redirects followed)."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
def ui(server: ServerThread, admin_token: str) -> Iterator[UIClient]:
    with UIClient(base_url=server.url, timeout=60) as c:
        r = login(c, admin_token)
        assert r.status_code == 303, r.text
        m = CSRF_RE.search(c.get("/ui").text)
        assert m
        c.csrf = m.group(1)
        yield c


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed_all(engine)
