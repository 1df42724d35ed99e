"""Dashboard sessions: a signed cookie bound to a live admin token, and CSRF tokens.

Why a signed cookie and not a server-side table: every gateway replica shares
the master key, so any process can check a session without new schema or a
database write per login. The cookie carries no secret: the admin token id,
a keyed fingerprint of that token's digest (so rotating ``METIS_ADMIN_TOKEN``
ends its sessions), and a random CSRF nonce. It is signed and time-stamped
with `itsdangerous` under a key derived from the master key, and every request
re-checks that the admin token still verifies (a revoked token ends its
sessions at once).

Cookie flags: ``HttpOnly``, ``SameSite=Strict``, ``Path=/ui``, ``Secure``
when the request came over https. CSRF: every POST form carries the
session's nonce in a hidden ``csrf`` field, compared in constant time; the
login form (no session yet) uses a double-submit cookie instead.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import Connection, select

from metis.analytics.admin_tokens import ENV_TOKEN_ID, AdminIdentity
from metis.config import Settings
from metis.db.tables import admin_tokens
from metis.secrets.master_key import load_master_key

SESSION_COOKIE = "metis_session"
LOGIN_COOKIE = "metis_login"
FLASH_COOKIE = "metis_flash"
COOKIE_PATH = "/ui"
SESSION_MAX_AGE_S = 12 * 3600
LOGIN_MAX_AGE_S = 3600
FLASH_MAX_AGE_S = 120


@dataclass(frozen=True)
class Session:
    """A verified dashboard session."""

    token_id: str
    name: str
    csrf: str


def session_key(settings: Settings) -> bytes:
    """The cookie-signing key: HMAC of the master key with a fixed label (domain separation)."""
    master = load_master_key(settings)
    return hmac.new(master.key, b"metis-ui-session-key-v1", hashlib.sha256).digest()


def _serializer(key: bytes, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt=salt, signer_kwargs={"digest_method": hashlib.sha256})


def _fingerprint(key: bytes, digest: str) -> str:
    """A keyed fingerprint of a token's SHA-256 digest (reveals nothing about the token)."""
    return hmac.new(key, b"fp:" + digest.encode(), hashlib.sha256).hexdigest()[:32]


def new_session_cookie(key: bytes, ident: AdminIdentity, token: str) -> str:
    """The cookie value for a login with ``token`` (already verified as ``ident``)."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    payload = {
        "t": ident.token_id,
        "n": ident.name,
        "f": _fingerprint(key, digest),
        "c": secrets.token_urlsafe(24),
    }
    return _serializer(key, "session").dumps(payload)


def load_session(
    key: bytes, conn: Connection, settings: Settings, value: str | None
) -> Session | None:
    """The session in cookie ``value`` if its signature, age and admin token are still good."""
    if not value or len(value) > 4096:
        return None
    try:
        data: Any = _serializer(key, "session").loads(value, max_age=SESSION_MAX_AGE_S)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in "tnfc"):
        return None
    token_id, fp = data["t"], data["f"]
    digest: str | None
    if token_id == ENV_TOKEN_ID:
        env = settings.admin_token.get_secret_value() if settings.admin_token else ""
        if not env:
            return None
        digest = hashlib.sha256(env.encode()).hexdigest()
    else:
        digest = conn.execute(
            select(admin_tokens.c.secret_sha256).where(
                admin_tokens.c.id == token_id, admin_tokens.c.revoked_at.is_(None)
            )
        ).scalar()
        if digest is None:
            return None
    if not hmac.compare_digest(fp, _fingerprint(key, digest)):
        return None
    return Session(token_id=token_id, name=data["n"], csrf=data["c"])


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
