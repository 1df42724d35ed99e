"""Admin tokens: the credentials of the admin surfaces (analytics API, dashboard, cron).

A token is 256 random bits shown once at creation (``mta_…``); only its
SHA-256 is stored. `verify` accepts a token from the table (not revoked) or
the ``METIS_ADMIN_TOKEN`` setting, comparing digests in constant time.
Gateway keys and ingest tokens live in other tables and never verify here.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from metis.config import Settings
from metis.db.tables import admin_tokens, dashboard_sessions
from metis.errors import NotFoundError, ValidationError
from metis.ids import new_id
from metis.timeutil import utcnow

TOKEN_PREFIX = "mta_"  # noqa: S105 - a prefix, not a secret
ENV_TOKEN_ID = "env:METIS_ADMIN_TOKEN"  # noqa: S105 - a label


@dataclass(frozen=True)
class AdminToken:
    """A stored admin token (never its secret)."""

    id: str
    name: str
    display_prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class AdminIdentity:
    """Who an admin request authenticated as: a token id (or the env token) and its name."""

    token_id: str
    name: str


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn: Connection, name: str) -> tuple[AdminToken, str]:
    """Create a token named ``name``; returns the record and the secret (show it once)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError("admin token name must be 1-200 characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tok = AdminToken(new_id("adm"), name, secret[:10], utcnow(), None)
    conn.execute(
        admin_tokens.insert().values(
            id=tok.id,
            name=tok.name,
            secret_sha256=_sha256(secret),
            display_prefix=tok.display_prefix,
            created_at=tok.created_at,
            revoked_at=None,
        )
    )
    return tok, secret


def list_tokens(conn: Connection) -> list[AdminToken]:
    """All admin tokens, revoked ones included, oldest first."""
    rows = conn.execute(
        select(
            admin_tokens.c.id,
            admin_tokens.c.name,
            admin_tokens.c.display_prefix,
            admin_tokens.c.created_at,
            admin_tokens.c.revoked_at,
        ).order_by(admin_tokens.c.created_at, admin_tokens.c.id)
    ).all()
    return [AdminToken(*r) for r in rows]


def revoke_token(conn: Connection, ref: str) -> AdminToken:
    """Revoke the token with id or name ``ref`` (idempotent for an already revoked one)."""
    rows = (
        conn.execute(
            select(admin_tokens).where((admin_tokens.c.id == ref) | (admin_tokens.c.name == ref))
        )
        .mappings()
        .all()
    )
    if not rows:
        raise NotFoundError(f"unknown admin token {ref!r} (see `metis admin token list`)")
    if len(rows) > 1:
        raise ValidationError(f"several admin tokens are named {ref!r}; revoke by id")
    row = rows[0]
    revoked_at = row["revoked_at"]
    if revoked_at is None:
        revoked_at = utcnow()
        conn.execute(
            update(admin_tokens).where(admin_tokens.c.id == row["id"]).values(revoked_at=revoked_at)
        )
        # Its dashboard sessions end with it (load_session also re-checks the token).
        s = dashboard_sessions.c
        conn.execute(
            update(dashboard_sessions)
            .where(s.token_id == row["id"], s.ended_at.is_(None))
            .values(ended_at=revoked_at)
        )
    return AdminToken(row["id"], row["name"], row["display_prefix"], row["created_at"], revoked_at)


def verify(conn: Connection, settings: Settings, token: str) -> AdminIdentity | None:
    """The identity ``token`` authenticates as, or None.

    Digests are compared with `hmac.compare_digest`; the table lookup is by
    digest, so response time does not depend on how much of a secret matched.
    """
    if not token or len(token) > 512:
        return None
    digest = _sha256(token)
    env = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if env and hmac.compare_digest(digest, _sha256(env)):
        return AdminIdentity(ENV_TOKEN_ID, "METIS_ADMIN_TOKEN")
    row = conn.execute(
        select(admin_tokens.c.id, admin_tokens.c.name, admin_tokens.c.secret_sha256).where(
            admin_tokens.c.secret_sha256 == digest, admin_tokens.c.revoked_at.is_(None)
        )
    ).first()
    if row is None or not hmac.compare_digest(row.secret_sha256, digest):
        return None
    return AdminIdentity(row.id, row.name)
