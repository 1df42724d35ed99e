import hashlib
from decimal import Decimal

import pytest
from sqlalchemy import Engine, select

from metis.db.tables import gateway_keys, teams, users
from metis.errors import ConflictError, NotFoundError, ValidationError
from metis.identity import keys
from metis.identity.teams import add_team, disable_team
from metis.identity.users import add_user, disable_user
from metis.ledger import versions
from metis.workspaces import add_workspace
from tests.identity.helpers import dump, events_of


@pytest.fixture
def ws(engine: Engine) -> str:
    with engine.begin() as conn:
        return add_workspace(conn, "acme", "/srv/acme").id


def test_issue_stores_only_hash_and_prefix(engine: Engine, ws: str) -> None:
    with engine.begin() as conn:
        key, secret = keys.issue_key(conn, name="ci", workspace="acme")
    assert secret.startswith("gw_") and len(secret) == 3 + 43  # 32 bytes urlsafe-b64
    assert key.id.startswith("key_") and key.workspace_id == ws
    assert key.display_prefix == secret[:10]
    with engine.connect() as conn:
        row = conn.execute(select(gateway_keys)).mappings().one()
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(dump(engine))
    assert secret not in repr(key)


def test_secrets_are_random(engine: Engine, ws: str) -> None:
    with engine.begin() as conn:
        got = {keys.issue_key(conn, name=f"k{i}", workspace=ws)[1] for i in range(20)}
    assert len(got) == 20


def test_key_issued_event_once_with_spec_fields(engine: Engine, ws: str) -> None:
    with engine.begin() as conn:
        v = versions.read(conn, "identity")
        key, _ = keys.issue_key(
            conn,
            name="alice-cc",
            workspace="/srv/acme",
            user="alice",
            team="eng",
            allowed_models=["gpt-4o", "claude-sonnet-4-5", "gpt-4o"],
            daily_cap_nanousd=2_500_000_000,
            create_user=True,
            create_team=True,
        )
        # user + team + key, each bumps
        assert versions.read(conn, "identity") == v + 3
        u = conn.execute(select(users)).mappings().one()
        t = conn.execute(select(teams)).mappings().one()
    assert (u["alias"], u["display_name"], u["email"]) == ("alice", "alice", None)
    assert (t["name"], t["daily_cap_nanousd"], t["monthly_cap_nanousd"]) == ("eng", None, None)
    evs = events_of(engine, "gateway.key_issued")
    assert len(evs) == 1
    ev = evs[0]
    assert ev["payload"] == {
        "key_id": key.id,
        "name": "alice-cc",
        "workspace_path": "/srv/acme",
        "user_id": u["id"],
        "team_id": t["id"],
        "allowed_models": ["gpt-4o", "claude-sonnet-4-5"],
        "daily_cap_usd": "2.500000000",
        "issued_at": ev["payload"]["issued_at"],
    }
    assert ev["payload"]["issued_at"].endswith("Z")
    assert (ev["workspace_id"], ev["user_id"], ev["team_id"], ev["gateway_key_id"]) == (
        ws,
        u["id"],
        t["id"],
        key.id,
    )
    assert Decimal(ev["payload"]["daily_cap_usd"]) == Decimal("2.5")


def test_event_workspace_path_falls_back_to_name(engine: Engine) -> None:
    with engine.begin() as conn:
        add_workspace(conn, "nopath")
        keys.issue_key(conn, name="k", workspace="nopath")
    (ev,) = events_of(engine, "gateway.key_issued")
    assert ev["payload"]["workspace_path"] == "nopath"
    assert ev["payload"]["user_id"] is None and ev["payload"]["allowed_models"] is None
    assert ev["payload"]["daily_cap_usd"] is None


