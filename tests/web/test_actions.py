"""The dashboard's forms: set caps, issue/revoke keys, disable users/teams, sync now."""

import hashlib
import html
import re

import httpx
from sqlalchemy import Engine, select

from metis.config import get_settings
from metis.credentials import add_credential
from metis.db.tables import events, gateway_keys, ingest_runs, teams, users
from metis.workspaces import get_workspace
from tests.plugins.simulator import Simulator
from tests.web.conftest import UIClient
from tests.web.seed import USD, Seeded


def _flash(ui: UIClient, r: httpx.Response) -> str:
    assert r.status_code == 303, r.text
    page = ui.get(r.headers["location"])
    m = re.search(r'<p class="flash (ok|error)" role="status">(.*?)</p>', page.text, re.S)
    assert m, page.text[:2000]
    return html.unescape(m.group(2))


def _caps(engine: Engine, team_id: str) -> tuple[int | None, int | None]:
    with engine.connect() as c:
        row = c.execute(
            select(teams.c.daily_cap_nanousd, teams.c.monthly_cap_nanousd).where(
                teams.c.id == team_id
            )
        ).one()
    return row[0], row[1]


def test_set_caps(ui: UIClient, engine: Engine, seeded: Seeded) -> None:
    page = ui.get("/ui/teams").text
    assert 'action="/ui/teams/caps"' in page and '<option value="team_e">eng</option>' in page
    r = ui.form(
        "/ui/teams/caps",
        {
            "team": "team_e",
            "daily_cap_usd": "7.25",
            "monthly_cap_usd": "",
            "return_to": "/ui/teams",
        },
    )
    assert r.headers["location"] == "/ui/teams"
    # an empty field keeps that cap
    assert _flash(ui, r) == "Caps of team eng: daily $7.25, monthly $100.00"
    assert _caps(engine, "team_e") == (7_250_000_000, 100 * USD)
    # the flash shows once
    assert 'class="flash' not in ui.get("/ui/teams").text
    r = ui.form("/ui/teams/caps", {"team": "team_e", "monthly_cap_usd": "none"})
    assert _flash(ui, r) == "Caps of team eng: daily $7.25, monthly none"
    assert _caps(engine, "team_e") == (7_250_000_000, None)
    ui.form(
        "/ui/teams/caps", {"team": "team_o", "daily_cap_usd": "$1,000", "monthly_cap_usd": "20000"}
    )
    assert _caps(engine, "team_o") == (1000 * USD, 20000 * USD)


def test_bad_caps_are_400_and_change_nothing(ui: UIClient, engine: Engine, seeded: Seeded) -> None:
    before = _caps(engine, "team_e")
    for value, message in (
        ("abc", "daily cap: not a decimal amount: 'abc'"),
        ("-1", "daily cap: must not be negative"),
        ("0.0000000001", "daily cap: at most 9 decimal places"),
        ("NaN", "daily cap: not a finite amount"),
    ):
        r = ui.form(
            "/ui/teams/caps", {"team": "team_e", "daily_cap_usd": value, "monthly_cap_usd": "3"}
        )
        assert r.status_code == 400, value
        assert message in html.unescape(r.text), r.text
    assert _caps(engine, "team_e") == before
    r = ui.form("/ui/teams/caps", {"team": "team_e"})
    assert r.status_code == 400 and "nothing to change" in r.text
    r = ui.form("/ui/teams/caps", {"team": "team_nope", "daily_cap_usd": "1"})
    assert r.status_code == 404 and "unknown team 'team_nope'" in html.unescape(r.text)
    r = ui.form("/ui/teams/caps", {"team": "bad id", "daily_cap_usd": "1"})
    assert r.status_code == 400 and "invalid team" in r.text


