"""Gateway auth: token -> SHA-256 -> key -> `Principal` (spec 003 §4.3).

Two ways in, same rules:

- `resolve(conn, token)`: one indexed lookup by digest, for callers without a cache.
- `load_key_snapshots(conn)` + `authenticate(snapshots, token)`: the gateway
  keeps the snapshots in memory, reloads them when
  ``metis.ledger.versions.read(conn, "identity")`` moves, and authenticates
  without touching the database.

Unknown or revoked key, disabled user, disabled team: `AuthError` (the
gateway maps it to 401 ``authentication_error``). Keys issued without a user
or team resolve to a principal whose ``user_id``/``team_id`` are None and
keep working. Digests are compared with `hmac.compare_digest` after the
lookup, so no comparison depends on how much of a secret matched.
"""

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from sqlalchemy import Connection, Row, Select, select

from metis.db.tables import gateway_keys, teams, users, workspaces
from metis.errors import MetisError
from metis.identity.records import models_tuple

# Tokens longer than this are rejected before hashing (nothing legitimate is).
MAX_TOKEN_LEN = 512

AuthReason = Literal["missing", "unknown_key", "revoked", "user_disabled", "team_disabled"]


def hash_secret(token: str) -> str:
    """SHA-256 hex digest of a secret, as stored in ``gateway_keys.secret_sha256``."""
    return hashlib.sha256(token.encode()).hexdigest()


class AuthError(MetisError):
    """The gateway key does not authenticate; map to 401 ``authentication_error``.

    ``reason`` is machine-readable; the message never contains the token.
    """

    exit_code = 1

    def __init__(self, message: str, reason: AuthReason = "unknown_key") -> None:
        super().__init__(message)
        self.reason: AuthReason = reason


class Principal(msgspec.Struct, frozen=True):
    """The (user, team, workspace) a request bills to; a per-request projection, never stored.

    ``workspace_path`` is the workspace's path, or its name when it has none
    (the same value ``gateway.key_issued`` carries).
    """

    user_id: str | None
    team_id: str | None
    workspace_id: str
    workspace_path: str
    gateway_key_id: str | None


class KeySnapshot(msgspec.Struct, frozen=True):
    """Everything the gateway needs about one key, flattened for an in-memory cache.

    Revoked keys and keys of disabled users/teams are included (flags set) so a
    cache can answer "no" without a database round trip.
    """

    key_id: str
    name: str
    workspace_id: str
    workspace_path: str
    user_id: str | None
    team_id: str | None
    allowed_models: tuple[str, ...] | None
    daily_cap_nanousd: int | None
    revoked: bool
    user_disabled: bool
    team_disabled: bool
    team_daily_cap_nanousd: int | None
    team_monthly_cap_nanousd: int | None
    user_daily_cap_nanousd: int | None = None
    user_monthly_cap_nanousd: int | None = None

    def principal(self) -> Principal:
        """The principal this key asserts (no validity check: see `check`)."""
        return Principal(
            user_id=self.user_id,
            team_id=self.team_id,
            workspace_id=self.workspace_id,
            workspace_path=self.workspace_path,
            gateway_key_id=self.key_id,
        )

    def check(self) -> None:
        """Raise `AuthError` if the key is revoked or its user/team is disabled."""
        if self.revoked:
            raise AuthError("gateway key revoked", "revoked")
        if self.user_disabled:
            raise AuthError("user disabled", "user_disabled")
        if self.team_disabled:
            raise AuthError("team disabled", "team_disabled")


def _snapshot_query() -> Select[Any]:
    return (
        select(
            gateway_keys.c.id,
            gateway_keys.c.secret_sha256,
            gateway_keys.c.name,
            gateway_keys.c.workspace_id,
            workspaces.c.path.label("ws_path"),
            workspaces.c.name.label("ws_name"),
            gateway_keys.c.user_id,
            gateway_keys.c.team_id,
            gateway_keys.c.allowed_models,
            gateway_keys.c.daily_cap_nanousd,
            gateway_keys.c.revoked_at,
            users.c.disabled.label("user_disabled"),
            teams.c.disabled.label("team_disabled"),
            teams.c.daily_cap_nanousd.label("team_daily"),
            teams.c.monthly_cap_nanousd.label("team_monthly"),
            users.c.daily_cap_nanousd.label("user_daily"),
            users.c.monthly_cap_nanousd.label("user_monthly"),
        )
        .join(workspaces, workspaces.c.id == gateway_keys.c.workspace_id)
        .outerjoin(users, users.c.id == gateway_keys.c.user_id)
        .outerjoin(teams, teams.c.id == gateway_keys.c.team_id)
    )


def _snapshot(r: Row[Any]) -> KeySnapshot:
    row = r._mapping
    return KeySnapshot(
        key_id=row["id"],
        name=row["name"],
        workspace_id=row["workspace_id"],
        workspace_path=row["ws_path"] or row["ws_name"],
        user_id=row["user_id"],
        team_id=row["team_id"],
        allowed_models=models_tuple(row["allowed_models"]),
        daily_cap_nanousd=row["daily_cap_nanousd"],
        revoked=row["revoked_at"] is not None,
        user_disabled=bool(row["user_disabled"]),
        team_disabled=bool(row["team_disabled"]),
        team_daily_cap_nanousd=row["team_daily"],
        team_monthly_cap_nanousd=row["team_monthly"],
        user_daily_cap_nanousd=row["user_daily"],
        user_monthly_cap_nanousd=row["user_monthly"],
    )


def load_key_snapshot(conn: Connection, digest: str) -> KeySnapshot | None:
    """The snapshot of the key whose secret has SHA-256 ``digest`` (one indexed lookup)."""
    row = conn.execute(_snapshot_query().where(gateway_keys.c.secret_sha256 == digest)).first()
    if row is None or not hmac.compare_digest(str(row.secret_sha256), digest):
        return None
    return _snapshot(row)


def load_key_snapshots(conn: Connection) -> dict[str, KeySnapshot]:
    """All keys (revoked ones included) keyed by secret SHA-256 hex, for a cache."""
    return {r.secret_sha256: _snapshot(r) for r in conn.execute(_snapshot_query())}


def _digest(token: str | None) -> str:
    if not token:
        raise AuthError("missing gateway key", "missing")
    if len(token) > MAX_TOKEN_LEN or not token.startswith("gw_"):
        raise AuthError("invalid gateway key", "unknown_key")
    return hash_secret(token)


def authenticate(
    snapshots: Mapping[str, KeySnapshot], token: str | None
) -> tuple[Principal, KeySnapshot]:
    """Resolve ``token`` against an in-memory snapshot map (from `load_key_snapshots`)."""
    digest = _digest(token)
    snap = snapshots.get(digest)
    if snap is None:
        raise AuthError("invalid gateway key", "unknown_key")
    snap.check()
    return snap.principal(), snap


def resolve(conn: Connection, token: str | None) -> tuple[Principal, KeySnapshot]:
    """Resolve ``token`` with one database lookup; `AuthError` if it must not authenticate."""
    digest = _digest(token)
    row = conn.execute(_snapshot_query().where(gateway_keys.c.secret_sha256 == digest)).first()
    if row is None or not hmac.compare_digest(str(row.secret_sha256), digest):
        raise AuthError("invalid gateway key", "unknown_key")
    snap = _snapshot(row)
    snap.check()
    return snap.principal(), snap
