"""Admin auth: admin tokens and METIS_ADMIN_TOKEN pass; anything else is 401."""

import hashlib
import secrets

import httpx
import pytest
from sqlalchemy import Engine, insert

from metis.db.tables import gateway_keys, ingest_tokens, workspaces
from metis.server import create_app
from metis.timeutil import utcnow
from metis.util.server_thread import ServerThread
from tests.conftest import Cli


def _token(cli: type[Cli], name: str) -> str:
    out = cli.ok("admin", "token", "create", "--name", name).stdout
    return out.strip().splitlines()[-1]


def test_admin_token_lifecycle(
    cli: type[Cli], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = _token(cli, "dash")
    assert tok.startswith("mta_")
    listed = cli.ok("admin", "token", "list", "--json").stdout
    assert "dash" in listed and tok not in listed

    gw_secret = "gw_" + secrets.token_urlsafe(32)
    it_secret = "mit_" + secrets.token_urlsafe(32)
    now = utcnow()
    with engine.begin() as c:
        c.execute(insert(workspaces).values(id="ws_1", name="w", created_at=now))
        c.execute(
            insert(gateway_keys).values(
                id="key_1",
                secret_sha256=hashlib.sha256(gw_secret.encode()).hexdigest(),
                display_prefix=gw_secret[:8],
                name="k",
                workspace_id="ws_1",
                created_at=now,
            )
        )
        c.execute(
            insert(ingest_tokens).values(
                id="itok_1",
                workspace_id="ws_1",
                name="hermes",
                source="hermes_plugin",
                secret_sha256=hashlib.sha256(it_secret.encode()).hexdigest(),
                display_prefix=it_secret[:8],
                created_at=now,
            )
        )
    env_tok = "env-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("METIS_ADMIN_TOKEN", env_tok)
    with ServerThread(create_app()) as srv, httpx.Client(base_url=srv.url) as http:
        ok = http.get("/admin/whoami", headers={"Authorization": f"Bearer {tok}"})
        assert ok.status_code == 200 and ok.json()["name"] == "dash"
        env_ok = http.get("/admin/whoami", headers={"Authorization": f"Bearer {env_tok}"})
        assert env_ok.status_code == 200 and env_ok.json()["token_id"] == "env:METIS_ADMIN_TOKEN"
        for bad in (gw_secret, it_secret, tok + "x", "mta_nope"):
            r = http.get("/admin/whoami", headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401, bad
            assert r.json()["detail"]["error"] == "unauthorized"
        assert http.get("/admin/whoami").status_code == 401
        assert http.get("/admin/whoami", headers={"Authorization": tok}).status_code == 401
        cli.ok("admin", "token", "revoke", "dash")
        r = http.get("/admin/whoami", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 401
        assert http.get("/openapi.json").status_code == 200
    assert "revoked" not in cli.ok("admin", "token", "revoke", "dash").stderr
    err = cli.run("admin", "token", "revoke", "nope")
    assert err.exit_code != 0 and "unknown admin token" in err.stderr
