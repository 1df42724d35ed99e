"""The identity records as stored in the database (spec 003 §3.2).

Frozen msgspec Structs, one per table row. Money is integer nano-USD
(`metis.money`); times are aware UTC datetimes. A `GatewayKey` never holds
its secret: only ``display_prefix`` (the first characters, for humans) is
kept next to the SHA-256 in the table, and that digest is not part of the
record either.
"""

from datetime import datetime
from typing import Any

import msgspec


class User(msgspec.Struct, frozen=True, kw_only=True):
    """A developer or service account; ``id`` (``usr_…``) is stable across key rotations.

    ``alias`` is the short, unique handle used by ``--user``. ``email`` is PII
    and lives only in the users table; ``email_sha256`` is derived from the
    normalized (trimmed, lower-cased) email. Neither ever goes into an event.
    Caps are optional hard caps in nano-USD over all the user's keys (UTC day,
    UTC calendar month), enforced like a team's.
    """

    id: str
    alias: str
    display_name: str
    email: str | None
    email_sha256: str | None
    created_at: datetime
    disabled: bool
    daily_cap_nanousd: int | None = None
    monthly_cap_nanousd: int | None = None


class Team(msgspec.Struct, frozen=True, kw_only=True):
    """A budget-owning group (``team_…``); caps are optional hard caps in nano-USD."""

    id: str
    name: str
    daily_cap_nanousd: int | None
    monthly_cap_nanousd: int | None
    created_at: datetime
    disabled: bool


class GatewayKey(msgspec.Struct, frozen=True, kw_only=True):
    """A gateway key (``key_…``): the auth artifact binding (workspace, user?, team?)."""

    id: str
    name: str
    display_prefix: str
    workspace_id: str
    user_id: str | None
    team_id: str | None
    allowed_models: tuple[str, ...] | None
    daily_cap_nanousd: int | None
    created_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def user_from_row(r: Any) -> User:
    return User(
        id=r["id"],
        alias=r["alias"],
        display_name=r["display_name"],
        email=r["email"],
        email_sha256=r["email_sha256"],
        created_at=r["created_at"],
        disabled=bool(r["disabled"]),
        daily_cap_nanousd=r["daily_cap_nanousd"],
        monthly_cap_nanousd=r["monthly_cap_nanousd"],
    )


def team_from_row(r: Any) -> Team:
    return Team(
        id=r["id"],
        name=r["name"],
        daily_cap_nanousd=r["daily_cap_nanousd"],
        monthly_cap_nanousd=r["monthly_cap_nanousd"],
        created_at=r["created_at"],
        disabled=bool(r["disabled"]),
    )


def models_tuple(value: Any) -> tuple[str, ...] | None:
    """The stored ``allowed_models`` JSON (list or null) as a tuple or None."""
    if value is None:
        return None
    return tuple(str(m) for m in value)


def key_from_row(r: Any) -> GatewayKey:
    return GatewayKey(
        id=r["id"],
        name=r["name"],
        display_prefix=r["display_prefix"],
        workspace_id=r["workspace_id"],
        user_id=r["user_id"],
        team_id=r["team_id"],
        allowed_models=models_tuple(r["allowed_models"]),
        daily_cap_nanousd=r["daily_cap_nanousd"],
        created_at=r["created_at"],
        revoked_at=r["revoked_at"],
        revoke_reason=r["revoke_reason"],
    )
