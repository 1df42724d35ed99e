"""Gateway keys: issue (secret shown once), list, revoke.

The secret is ``gw_`` + 256 random bits (``secrets.token_urlsafe(32)``); only
its SHA-256 hex digest and a short display prefix are stored. Issuing and
revoking append ``gateway.key_issued`` / ``gateway.key_revoked`` events and
bump the ``identity`` config version, all in the caller's transaction, so a
rolled-back issuance leaves no event and no key.
"""

import re
import secrets
import unicodedata
from collections.abc import Sequence

from sqlalchemy import Connection, func, select, update

from metis.db.tables import gateway_keys
from metis.errors import ConflictError, NotFoundError, ValidationError
from metis.events import GatewayKeyIssued, GatewayKeyRevoked, GatewayKeyUpdated, append_event
from metis.identity.auth import hash_secret
from metis.identity.records import GatewayKey, Team, User, key_from_row
from metis.identity.teams import KEEP, _Keep, add_team, find_team
from metis.identity.users import add_user, find_user
from metis.identity.validate import check_alias, check_cap_nanousd, check_team_name
from metis.ids import new_id
from metis.ledger import versions
from metis.money import from_nanousd
from metis.security.fields import MAX_ALLOWED_MODELS
from metis.timeutil import iso, utcnow
from metis.workspaces import Workspace, get_workspace

TOKEN_PREFIX = "gw_"  # noqa: S105 - a prefix, not a secret
DISPLAY_PREFIX_LEN = 10  # "gw_" + 7 characters of the random part
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}$")
MAX_REASON_LEN = 500


def workspace_label(ws: Workspace) -> str:
    """What events and principals carry as ``workspace_path``: the path, else the name."""
    return ws.path or ws.name


