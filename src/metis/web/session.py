"""Dashboard sessions: server-side rows bound to a live admin token, and CSRF tokens.

A login stores a session row (`metis.db.tables.dashboard_sessions`) and sets
a cookie holding the session's random secret (256 bits); the table keeps
only its SHA-256, so a database reader cannot reuse a session. Every request
looks the session up and checks, on whichever process serves it:

- it was not ended: **logout ends it server-side**, so a copied cookie stops
  working at once, everywhere;
- it has not expired (`SESSION_MAX_AGE_S` after login, whatever the activity);
- its admin token still verifies: a revoked token ends its sessions (revoking
  also marks them ended), and a keyed fingerprint of the token's digest ends
  the sessions of a changed ``METIS_ADMIN_TOKEN``. The fingerprint's key is
  derived from the master key, so rotating the master key ends every session.

Cookie flags: ``HttpOnly``, ``SameSite=Strict``, ``Path=/ui``, ``Secure``
when the request came over https. CSRF: every POST form carries the
session's nonce (stored with the session) in a hidden ``csrf`` field,
compared in constant time; the login form (no session yet) uses a
double-submit cookie instead. Flash messages are signed cookies
(`itsdangerous`, key derived from the master key).
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Connection, and_, delete, or_, select, update

from metis.analytics.admin_tokens import ENV_TOKEN_ID, AdminIdentity
from metis.config import Settings
from metis.db.tables import admin_tokens, dashboard_sessions
from metis.secrets.master_key import load_master_key
from metis.timeutil import utcnow

SESSION_COOKIE = "metis_session"
LOGIN_COOKIE = "metis_login"
FLASH_COOKIE = "metis_flash"
COOKIE_PATH = "/ui"
SESSION_MAX_AGE_S = 12 * 3600
LOGIN_MAX_AGE_S = 3600
FLASH_MAX_AGE_S = 120
KEEP_ENDED = timedelta(days=1)
"""Ended or expired session rows are deleted this long after (at the next login)."""


@dataclass(frozen=True)
class Session:
    """A verified dashboard session."""

    token_id: str
    name: str
    csrf: str


def session_key(settings: Settings) -> bytes:
    """The dashboard's key: HMAC of the master key with a fixed label (domain separation)."""
    master = load_master_key(settings)
    return hmac.new(master.key, b"metis-ui-session-key-v1", hashlib.sha256).digest()


def _serializer(key: bytes, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt=salt, signer_kwargs={"digest_method": hashlib.sha256})


def _fingerprint(key: bytes, digest: str) -> str:
    """A keyed fingerprint of a token's SHA-256 digest (reveals nothing about the token)."""
    return hmac.new(key, b"fp:" + digest.encode(), hashlib.sha256).hexdigest()[:32]


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def create_session(conn: Connection, key: bytes, ident: AdminIdentity, token: str) -> str:
    """Store a session for a login with ``token`` (already verified as ``ident``).

    Returns the cookie value (the session secret, shown to this browser only).
    Runs in the caller's write transaction; also deletes long-ended sessions.
    """
    now = utcnow()
    conn.execute(
        delete(dashboard_sessions).where(
            or_(
                dashboard_sessions.c.expires_at < now - KEEP_ENDED,
                dashboard_sessions.c.ended_at < now - KEEP_ENDED,
            )
        )
    )
    secret = secrets.token_urlsafe(32)
    conn.execute(
        dashboard_sessions.insert().values(
            id_sha256=_sha256(secret),
            token_id=ident.token_id,
            token_fp=_fingerprint(key, _sha256(token)),
            name=ident.name[:200],
            csrf=secrets.token_urlsafe(24),
            created_at=now,
            expires_at=now + timedelta(seconds=SESSION_MAX_AGE_S),
            ended_at=None,
        )
    )
    return secret


def load_session(
    key: bytes, conn: Connection, settings: Settings, value: str | None
) -> Session | None:
    """The session of cookie ``value`` if it is live, unexpired and its admin token verifies."""
    if not value or len(value) > 200:
        return None
    t = dashboard_sessions.c
    row = conn.execute(
        select(t.token_id, t.token_fp, t.name, t.csrf).where(
            t.id_sha256 == _sha256(value), t.ended_at.is_(None), t.expires_at > utcnow()
        )
    ).first()
    if row is None:
        return None
    digest: str | None
    if row.token_id == ENV_TOKEN_ID:
        env = settings.admin_token.get_secret_value() if settings.admin_token else ""
        if not env:
            return None
        digest = _sha256(env)
    else:
        digest = conn.execute(
            select(admin_tokens.c.secret_sha256).where(
                admin_tokens.c.id == row.token_id, admin_tokens.c.revoked_at.is_(None)
            )
        ).scalar()
        if digest is None:
            return None
    if not hmac.compare_digest(row.token_fp, _fingerprint(key, digest)):
        return None
    return Session(token_id=row.token_id, name=row.name, csrf=row.csrf)


def end_session(conn: Connection, value: str | None) -> None:
    """End the session of cookie ``value`` (logout); a copy of the cookie stops working."""
    if not value or len(value) > 200:
        return
    t = dashboard_sessions.c
    conn.execute(
        update(dashboard_sessions)
        .where(t.id_sha256 == _sha256(value), t.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


def end_sessions_of(conn: Connection, token_id: str) -> int:
    """End every live session opened with admin token ``token_id``; returns how many."""
    t = dashboard_sessions.c
    res = conn.execute(
        update(dashboard_sessions)
        .where(and_(t.token_id == token_id, t.ended_at.is_(None)))
        .values(ended_at=utcnow())
    )
    return int(res.rowcount or 0)


def check_csrf(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a form's CSRF field with the expected nonce."""
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


def new_login_nonce() -> str:
    """The double-submit nonce of the login form (cookie + hidden field)."""
    return secrets.token_urlsafe(24)


def dump_flash(key: bytes, message: str, kind: str = "ok") -> str:
    """A signed one-shot message shown on the next page (post/redirect/get)."""
    return _serializer(key, "flash").dumps({"m": message[:500], "k": kind})


def load_flash(key: bytes, value: str | None) -> tuple[str, str] | None:
    """``(message, kind)`` from a flash cookie, or None when absent, forged or stale."""
    if not value:
        return None
    try:
        data: Any = _serializer(key, "flash").loads(value, max_age=FLASH_MAX_AGE_S)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("m"), str):
        return None
    return data["m"], "error" if data.get("k") == "error" else "ok"
