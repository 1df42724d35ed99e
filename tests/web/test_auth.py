"""Dashboard auth: login with an admin token, session cookie flags, CSRF, logout, revocation."""

import re
from collections.abc import Iterator

import httpx
import pytest

from metis.util.server_thread import ServerThread
from tests.conftest import Cli
from tests.web.conftest import CSRF_RE, UIClient, login


def _set_cookie(r: httpx.Response, name: str) -> str:
    headers = [v for k, v in r.headers.multi_items() if k.lower() == "set-cookie"]
    found = [h for h in headers if h.startswith(name + "=")]
    assert found, headers
    return found[0]


def test_pages_redirect_to_login_without_a_session(anon: httpx.Client) -> None:
    for path in ("/ui", "/ui/teams", "/ui/keys", "/ui/reconciliation", "/ui/ingestion"):
        r = anon.get(path + "?from=2026-11-01")
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/login?next=")
        assert path in httpx.URL(r.headers["location"]).params["next"]
    # CSV exports are pages too
    assert anon.get("/ui?csv=top_models").status_code == 303
    # a forged or garbage cookie is no session
    anon.cookies.set("metis_session", "eyJ0IjoiZW52In0.forged.sig", path="/ui")
    assert anon.get("/ui").status_code == 303
    login_page = anon.get("/ui/login")
    assert login_page.status_code == 200
    assert 'name="token"' in login_page.text and 'type="password"' in login_page.text


def test_login_sets_a_strict_httponly_session(anon: httpx.Client, admin_token: str) -> None:
    page = anon.get("/ui/login")
    login_cookie = _set_cookie(page, "metis_login")
    assert "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie
    r = login(anon, admin_token)
    assert r.status_code == 303 and r.headers["location"] == "/ui"
    cookie = _set_cookie(r, "metis_session")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http on 127.0.0.1; https sets Secure
    assert admin_token not in cookie  # the token itself is never in the cookie
    home = anon.get("/ui")
    assert home.status_code == 200
    assert home.headers["content-security-policy"].startswith("default-src 'none'")
    assert home.headers["x-frame-options"] == "DENY"
    assert home.headers["cache-control"] == "no-store"
    assert admin_token not in home.text


def test_secure_flag_over_https(server: ServerThread, admin_token: str) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (its default forwarded_allow_ips)
    with httpx.Client(base_url=server.url, headers={"X-Forwarded-Proto": "https"}) as c:
        page = c.get("/ui/login")
        assert "Secure" in _set_cookie(page, "metis_login")
        m = CSRF_RE.search(page.text)
        assert m
        # httpx keeps Secure cookies away from http://, so send it back by hand
        r = c.post(
            "/ui/login",
            data={"csrf": m.group(1), "token": admin_token},
            headers={"Cookie": f"metis_login={m.group(1)}"},
        )
        assert r.status_code == 303
        assert "Secure" in _set_cookie(r, "metis_session")


def test_bad_tokens_are_refused(anon: httpx.Client, cli: type[Cli]) -> None:
    r = login(anon, "mta_not-a-token")
    assert r.status_code == 401 and "invalid or revoked admin token" in r.text
    assert "metis_session" not in r.headers.get("set-cookie", "")
    empty = login(anon, "")
    assert empty.status_code == 400 and "enter an admin token" in empty.text
    # gateway keys are not admin tokens
    cli.ok("workspace", "add", "w")
    out = cli.ok("gateway", "issue-key", "--name", "k", "--workspace", "w").stdout
    gw = re.search(r"gw_[A-Za-z0-9_-]+", out)
    assert gw
    assert login(anon, gw.group(0)).status_code == 401


def test_login_form_needs_its_csrf_cookie(anon: httpx.Client, admin_token: str) -> None:
    page = anon.get("/ui/login")
    m = CSRF_RE.search(page.text)
    assert m
    r = anon.post("/ui/login", data={"csrf": "wrong", "token": admin_token})
    assert r.status_code == 403 and "CSRF" in r.text
    anon.cookies.clear()
    r = anon.post("/ui/login", data={"csrf": m.group(1), "token": admin_token})
    assert r.status_code == 403


