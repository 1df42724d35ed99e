"""Auth matrix: every route of ``metis serve`` × every credential kind.

The routes are read from the running app's own route table (the gateway's hot
routes, every FastAPI route and mount: API, OpenAPI and docs, dashboard), so
a new route without an entry in `POLICY` fails `test_every_route_has_a_policy`.
For each credential kind, every route is called once against one real server
(module scope) on the test database. A pair in `POLICY` must pass
authentication (a 2xx answer to a well-formed request, or the dashboard's
post/redirect/get 303); every other pair must be refused: 401 on the APIs and
the gateway, on the dashboard a 303 to ``/ui/login?next=…`` (or 403 for a
form without its CSRF token). docs/security.md
carries the same table.
"""

import hashlib
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import text

from metis.db.engine import make_engine
from metis.db.tables import metadata
from metis.secrets.master_key import generate_key_text
from metis.util.server_thread import ServerThread
from tests.conftest import PG_BASE
from tests.plugins.servers import GatewayServer, start_gateway

# ---------------------------------------------------------------- the intended pairs

# Credential kinds, each presented the way a client of that kind would.
KINDS = (
    "none",  # no credential at all
    "gateway_key",  # Authorization: Bearer gw_… (live key)
    "gateway_key_x_api_key",  # x-api-key: gw_… (Anthropic SDK style)
    "revoked_gateway_key",
    "disabled_user_key",  # a live key of a disabled user
    "ingest_token",  # Bearer mit_…
    "revoked_ingest_token",
    "admin_token",  # Bearer mta_… from `metis admin token create`
    "admin_env_token",  # Bearer $METIS_ADMIN_TOKEN
    "revoked_admin_token",
    "cron_secret",  # Bearer $METIS_CRON_SECRET
    "wrong_secret",  # a random gw_-shaped secret nobody issued
    "admin_token_x_api_key",  # an admin token in the wrong header
    "admin_session",  # dashboard session cookie (+ its CSRF token on forms) from /ui/login
    "admin_session_no_csrf",  # the same cookie, but forms without the CSRF token
    "revoked_admin_session",  # a session whose admin token was revoked after login
)

GATEWAY = frozenset({"gateway_key", "gateway_key_x_api_key"})
INGEST = frozenset({"ingest_token"})
ADMIN = frozenset({"admin_token", "admin_env_token"})
CRON = frozenset({"cron_secret"})
UI = frozenset({"admin_session"})
UI_READ = frozenset({"admin_session", "admin_session_no_csrf"})  # GET pages need no CSRF
PUBLIC = frozenset(KINDS)  # schema, docs, metrics, login page, static: no data, no secrets
NOBODY: frozenset[str] = frozenset()