def test_unknown_refs_without_create_write_nothing(engine: Engine, ws: str) -> None:
    before = dump(engine)
    cases = [
        (NotFoundError, {"user": "alice"}),
        (NotFoundError, {"team": "eng"}),
        (NotFoundError, {"user": "usr_01HZZZZZZZZZZZZZZZZZZZZZZZ", "create_user": True}),
        (NotFoundError, {"workspace": "nope"}),
        (ValidationError, {"user": "bad alias", "create_user": True}),
        (ValidationError, {"allowed_models": ["ok", "not ok"]}),
        (ValidationError, {"daily_cap_nanousd": -1}),
        (ValidationError, {"name": "  "}),
        # the user would be created, but the team is unknown: nothing at all is written
        (NotFoundError, {"user": "alice", "create_user": True, "team": "eng"}),
    ]
    for exc, kw in cases:
        args = {"name": "k", "workspace": "acme", **kw}
        with pytest.raises(exc), engine.begin() as conn:
            keys.issue_key(conn, **args)  # type: ignore[arg-type]
    assert dump(engine) == before


def test_disabled_user_or_team_is_refused_not_reenabled(engine: Engine, ws: str) -> None:
    with engine.begin() as conn:
        add_user(conn, "Alice", alias="alice")
        add_team(conn, "eng")
        disable_user(conn, "alice")
        disable_team(conn, "eng")
    before = dump(engine)
    for kw in ({"user": "alice"}, {"team": "eng"}):
        with pytest.raises(ConflictError, match="disabled"), engine.begin() as conn:
            keys.issue_key(conn, name="k", workspace=ws, create_user=True, create_team=True, **kw)
    assert dump(engine) == before


def test_revoke_once(engine: Engine, ws: str) -> None:
    with engine.begin() as conn:
        key, _ = keys.issue_key(conn, name="k", workspace=ws, user="bob", create_user=True)
    with engine.begin() as conn:
        v = versions.read(conn, "identity")
        rk, changed = keys.revoke_key(conn, key.id, reason="laptop lost")
        assert changed and rk.revoked and rk.revoke_reason == "laptop lost"
        assert versions.read(conn, "identity") == v + 1
    with engine.begin() as conn:
        rk2, changed2 = keys.revoke_key(conn, key.id, reason="again")
        assert not changed2 and rk2.revoked_at == rk.revoked_at
        assert rk2.revoke_reason == "laptop lost"
        assert versions.read(conn, "identity") == v + 1
    evs = events_of(engine, "gateway.key_revoked")
    assert len(evs) == 1
    assert evs[0]["payload"] == {
        "key_id": key.id,
        "revoked_at": evs[0]["payload"]["revoked_at"],
        "reason": "laptop lost",
    }
    assert (evs[0]["gateway_key_id"], evs[0]["workspace_id"], evs[0]["user_id"]) == (
        key.id,
        ws,
        key.user_id,
    )


def test_revoke_errors(engine: Engine, ws: str) -> None:
    with engine.begin() as conn:
        key, _ = keys.issue_key(conn, name="k", workspace=ws)
    before = dump(engine)
    with pytest.raises(NotFoundError, match="unknown gateway key"), engine.begin() as conn:
        keys.revoke_key(conn, "key_nope")
    with pytest.raises(ValidationError, match="reason"), engine.begin() as conn:
        keys.revoke_key(conn, key.id, reason="two\nlines")
    assert dump(engine) == before


def test_list_keys(engine: Engine, ws: str) -> None:
    with engine.begin() as conn:
        add_workspace(conn, "other")
        a, _ = keys.issue_key(conn, name="a", workspace=ws, allowed_models=["gpt-4o"])
        b, _ = keys.issue_key(conn, name="b", workspace="other")
        keys.revoke_key(conn, a.id)
        assert [k.id for k in keys.list_keys(conn)] == [a.id, b.id]
        assert [k.id for k in keys.list_keys(conn, include_revoked=False)] == [b.id]
        (only,) = keys.list_keys(conn, workspace="acme")
        assert only.id == a.id and only.allowed_models == ("gpt-4o",) and only.revoked
