"""Dashboard sessions live on the server: logout, revocation and expiry end them everywhere.

Issue 19 item 6: "Logout only deletes the cookie: a copied cookie still opens
/ui/keys." Now a session is a database row (only the SHA-256 of the cookie's
secret is stored), checked on every request by whichever process serves it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine, select, update

from metis.analytics.admin_tokens import create_token, revoke_token
from metis.db.tables import dashboard_sessions
from metis.server import create_app
from metis.timeutil import utcnow
from metis.util.server_thread import ServerThread
from metis.web import session

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def two_servers(metis_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Two server processes' worth of apps on one database (as two replicas)."""
    with ServerThread(create_app()) as a, ServerThread(create_app()) as b:
        yield a.url, b.url


@pytest.fixture
def token(engine: Engine, metis_env: dict[str, str]) -> str:
    with engine.begin() as c:
        return create_token(c, "ops")[1]


def _login(base: str, token: str) -> tuple[str, str]:
    """Sign in like a browser; returns (session cookie value, CSRF token of the session)."""
    with httpx.Client(base_url=base, timeout=30) as c:
        nonce = CSRF_RE.search(c.get("/ui/login").text)
        assert nonce
        r = c.post("/ui/login", data={"csrf": nonce.group(1), "token": token, "next": "/ui"})
        assert r.status_code == 303, r.text
        value = r.cookies[session.SESSION_COOKIE]
        csrf = CSRF_RE.search(c.get("/ui/keys").text)
        assert csrf
        return value, csrf.group(1)


def _open(base: str, cookie: str, path: str = "/ui/keys") -> int:
    with httpx.Client(base_url=base, timeout=30) as c:
        c.cookies.set(session.SESSION_COOKIE, cookie, path="/ui")
        return c.get(path).status_code


def test_a_copied_cookie_stops_working_after_logout_on_every_process(
    two_servers: tuple[str, str], token: str
) -> None:
    a, b = two_servers
    cookie, csrf = _login(a, token)
    copy = cookie  # what an attacker copied from the browser
    assert _open(a, copy) == 200
    assert _open(b, copy) == 200  # the session is valid on any replica
    with httpx.Client(base_url=b, timeout=30) as c:
        c.cookies.set(session.SESSION_COOKIE, cookie, path="/ui")
        r = c.post("/ui/logout", data={"csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert _open(a, copy) == 303  # to the login page
    assert _open(b, copy) == 303
    # Another session of the same token is unaffected.
    other, _ = _login(a, token)
    assert _open(b, other) == 200


def test_revoking_the_token_ends_its_sessions_server_side(
    two_servers: tuple[str, str], token: str, engine: Engine
) -> None:
    a, b = two_servers
    cookie, _ = _login(a, token)
    with engine.begin() as c:
        revoke_token(c, "ops")
        ended = c.execute(select(dashboard_sessions.c.ended_at)).scalars().all()
    assert ended and all(e is not None for e in ended)
    assert _open(a, cookie) == 303 and _open(b, cookie) == 303


def test_a_session_expires(two_servers: tuple[str, str], token: str, engine: Engine) -> None:
    a, _ = two_servers
    cookie, _ = _login(a, token)
    with engine.connect() as c:
        (expires,) = c.execute(select(dashboard_sessions.c.expires_at)).scalars().all()
    assert timedelta(hours=11) < expires - utcnow() <= timedelta(seconds=session.SESSION_MAX_AGE_S)
    with engine.begin() as c:  # the clock has moved past the session's lifetime
        c.execute(update(dashboard_sessions).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert _open(a, cookie) == 303


def test_only_a_digest_of_the_session_secret_is_stored(
    two_servers: tuple[str, str], token: str, engine: Engine
) -> None:
    a, _ = two_servers
    cookie, _ = _login(a, token)
    with engine.connect() as c:
        rows = [dict(r) for r in c.execute(select(dashboard_sessions)).mappings()]
    assert len(rows) == 1
    assert rows[0]["id_sha256"] == hashlib.sha256(cookie.encode()).hexdigest()
    assert cookie not in repr(rows) and token not in repr(rows)
    assert len(cookie) >= 43  # 256 random bits, URL-safe
    # A forged or truncated cookie opens nothing.
    assert _open(a, cookie[:-1] + ("A" if cookie[-1] != "A" else "B")) == 303
    assert _open(a, "x" * 5000) == 303