# (method, path template) -> the credential kinds that may use it. Anything
# not listed for a route must get 401.
POLICY: dict[tuple[str, str], frozenset[str]] = {
    # gateway (inference)
    ("POST", "/v1/chat/completions"): GATEWAY,
    ("POST", "/v1/embeddings"): GATEWAY,
    ("POST", "/v1/messages"): GATEWAY,
    ("GET", "/v1/models"): GATEWAY,
    ("POST", "/v1/responses"): GATEWAY,
    ("POST", "/v1/messages/count_tokens"): GATEWAY,
    ("GET", "/v1/models/{model_id}"): GATEWAY,
    ("GET", "/v1/responses/{response_id}"): GATEWAY,
    ("DELETE", "/v1/responses/{response_id}"): GATEWAY,
    ("POST", "/v1/responses/{response_id}/cancel"): GATEWAY,
    ("GET", "/v1/responses/{response_id}/input_items"): GATEWAY,
    # gateway: Azure OpenAI clients' paths (api-key) and the Gemini shape (x-goog-api-key)
    ("POST", "/openai/deployments/{deployment}/chat/completions"): GATEWAY,
    ("POST", "/openai/deployments/{embedding_deployment}/embeddings"): GATEWAY,
    ("POST", "/openai/v1/chat/completions"): GATEWAY,
    ("POST", "/openai/v1/embeddings"): GATEWAY,
    ("POST", "/openai/v1/responses"): GATEWAY,
    ("GET", "/v1beta/models"): GATEWAY,
    ("GET", "/v1beta/models/{gemini_model}"): GATEWAY,
    ("POST", "/v1beta/models/{gemini_model}:generateContent"): GATEWAY,
    ("POST", "/v1beta/models/{gemini_model}:streamGenerateContent"): GATEWAY,
    ("POST", "/v1beta/models/{gemini_model}:countTokens"): GATEWAY,
    ("POST", "/v1/models/{gemini_model}:generateContent"): GATEWAY,
    # plugin push ingestion
    ("POST", "/v1/ingest/usage"): INGEST,
    # OTLP receiver (agent telemetry)
    ("POST", "/otel/v1/logs"): INGEST,
    ("POST", "/otel/v1/traces"): INGEST,
    ("POST", "/otel/v1/metrics"): INGEST,
    # external cron trigger
    ("POST", "/cron/usage"): CRON,
    # admin / analytics / export API
    ("GET", "/admin/whoami"): ADMIN,
    ("GET", "/analytics/cost"): ADMIN,
    ("GET", "/analytics/by_key"): ADMIN,
    ("GET", "/analytics/by_team"): ADMIN,
    ("GET", "/analytics/forecast"): ADMIN,
    ("GET", "/analytics/cache_effectiveness"): ADMIN,
    ("GET", "/analytics/savings"): ADMIN,
    ("GET", "/analytics/routing"): ADMIN,
    ("GET", "/analytics/reliability"): ADMIN,
    ("GET", "/analytics/ingest"): ADMIN,
    ("GET", "/analytics/reconciliation"): ADMIN,
    ("GET", "/export/usage"): ADMIN,
    ("GET", "/export/audit"): ADMIN,
    ("GET", "/export/focus"): ADMIN,
    ("GET", "/analytics/user/{user_id}/export"): ADMIN,
    ("POST", "/analytics/user/{user_id}/forget"): ADMIN,
    # public: API schema and its viewers, Prometheus metrics (labels carry no identities)
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/assets/{name}"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    # dashboard: an admin session cookie (login with an admin token); forms also need CSRF
    ("GET", "/ui"): UI_READ,
    ("GET", "/ui/"): PUBLIC,  # a bare 307 to /ui (which then checks), no data
    ("GET", "/ui/teams"): UI_READ,
    ("GET", "/ui/forecast"): UI_READ,
    ("GET", "/ui/savings"): UI_READ,
    ("GET", "/ui/routing"): UI_READ,
    ("GET", "/ui/keys"): UI_READ,
    ("GET", "/ui/reconciliation"): UI_READ,
    ("GET", "/ui/ingestion"): UI_READ,
    ("POST", "/ui/teams/caps"): UI,
    ("POST", "/ui/teams/{team_id}/disable"): UI,
    ("POST", "/ui/users/{user_id}/disable"): UI,
    ("POST", "/ui/keys/{key_id}/revoke"): UI,
    ("POST", "/ui/keys"): UI,
    ("POST", "/ui/ingestion/{credential_id}/sync"): UI,
    ("POST", "/ui/logout"): UI,
    ("GET", "/ui/login"): PUBLIC,
    # a bare POST lacks the login form's double-submit cookie, so it is refused for
    # everyone; the real login (form + cookie + admin token) makes `admin_session`.
    ("POST", "/ui/login"): NOBODY,
    ("MOUNT", "/ui/static"): PUBLIC,
}