def new_secret() -> str:
    """A fresh gateway key secret (``gw_…``, 256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _check_key_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200 or any(unicodedata.category(c) == "Cc" for c in name):
        raise ValidationError("invalid key name: 1-200 printable characters")
    return name


def _check_models(models: Sequence[str] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    out: list[str] = []
    for m in models:
        if not MODEL_RE.match(m):
            raise ValidationError(f"invalid model name {m!r} in --allow-models")
        if m not in out:
            out.append(m)
    if not out:
        raise ValidationError("--allow-models needs at least one model")
    if len(out) > MAX_ALLOWED_MODELS:
        raise ValidationError(f"--allow-models: more than {MAX_ALLOWED_MODELS} models")
    return tuple(out)


def check_user_ref(conn: Connection, ref: str, create: bool) -> User | None:
    """The usable user ``ref``; None when it is unknown and ``create`` allows creating it.

    Raises `NotFoundError` (unknown, not creatable: an id, or ``create`` off)
    or `ConflictError` (disabled). The alias to create is validated here.
    """
    user = find_user(conn, ref)
    if user is None:
        if ref.startswith("usr_") or not create:
            raise NotFoundError(f"unknown user {ref!r} (see `metis gateway user list`)")
        check_alias(ref)
        return None
    if user.disabled:
        raise ConflictError(
            f"user {user.alias!r} is disabled; a key for it would not authenticate "
            "(issue-key does not re-enable users)"
        )
    return user


def check_team_ref(conn: Connection, ref: str, create: bool) -> Team | None:
    """The usable team ``ref``; None when it is unknown and ``create`` allows creating it.

    Same rules as `check_user_ref`.
    """
    team = find_team(conn, ref)
    if team is None:
        if ref.startswith("team_") or not create:
            raise NotFoundError(f"unknown team {ref!r} (see `metis gateway team list`)")
        check_team_name(ref)
        return None
    if team.disabled:
        raise ConflictError(
            f"team {team.name!r} is disabled; a key for it would not authenticate "
            "(issue-key does not re-enable teams)"
        )
    return team


def issue_key(
    conn: Connection,
    *,
    name: str,
    workspace: str,
    user: str | None = None,
    team: str | None = None,
    allowed_models: Sequence[str] | None = None,
    daily_cap_nanousd: int | None = None,
    create_user: bool = False,
    create_team: bool = False,
) -> tuple[GatewayKey, str]:
    """Issue a key and return ``(record, secret)``; show the secret once, never store it.

    ``workspace`` is a workspace id, name or path; ``user``/``team`` are an
    id, alias/name or None. An unknown user/team is a `NotFoundError` unless
    ``create_user``/``create_team`` is set, in which case it is created
    (``display_name`` = alias, no email; a team without caps). A disabled
    user or team is a `ConflictError`: issuing never re-enables anything.
    Emits exactly one ``gateway.key_issued`` event.
    """
    key_name = _check_key_name(name)
    models = _check_models(allowed_models)
    cap = check_cap_nanousd(daily_cap_nanousd, "daily cap")
    ws = get_workspace(conn, workspace)
    # Check everything before creating anything.
    u = check_user_ref(conn, user, create_user) if user is not None else None
    t = check_team_ref(conn, team, create_team) if team is not None else None
    if user is not None and u is None:
        u = add_user(conn, user, alias=user)
    if team is not None and t is None:
        t = add_team(conn, team)
    secret = new_secret()
    key = GatewayKey(
        id=new_id("key"),
        name=key_name,
        display_prefix=secret[:DISPLAY_PREFIX_LEN],
        workspace_id=ws.id,
        user_id=u.id if u else None,
        team_id=t.id if t else None,
        allowed_models=models,
        daily_cap_nanousd=cap,
        created_at=utcnow(),
        revoked_at=None,
        revoke_reason=None,
    )
    conn.execute(
        gateway_keys.insert().values(
            id=key.id,
            secret_sha256=hash_secret(secret),
            display_prefix=key.display_prefix,
            name=key.name,
            workspace_id=key.workspace_id,
            user_id=key.user_id,
            team_id=key.team_id,
            allowed_models=list(models) if models is not None else None,
            daily_cap_nanousd=cap,
            created_at=key.created_at,
            revoked_at=None,
            revoke_reason=None,
        )
    )
    append_event(
        conn,
        GatewayKeyIssued(
            key_id=key.id,
            name=key.name,
            workspace_path=workspace_label(ws),
            user_id=key.user_id,
            team_id=key.team_id,
            allowed_models=models,
            daily_cap_usd=from_nanousd(cap) if cap is not None else None,
            issued_at=iso(key.created_at),
        ),
        ts=key.created_at,
        workspace_id=ws.id,
    )
    versions.bump(conn, "identity")
    return key, secret


def get_key(conn: Connection, key_id: str) -> GatewayKey:
    """The key with id ``key_id`` (revoked or not); unknown is a `NotFoundError`."""
    row = conn.execute(select(gateway_keys).where(gateway_keys.c.id == key_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"unknown gateway key {key_id!r} (see `metis gateway list-keys`)")
    return key_from_row(row)


def count_active_keys(
    conn: Connection, *, user_id: str | None = None, team_id: str | None = None
) -> int:
    """How many unrevoked keys are bound to ``user_id`` and/or ``team_id``."""
    q = select(func.count()).select_from(gateway_keys).where(gateway_keys.c.revoked_at.is_(None))
    if user_id is not None:
        q = q.where(gateway_keys.c.user_id == user_id)
    if team_id is not None:
        q = q.where(gateway_keys.c.team_id == team_id)
    return int(conn.execute(q).scalar_one())


def list_keys(
    conn: Connection, *, workspace: str | None = None, include_revoked: bool = True
) -> list[GatewayKey]:
    """Keys, oldest first; ``workspace`` (id, name or path) filters to one workspace."""
    q = select(gateway_keys).order_by(gateway_keys.c.created_at, gateway_keys.c.id)
    if workspace is not None:
        q = q.where(gateway_keys.c.workspace_id == get_workspace(conn, workspace).id)
    if not include_revoked:
        q = q.where(gateway_keys.c.revoked_at.is_(None))
    return [key_from_row(r) for r in conn.execute(q).mappings()]


def revoke_key(
    conn: Connection, key_id: str, *, reason: str | None = None
) -> tuple[GatewayKey, bool]:
    """Revoke a key; returns ``(record, changed)``.

    Revoking an already revoked key changes nothing and emits nothing
    (``changed`` is False); otherwise exactly one ``gateway.key_revoked``
    event is appended.
    """
    clean_reason = (reason or "").strip()
    if len(clean_reason) > MAX_REASON_LEN or any(
        unicodedata.category(c) == "Cc" for c in clean_reason
    ):
        raise ValidationError(f"invalid reason: one line, at most {MAX_REASON_LEN} characters")
    key = get_key(conn, key_id)
    if key.revoked:
        return key, False
    now = utcnow()
    res = conn.execute(
        update(gateway_keys)
        .where(gateway_keys.c.id == key.id, gateway_keys.c.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason=clean_reason or None)
    )
    if res.rowcount == 0:  # a concurrent revoke won
        return get_key(conn, key.id), False
    append_event(
        conn,
        GatewayKeyRevoked(key_id=key.id, revoked_at=iso(now), reason=clean_reason),
        ts=now,
        workspace_id=key.workspace_id,
        user_id=key.user_id,
        team_id=key.team_id,
    )
    versions.bump(conn, "identity")
    return get_key(conn, key.id), True


def rebind_key(
    conn: Connection,
    key_id: str,
    *,
    user: str | _Keep | None = KEEP,
    team: str | _Keep | None = KEEP,
) -> tuple[GatewayKey, bool]:
    """Bind an existing key to another user and/or team; returns ``(record, changed)``.

    ``user``/``team``: an id, alias/name, None to unbind, `KEEP` (default) to
    leave as is. The user/team must exist and be enabled (`NotFoundError`,
    `ConflictError`); a revoked key cannot be rebound. A change appends one
    ``gateway.key_updated`` event (ids before and after) and bumps the
    ``identity`` version, so the gateway stamps the new binding from its next
    request on; usage recorded before keeps the binding it was stamped with
    (so a window spanning the change reports ``partial_coverage``).
    """
    if isinstance(user, _Keep) and isinstance(team, _Keep):
        raise ValidationError("nothing to change: give --user and/or --team")
    key = get_key(conn, key_id)
    if key.revoked:
        raise ConflictError(f"gateway key {key.id} is revoked; issue a new key instead")
    user_id, team_id = key.user_id, key.team_id
    if not isinstance(user, _Keep):
        u = check_user_ref(conn, user, False) if user is not None else None
        user_id = u.id if u is not None else None
    if not isinstance(team, _Keep):
        t = check_team_ref(conn, team, False) if team is not None else None
        team_id = t.id if t is not None else None
    if (user_id, team_id) == (key.user_id, key.team_id):
        return key, False
    now = utcnow()
    conn.execute(
        update(gateway_keys)
        .where(gateway_keys.c.id == key.id)
        .values(user_id=user_id, team_id=team_id)
    )
    append_event(
        conn,
        GatewayKeyUpdated(
            key_id=key.id,
            user_id=user_id,
            team_id=team_id,
            previous_user_id=key.user_id,
            previous_team_id=key.team_id,
            updated_at=iso(now),
        ),
        ts=now,
        workspace_id=key.workspace_id,
        user_id=user_id,
        team_id=team_id,
    )
    versions.bump(conn, "identity")
    return get_key(conn, key.id), True
