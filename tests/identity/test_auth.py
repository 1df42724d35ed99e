import hashlib
import secrets
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, insert

from metis.db.tables import gateway_keys
from metis.identity import keys, teams, users
from metis.identity.auth import (
    AuthError,
    KeySnapshot,
    Principal,
    authenticate,
    hash_secret,
    load_key_snapshots,
    resolve,
)
from metis.timeutil import utcnow
from tests.plugins.identity import IssuedKey, make_key


def _both(engine: Engine, token: str) -> tuple[Principal, KeySnapshot]:
    """Resolve through the database and through a snapshot cache; both must agree."""
    with engine.connect() as conn:
        via_db = resolve(conn, token)
        via_cache = authenticate(load_key_snapshots(conn), token)
    assert via_db == via_cache
    return via_db


def _fails(engine: Engine, token: str | None, reason: str) -> None:
    with engine.connect() as conn:
        snaps = load_key_snapshots(conn)
        for attempt in (lambda: resolve(conn, token), lambda: authenticate(snaps, token)):
            with pytest.raises(AuthError) as exc:
                attempt()
            assert exc.value.reason == reason
            if token:
                assert token not in str(exc.value)


def test_hash_secret_is_sha256_hex() -> None:
    assert hash_secret("gw_abc") == hashlib.sha256(b"gw_abc").hexdigest()


def test_bound_key_resolves_to_full_principal(
    engine: Engine, make_gateway_key: Callable[..., IssuedKey]
) -> None:
    k = make_gateway_key(
        workspace="acme",
        workspace_path="/srv/acme",
        user="alice",
        team="eng",
        allowed_models=["gpt-4o"],
        daily_cap_usd="1.5",
        team_daily_cap_usd="50",
        team_monthly_cap_usd="1200",
    )
    principal, snap = _both(engine, k.token)
    assert principal == Principal(
        user_id=k.user_id,
        team_id=k.team_id,
        workspace_id=k.workspace_id,
        workspace_path="/srv/acme",
        gateway_key_id=k.key_id,
    )
    assert principal.user_id and principal.user_id.startswith("usr_")
    assert principal.team_id and principal.team_id.startswith("team_")
    assert snap.allowed_models == ("gpt-4o",)
    assert snap.daily_cap_nanousd == 1_500_000_000
    assert snap.team_daily_cap_nanousd == 50_000_000_000
    assert snap.team_monthly_cap_nanousd == 1_200_000_000_000
    assert not (snap.revoked or snap.user_disabled or snap.team_disabled)


def test_key_without_user_or_team_keeps_working(
    engine: Engine, make_gateway_key: Callable[..., IssuedKey]
) -> None:
    k = make_gateway_key(user=None, team=None)
    principal, snap = _both(engine, k.token)
    assert (principal.user_id, principal.team_id) == (None, None)
    assert principal.gateway_key_id == k.key_id and principal.workspace_path == "acme"
    assert snap.team_daily_cap_nanousd is None and snap.allowed_models is None


def test_legacy_row_with_only_v1_fields_resolves(
    engine: Engine, make_gateway_key: Callable[..., IssuedKey]
) -> None:
    """A key row written without user/team/caps (as before identity) auths with nulls."""
    ws_id = make_gateway_key().workspace_id
    secret = "gw_" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            insert(gateway_keys).values(
                id="key_legacy",
                secret_sha256=hash_secret(secret),
                display_prefix=secret[:10],
                name="old",
                workspace_id=ws_id,
                created_at=utcnow(),
            )
        )
    principal, _ = _both(engine, secret)
    assert principal == Principal(None, None, ws_id, "acme", "key_legacy")


def test_disabled_user_fails_auth(engine: Engine, gateway_key: IssuedKey) -> None:
    _both(engine, gateway_key.token)
    with engine.begin() as conn:
        users.disable_user(conn, "alice")
    _fails(engine, gateway_key.token, "user_disabled")


def test_disabled_team_fails_auth(engine: Engine, gateway_key: IssuedKey) -> None:
    with engine.begin() as conn:
        teams.disable_team(conn, "eng")
    _fails(engine, gateway_key.token, "team_disabled")


def test_revoked_key_fails_auth_and_stays_in_snapshots(
    engine: Engine, make_gateway_key: Callable[..., IssuedKey]
) -> None:
    k = make_gateway_key()
    other = make_gateway_key(name="other")
    with engine.begin() as conn:
        keys.revoke_key(conn, k.key_id)
    _fails(engine, k.token, "revoked")
    _both(engine, other.token)  # only that key
    with engine.connect() as conn:
        snaps = load_key_snapshots(conn)
    assert set(snaps) == {hash_secret(k.token), hash_secret(other.token)}
    assert snaps[hash_secret(k.token)].revoked


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("gw_" + "A" * 43, "unknown_key"),
        ("sk-not-a-gateway-key", "unknown_key"),
        ("gw_" + "x" * 2000, "unknown_key"),
    ],
)
def test_unknown_or_malformed_tokens(
    engine: Engine, gateway_key: IssuedKey, token: str | None, reason: str
) -> None:
    _fails(engine, token, reason)


def test_a_key_stops_and_others_continue_when_bindings_change(engine: Engine) -> None:
    a = make_key(engine, user="alice", team="eng")
    b = make_key(engine, user="bob", team="eng")
    c = make_key(engine, user="carol", team="ops")
    with engine.begin() as conn:
        teams.disable_team(conn, "eng")
    _fails(engine, a.token, "team_disabled")
    _fails(engine, b.token, "team_disabled")
    assert _both(engine, c.token)[0].user_id == c.user_id