# The gateway's hot routes dispatch on the path alone; this is the method each serves.
GATEWAY_METHODS = {
    "/v1/chat/completions": "POST",
    "/v1/embeddings": "POST",
    "/v1/messages": "POST",
    "/v1/models": "GET",
    "/v1/responses": "POST",
    "/v1/messages/count_tokens": "POST",
    "/openai/v1/chat/completions": "POST",
    "/openai/v1/embeddings": "POST",
    "/openai/v1/responses": "POST",
    "/v1beta/models": "GET",
}
# The gateway's path-prefix routes (ids in the path) and the routes each serves.
GATEWAY_PREFIX_ROUTES = {
    "/v1/models/": [
        ("GET", "/v1/models/{model_id}"),
        ("POST", "/v1/models/{gemini_model}:generateContent"),  # google-genai's v1
    ],
    "/openai/deployments/": [
        ("POST", "/openai/deployments/{deployment}/chat/completions"),
        ("POST", "/openai/deployments/{embedding_deployment}/embeddings"),
    ],
    "/v1beta/models/": [
        ("GET", "/v1beta/models/{gemini_model}"),
        ("POST", "/v1beta/models/{gemini_model}:generateContent"),
        ("POST", "/v1beta/models/{gemini_model}:streamGenerateContent"),
        ("POST", "/v1beta/models/{gemini_model}:countTokens"),
    ],
    "/v1/responses/": [
        ("GET", "/v1/responses/{response_id}"),
        ("DELETE", "/v1/responses/{response_id}"),
        ("POST", "/v1/responses/{response_id}/cancel"),
        ("GET", "/v1/responses/{response_id}/input_items"),
    ],
}

# Well-formed bodies, so an authenticated call answers 2xx (and a refusal is auth's doing).
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
    },
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "hi"},
    "/v1/messages": {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/v1/ingest/usage": {"items": []},
    "/otel/v1/logs": {},  # an empty export request: success
    "/otel/v1/traces": {},
    "/otel/v1/metrics": {},
    "/cron/usage": {"days": 1},
    "/v1/responses": {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 16},
    "/v1/messages/count_tokens": {
        "model": "claude-3-5-haiku-latest",
        "messages": [{"role": "user", "content": "hi"}],
    },
}
_CHAT = BODIES["/v1/chat/completions"]
_GEMINI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
BODIES.update(
    {
        "/openai/deployments/{deployment}/chat/completions": _CHAT,
        "/openai/deployments/{embedding_deployment}/embeddings": {"input": "hi"},
        "/openai/v1/chat/completions": _CHAT,  # the workspace's azure credential (simulator)
        "/openai/v1/embeddings": BODIES["/v1/embeddings"],
        # the simulator plays no Azure Responses API: address the openai credential (stub)
        "/openai/v1/responses": {**BODIES["/v1/responses"], "model": "openai/gpt-4o-mini"},
        "/v1beta/models/{gemini_model}:generateContent": _GEMINI,
        "/v1beta/models/{gemini_model}:streamGenerateContent": _GEMINI,
        "/v1beta/models/{gemini_model}:countTokens": _GEMINI,
        "/v1/models/{gemini_model}:generateContent": _GEMINI,
    }
)

# Dashboard form fields (the CSRF token is added for the kinds that carry one).
FORMS: dict[str, dict[str, str]] = {
    "/ui/teams/caps": {"team": "{team_id}", "daily_cap_usd": "75", "monthly_cap_usd": ""},
    "/ui/keys": {"name": "from-ui", "workspace": "w"},
}


# ---------------------------------------------------------------- the server


@dataclass
class Matrix:
    srv: GatewayServer
    creds: dict[str, dict[str, str]]  # kind -> request headers
    csrf: dict[str, str]  # kind -> CSRF token its dashboard forms carry
    path_params: dict[str, str]
    admin_token: str = ""  # for a throwaway session: logout ends the session it is given