def test_issue_then_revoke_a_key(ui: UIClient, engine: Engine, seeded: Seeded) -> None:
    r = ui.form(
        "/ui/keys",
        {
            "name": "carol-laptop",
            "workspace": "ws_1",
            "user": "usr_a",
            "team": "team_e",
            "daily_cap_usd": "3",
            "allowed_models": "gpt-4o, claude-sonnet-4-5",
            "return_to": "/ui/keys",
        },
    )
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    m = re.search(r'<pre class="secret" id="secret">(gw_[A-Za-z0-9_-]+)</pre>', r.text)
    assert m
    secret = m.group(1)
    with engine.connect() as c:
        row = c.execute(select(gateway_keys).where(gateway_keys.c.name == "carol-laptop")).one()
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert row.user_id == "usr_a" and row.team_id == "team_e"
    assert row.daily_cap_nanousd == 3 * USD
    assert row.allowed_models == ["gpt-4o", "claude-sonnet-4-5"]
    keys_page = ui.get("/ui/keys").text
    assert "carol-laptop" in keys_page and secret not in keys_page  # shown once only
    r = ui.form(f"/ui/keys/{row.id}/revoke", {"reason": "lost laptop", "return_to": "/ui/keys"})
    assert _flash(ui, r) == f"Key carol-laptop ({row.id}) revoked"
    with engine.connect() as c:
        after = c.execute(select(gateway_keys).where(gateway_keys.c.id == row.id)).one()
        kinds = [e for (e,) in c.execute(select(events.c.type).order_by(events.c.id))]
    assert after.revoked_at is not None and after.revoke_reason == "lost laptop"
    assert kinds.count("gateway.key_issued") == 1 and kinds.count("gateway.key_revoked") == 1
    again = ui.form(f"/ui/keys/{row.id}/revoke", {})
    assert _flash(ui, again).endswith("was already revoked")


def test_issue_key_bad_input(ui: UIClient, engine: Engine, seeded: Seeded) -> None:
    cases = (
        ({"name": "", "workspace": "ws_1"}, 400, "key name is required"),
        ({"name": "k", "workspace": ""}, 400, "workspace is required"),
        ({"name": "k", "workspace": "nope"}, 404, "unknown workspace 'nope'"),
        ({"name": "k", "workspace": "ws_1", "user": "usr_zz"}, 404, "unknown user"),
        ({"name": "k", "workspace": "ws_1", "daily_cap_usd": "x"}, 400, "daily cap: not a decimal"),
        ({"name": "k", "workspace": "ws_1", "allowed_models": "a b"}, 400, "invalid model name"),
    )
    for data, status, message in cases:
        r = ui.form("/ui/keys", data)
        assert r.status_code == status, (data, r.text[:300])
        assert message in html.unescape(r.text), (data, r.text)
    with engine.connect() as c:
        assert len(c.execute(select(gateway_keys.c.id)).all()) == 2  # nothing half-written


def test_disable_user_and_team(ui: UIClient, engine: Engine, seeded: Seeded) -> None:
    r = ui.form("/ui/users/usr_b/disable", {"return_to": "/ui/keys"})
    assert _flash(ui, r).startswith("User bob disabled")
    r = ui.form("/ui/teams/team_o/disable", {"return_to": "/ui/teams"})
    assert _flash(ui, r).startswith("Team ops disabled")
    with engine.connect() as c:
        assert c.execute(select(users.c.disabled).where(users.c.id == "usr_b")).scalar() is True
        assert c.execute(select(teams.c.disabled).where(teams.c.id == "team_o")).scalar() is True
    assert ui.form("/ui/users/usr_zz/disable", {}).status_code == 404
    # a disabled user is no longer offered for new keys
    assert '<option value="usr_b">' not in ui.get("/ui/keys").text


def test_sync_now(
    ui: UIClient, engine: Engine, simulator_shared: Simulator, seeded: Seeded
) -> None:
    with engine.begin() as c:
        cred = add_credential(
            c,
            get_settings(),
            workspace_id=get_workspace(c, "w").id,
            provider="openai",
            purposes=["usage_admin"],
            mode="admin",
            secret=simulator_shared.openai_admin_key,
            base_url=simulator_shared.url,
        )
    page = ui.get("/ui/ingestion").text
    assert f'action="/ui/ingestion/{cred.id}/sync"' in page
    assert 'action="/ui/ingestion/cred_oa/sync"' in page
    r = ui.form(f"/ui/ingestion/{cred.id}/sync", {"return_to": "/ui/ingestion"})
    assert _flash(ui, r).startswith(f"Sync of {cred.id}: ok,")
    with engine.connect() as c:
        runs = c.execute(select(ingest_runs.c.status).where(ingest_runs.c.credential_id == cred.id))
        assert [s for (s,) in runs] == ["ok"]
    page = ui.get("/ui/ingestion").text
    assert cred.id in page and "healthy" in page
    r = ui.form("/ui/ingestion/cred_nope/sync", {})
    assert r.status_code == 404