def test_login_next_stays_on_the_dashboard(anon: httpx.Client, admin_token: str) -> None:
    for nxt, expected in (
        ("/ui/teams?from=2026-11-01", "/ui/teams?from=2026-11-01"),
        ("https://evil.example/", "/ui"),
        ("//evil.example/ui", "/ui"),
        ("/ui/..//evil", "/ui"),
        ("/ui/../analytics/cost", "/ui"),
        ("/uievil", "/ui"),
    ):
        m = CSRF_RE.search(anon.get("/ui/login").text)
        assert m
        r = anon.post("/ui/login", data={"csrf": m.group(1), "token": admin_token, "next": nxt})
        assert r.status_code == 303 and r.headers["location"] == expected, nxt


def test_post_without_csrf_is_403(ui: UIClient, seeded: object) -> None:
    for path, data in (
        ("/ui/teams/caps", {"team": "team_e", "daily_cap_usd": "1"}),
        ("/ui/keys", {"name": "x", "workspace": "w"}),
        ("/ui/keys/key_a/revoke", {}),
        ("/ui/users/usr_a/disable", {}),
        ("/ui/teams/team_e/disable", {}),
        ("/ui/logout", {}),
    ):
        assert ui.post(path, data=data).status_code == 403, path
        assert ui.post(path, data={**data, "csrf": "x" + ui.csrf}).status_code == 403, path
    # nothing changed
    teams = ui.get("/ui/teams").text
    assert "$5.00" in teams
    assert "revoked" not in ui.get("/ui/keys").text


def test_logout_ends_the_session(ui: UIClient) -> None:
    r = ui.form("/ui/logout", {})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert ui.get("/ui").status_code == 303


def test_revoking_the_admin_token_ends_its_sessions(ui: UIClient, cli: type[Cli]) -> None:
    assert ui.get("/ui").status_code == 200
    cli.ok("admin", "token", "revoke", "tests")
    assert ui.get("/ui").status_code == 303


def test_env_token_login_ends_when_the_env_token_changes(
    metis_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from metis.server import create_app

    monkeypatch.setenv("METIS_ADMIN_TOKEN", "env-token-one-0123456789")
    with ServerThread(create_app()) as srv, httpx.Client(base_url=srv.url) as c:
        assert login(c, "env-token-one-0123456789").status_code == 303
        assert c.get("/ui").status_code == 200
        cookie = c.cookies.get("metis_session")
    monkeypatch.setenv("METIS_ADMIN_TOKEN", "env-token-two-0123456789")
    with ServerThread(create_app()) as srv, httpx.Client(base_url=srv.url) as c:
        c.cookies.set("metis_session", cookie or "", path="/ui")
        assert c.get("/ui").status_code == 303


def test_oversized_or_non_form_posts_are_refused(ui: UIClient) -> None:
    big = ui.post("/ui/keys", data={"csrf": ui.csrf, "name": "x" * 70_000})
    assert big.status_code == 413 and "form too large" in big.text

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"a=" + b"x" * 1000 + b"&"

    chunked = ui.post(
        "/ui/keys",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 413
    as_json = ui.post("/ui/keys", json={"csrf": ui.csrf, "name": "k", "workspace": "w"})
    assert as_json.status_code == 415 and "x-www-form-urlencoded" in as_json.text


def test_a_session_works_on_every_replica(metis_env: dict[str, str], admin_token: str) -> None:
    """Replicas (or --workers) share the master key, so any of them accepts the cookie."""
    from metis.server import create_app

    with (
        ServerThread(create_app()) as a,
        ServerThread(create_app()) as b,
        httpx.Client(base_url=a.url) as ca,
        httpx.Client(base_url=b.url) as cb,
    ):
        assert login(ca, admin_token).status_code == 303
        cb.cookies.set("metis_session", ca.cookies.get("metis_session") or "", path="/ui")
        assert cb.get("/ui").status_code == 200