def enumerate_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the server answers, from its own route tables."""
    comps = app.components
    out = {(GATEWAY_METHODS.get(p, "?"), p) for p in comps.gateway_routes}
    for prefix, _ in comps.gateway_prefixes:
        out.update(GATEWAY_PREFIX_ROUTES.get(prefix, [("?", prefix)]))
    for ctx in iter_route_contexts(comps.api.routes):  # included routers flattened
        path = ctx.path or repr(ctx.original_route)
        methods = getattr(ctx.original_route, "methods", None)
        if not methods:  # a mount or websocket route: must be listed too
            out.add(("MOUNT", path))
            continue
        out.update((m, path) for m in methods if m != "HEAD")
    return out


def _fresh_db(template: str, tmp: Path) -> str:
    """A database of this module's own (mirrors the ``db_url`` fixture, at module scope)."""
    if PG_BASE:
        eng = make_engine(template)
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        with eng.begin() as c:
            c.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        eng.dispose()
        return template
    path = tmp / "metis.db"
    shutil.copyfile(template, path)
    path.chmod(0o600)
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def matrix(_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    from metis.analytics import admin_tokens
    from metis.config import get_settings
    from metis.credentials import add_credential
    from metis.identity.keys import revoke_key
    from metis.identity.teams import add_team
    from metis.identity.users import add_user, disable_user
    from metis.ingest import tokens as ingest_tokens
    from metis.simulator import create_app
    from metis.simulator.gemini import new_key
    from tests.gateway.stub_upstream import app as stub_app

    home = tmp_path_factory.mktemp("auth-matrix") / "home"
    home.mkdir(mode=0o700)
    admin_env = "env-admin-" + secrets.token_urlsafe(24)
    cron = "cron-" + secrets.token_urlsafe(24)
    with pytest.MonkeyPatch.context() as mp:
        url = _fresh_db(_template, home)
        for k, v in {
            "METIS_HOME": str(home),
            "METIS_DATABASE_URL": url,
            "METIS_MASTER_KEY": generate_key_text(),
            "METIS_ADMIN_TOKEN": admin_env,
            "METIS_CRON_SECRET": cron,
            "METIS_INGEST_SCHEDULER": "false",
            "METIS_LOG_FORMAT": "json",
            # Hundreds of deliberate failures from one address: the verdicts under
            # test are 401/403; throttling has its own tests (test_auth_throttle.py).
            "METIS_AUTH_FAIL_LIMIT": "0",
        }.items():
            mp.setenv(k, v)
        engine = make_engine(url)
        upstream = ServerThread(stub_app).start()
        sim = ServerThread(create_app()).start()  # the Azure and Gemini upstreams
        srv = start_gateway(engine, upstream.url)
        try:
            srv.add_provider("azure", sim.url, secrets.token_hex(16))
            srv.add_provider("gemini", sim.url, new_key())
            _, live = srv.issue_key("live", user="alice", team="eng")
            revoked_id, revoked = srv.issue_key("revoked", user="alice")
            _, of_disabled = srv.issue_key("of-disabled", user="mallory")
            with engine.begin() as c:
                revoke_key(c, revoked_id, reason="auth matrix")
                disable_user(c, "mallory")
                _, itok = ingest_tokens.create_token(c, "w", "live")
                dead_itok, itok_revoked = ingest_tokens.create_token(c, "w", "dead")
                ingest_tokens.revoke_token(c, dead_itok.id)
                _, adm = admin_tokens.create_token(c, "live")
                _, adm_revoked = admin_tokens.create_token(c, "dead")
                admin_tokens.revoke_token(c, "dead")
                forget_me = add_user(c, "Forget Me", alias="forget-me")
                _, adm_ui_revoked = admin_tokens.create_token(c, "ui-dead")
                cred = add_credential(
                    c,
                    get_settings(),
                    workspace_id=srv.workspace_id,
                    provider="openai",
                    purposes=["usage_admin"],
                    mode="admin",
                    secret="sk-admin-auth-matrix-0001",
                    base_url=upstream.url,  # answers 404 to report calls: a fast failed sync
                )
                doomed_team = add_team(c, "doomed")
            srv.wait_keys()
            doomed_key, _ = srv.issue_key("doomed")
            session, csrf = _login(srv.url, adm)
            dead_session, dead_csrf = _login(srv.url, adm_ui_revoked)
            with engine.begin() as c:
                admin_tokens.revoke_token(c, "ui-dead")

            def bearer(s: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {s}"}

            creds = {
                "none": {},
                "gateway_key": bearer(live),
                "gateway_key_x_api_key": {"x-api-key": live},
                "revoked_gateway_key": bearer(revoked),
                "disabled_user_key": bearer(of_disabled),
                "ingest_token": bearer(itok),
                "revoked_ingest_token": bearer(itok_revoked),
                "admin_token": bearer(adm),
                "admin_env_token": bearer(admin_env),
                "revoked_admin_token": bearer(adm_revoked),
                "cron_secret": bearer(cron),
                "wrong_secret": bearer("gw_" + secrets.token_urlsafe(32)),
                "admin_token_x_api_key": {"x-api-key": adm},
                "admin_session": {"Cookie": session},
                "admin_session_no_csrf": {"Cookie": session},
                "revoked_admin_session": {"Cookie": dead_session},
            }
            assert set(creds) == set(KINDS)
            params = {
                "user_id": forget_me.id,
                "team_id": doomed_team.id,
                "key_id": doomed_key,
                "credential_id": cred.id,
                "name": "swagger-init.js",  # an API docs asset
                "model_id": "claude-haiku-4-5",  # the requests carry anthropic-version
                "response_id": "resp_authmatrix",  # the stub upstream knows every resp_…
                "deployment": "gpt-4o-mini",  # Azure deployments the simulator serves
                "embedding_deployment": "text-embedding-3-small",
                "gemini_model": "gemini-2.5-flash",
            }
            yield Matrix(
                srv,
                creds,
                {"admin_session": csrf, "revoked_admin_session": dead_csrf},
                params,
                adm,
            )
        finally:
            srv.close()
            upstream.stop()
            sim.stop()
            engine.dispose()


def _login(base_url: str, token: str) -> tuple[str, str]:
    """Log in to the dashboard like a browser; returns (Cookie header, CSRF token)."""
    from metis.web import session as ui_session

    with httpx.Client(base_url=base_url, timeout=30) as http:
        form = http.get("/ui/login")
        nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert nonce, form.text
        r = http.post("/ui/login", data={"csrf": nonce.group(1), "token": token, "next": "/ui"})
        assert r.status_code == 303 and r.headers["location"] == "/ui", r.text
        value = r.cookies[ui_session.SESSION_COOKIE]
        page = http.get("/ui/keys")  # the client keeps the session cookie it was given
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert page.status_code == 200 and csrf, page.text
    return f"{ui_session.SESSION_COOKIE}={value}", csrf.group(1)


def _url(m: Matrix, method: str, path: str) -> str:
    if method == "MOUNT":
        return path + "/metis.css"
    return path.format(**m.path_params)


def _call(http: httpx.Client, m: Matrix, method: str, path: str, kind: str) -> httpx.Response:
    url = _url(m, method, path)
    http.cookies.clear()  # only the credential under test, never a cookie from an earlier answer
    headers = {"anthropic-version": "2023-06-01", **m.creds[kind]}
    csrf = m.csrf.get(kind)
    if path == "/ui/logout" and kind in ("admin_session", "admin_session_no_csrf"):
        # Logout ends the session server-side: log out a fresh one of the same kind.
        cookie, fresh_csrf = _login(m.srv.url, m.admin_token)
        headers["Cookie"] = cookie
        csrf = fresh_csrf if csrf is not None else None
    if method == "POST" and path.startswith("/ui/"):
        form = {k: v.format(**m.path_params) for k, v in FORMS.get(path, {}).items()}
        if csrf is not None:
            form["csrf"] = csrf
        return http.post(url, data=form, headers=headers)
    if method == "POST":
        return http.post(url, json=BODIES.get(path) or {}, headers=headers)
    if method == "DELETE":
        return http.delete(url, headers=headers)
    assert method in ("GET", "MOUNT"), (method, path)
    return http.get(url, headers=headers)


def verdict(r: httpx.Response) -> str:
    """'allowed', 'denied' or 'unexpected' for one answer."""
    location = r.headers.get("location", "")
    # the dashboard sends a visitor without a session to the login, asking to come back
    if r.status_code == 401 or (r.status_code == 303 and location.startswith("/ui/login?next=")):
        return "denied"
    if r.status_code == 403 and "csrf" in r.text.lower():
        return "denied"
    if 200 <= r.status_code < 300 or r.status_code in (303, 307):
        return "allowed"
    return "unexpected"


# ---------------------------------------------------------------- the tests


def test_every_route_has_a_policy(matrix: Matrix) -> None:
    routes = enumerate_routes(matrix.srv.app)
    missing = sorted(routes - set(POLICY))
    stale = sorted(set(POLICY) - routes)
    assert not missing, f"routes without an auth policy in this test (add them): {missing}"
    assert not stale, f"policy entries for routes that no longer exist: {stale}"


@pytest.mark.parametrize("kind", KINDS)
def test_only_intended_pairs_pass(matrix: Matrix, kind: str) -> None:
    wrong: list[str] = []
    with httpx.Client(base_url=matrix.srv.url, timeout=30) as http:
        for (method, path), allowed in sorted(POLICY.items()):
            r = _call(http, matrix, method, path, kind)
            want = "allowed" if kind in allowed else "denied"
            got = verdict(r)
            if got != want:
                wrong.append(
                    f"{method} {path}: expected {want}, got {r.status_code} "
                    f"{r.headers.get('location', '')} {r.text[:200]}"
                )
    assert not wrong, f"credential kind {kind!r}:\n" + "\n".join(wrong)


def test_denials_say_what_is_wanted(matrix: Matrix) -> None:
    """A 401 names the credential the route wants and asks for Bearer (never a bare 401)."""
    wanted = {
        "/v1/chat/completions": "API key",
        "/v1/ingest/usage": "ingest token",
        "/otel/v1/logs": "ingest token",
        "/cron/usage": "METIS_CRON_SECRET",
        "/analytics/cost": "admin token",
    }
    with httpx.Client(base_url=matrix.srv.url, timeout=30) as http:
        for path, words in wanted.items():
            method = GATEWAY_METHODS.get(path, "POST" if path in BODIES else "GET")
            r = _call(http, matrix, method, path, "none")
            assert r.status_code == 401, path
            assert words.lower() in r.text.lower(), (path, r.text)


def test_secrets_are_stored_as_digests_only(matrix: Matrix) -> None:
    """The secrets the matrix used are not in the database; their SHA-256 digests are."""
    eng = matrix.srv.engine
    live = matrix.creds["gateway_key"]["Authorization"].split()[1]
    with eng.connect() as c:
        dump = repr(
            [tuple(row) for t in metadata.sorted_tables for row in c.execute(t.select()).all()]
        )
    assert live not in dump
    assert hashlib.sha256(live.encode()).hexdigest() in dump


def test_an_ingest_token_writes_only_its_own_workspace_and_source(matrix: Matrix) -> None:
    """A plugin token cannot pick the workspace, source or key its rows are stamped with."""
    from sqlalchemy import select

    from metis.db.tables import ingest_tokens, usage_records
    from metis.workspaces import add_workspace

    eng = matrix.srv.engine
    with eng.begin() as c:
        other = add_workspace(c, "other-ws")
    item = {
        "idempotency_key": "iso-1",
        "time": "2026-11-01T10:00:00Z",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 10,
        "output_tokens": 1,
    }
    forged = [
        {**item, "idempotency_key": "iso-2", "workspace_id": other.id},
        {**item, "idempotency_key": "iso-3", "source": "gateway"},
        {**item, "idempotency_key": "iso-4", "gateway_key_id": "key_forged"},
    ]
    with httpx.Client(base_url=matrix.srv.url, timeout=30) as http:
        r = http.post(
            "/v1/ingest/usage",
            json={"items": [item, *forged]},
            headers=matrix.creds["ingest_token"],
        )
    assert r.status_code == 422, r.text
    doc = r.json()
    assert doc["accepted"] == ["iso-1"]
    assert sorted(x["idempotency_key"] for x in doc["rejected"]) == ["iso-2", "iso-3", "iso-4"]
    with eng.connect() as c:
        tok = c.execute(select(ingest_tokens).where(ingest_tokens.c.name == "live")).one()
        rows = c.execute(
            select(usage_records).where(usage_records.c.dedupe_key.like("%iso-%"))
        ).all()
    assert len(rows) == 1
    row = rows[0]._mapping
    assert (row["workspace_id"], row["source"], row["source_ref"]) == (
        tok.workspace_id,
        tok.source,
        tok.id,
    )
    assert row["gateway_key_id"] is None
