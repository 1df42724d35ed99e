"""Ingest tokens: the credentials agent plugins push usage with.

A token belongs to one workspace and one source (``hermes_plugin`` by
default): everything pushed with it lands in that workspace with that
``source`` and ``source_ref = <token id>``. The secret is 256 random bits
(``mit_…``), shown once at creation; only its SHA-256 is stored. Tokens
cannot be created for the sources reconciliation treats specially
(``gateway``, ``provider_api_key``), so a plugin can never pose as the
gateway or as provider-reported truth.

Two settings say what a token's pushes mean (`set_routing`, ``metis ingest
token create|set``): ``via_gateway`` (the agent holding it sends its calls
through this Metis gateway, so items that name no base URL are the gateway's
own traffic and never counted again; DESIGN.md reconciliation, docs/ingest-otel.md)
and ``user_id`` (the developer the agent belongs to: items whose own identity
does not resolve to a Metis user are attributed to them).
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from metis.db.tables import ingest_tokens
from metis.errors import NotFoundError, ValidationError
from metis.identity.users import get_user
from metis.ids import new_id
from metis.timeutil import utcnow
from metis.workspaces import get_workspace

TOKEN_PREFIX = "mit_"  # noqa: S105 - a public prefix, not a secret
DEFAULT_SOURCE = "hermes_plugin"
RESERVED_SOURCES = frozenset({"gateway", "provider_api_key"})
SOURCE_RE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


@dataclass(frozen=True)
class IngestToken:
    """A stored ingest token (never its secret)."""

    id: str
    workspace_id: str
    name: str
    source: str
    display_prefix: str
    created_at: datetime
    revoked_at: datetime | None
    via_gateway: bool = False
    user_id: str | None = None


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    conn: Connection,
    workspace: str,
    name: str,
    source: str = DEFAULT_SOURCE,
    *,
    via_gateway: bool = False,
    user: str | None = None,
) -> tuple[IngestToken, str]:
    """Create a token for ``workspace`` (id, name or path); returns it and its secret.

    ``via_gateway`` and ``user`` (a user id or alias) are the token's routing and
    attribution settings (module docstring). The secret is returned once and
    never stored; show it to the user now.
    """
    ws = get_workspace(conn, workspace)
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError("ingest token name must be 1-200 characters")
    if not SOURCE_RE.match(source):
        raise ValidationError(
            f"invalid source {source!r}: lowercase letters, digits and '_' (2-64 chars)"
        )
    if source in RESERVED_SOURCES:
        raise ValidationError(f"source {source!r} is reserved; plugins push as another source")
    user_id = get_user(conn, user).id if user is not None else None
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tok = IngestToken(
        new_id("itok"), ws.id, name, source, secret[:10], utcnow(), None, via_gateway, user_id
    )
    conn.execute(
        ingest_tokens.insert().values(
            id=tok.id,
            workspace_id=tok.workspace_id,
            name=tok.name,
            source=tok.source,
            secret_sha256=_sha256(secret),
            display_prefix=tok.display_prefix,
            created_at=tok.created_at,
            revoked_at=None,
            via_gateway=via_gateway,
            user_id=user_id,
        )
    )
    return tok, secret


_COLS = (
    ingest_tokens.c.id,
    ingest_tokens.c.workspace_id,
    ingest_tokens.c.name,
    ingest_tokens.c.source,
    ingest_tokens.c.display_prefix,
    ingest_tokens.c.created_at,
    ingest_tokens.c.revoked_at,
    ingest_tokens.c.via_gateway,
    ingest_tokens.c.user_id,
)


def _get(conn: Connection, token_id: str) -> IngestToken:
    row = conn.execute(select(*_COLS).where(ingest_tokens.c.id == token_id)).first()
    if row is None:
        raise NotFoundError(f"unknown ingest token {token_id!r} (see `metis ingest token list`)")
    return IngestToken(*row)


def list_tokens(conn: Connection, workspace: str | None = None) -> list[IngestToken]:
    """All ingest tokens (revoked ones included), optionally of one workspace, oldest first."""
    q = select(*_COLS).order_by(ingest_tokens.c.created_at, ingest_tokens.c.id)
    if workspace is not None:
        q = q.where(ingest_tokens.c.workspace_id == get_workspace(conn, workspace).id)
    return [IngestToken(*r) for r in conn.execute(q).all()]


def revoke_token(conn: Connection, token_id: str) -> IngestToken:
    """Revoke token ``token_id`` (idempotent); pushes with it get 401 from then on."""
    tok = _get(conn, token_id)
    if tok.revoked_at is None:
        now = utcnow()
        conn.execute(
            update(ingest_tokens).where(ingest_tokens.c.id == token_id).values(revoked_at=now)
        )
        tok = replace(tok, revoked_at=now)
    return tok


_UNSET: Any = object()


def set_routing(
    conn: Connection,
    token_id: str,
    *,
    via_gateway: bool | None = None,
    user: str | None = _UNSET,
) -> IngestToken:
    """Change a token's settings: ``via_gateway``, and ``user`` (id or alias; None unbinds).

    Applies to items pushed from now on; stored rows keep what they were
    stored with until their sender re-sends them.
    """
    tok = _get(conn, token_id)
    values: dict[str, Any] = {}
    if via_gateway is not None:
        values["via_gateway"] = via_gateway
    if user is not _UNSET:
        values["user_id"] = get_user(conn, user).id if user is not None else None
    if values:
        conn.execute(update(ingest_tokens).where(ingest_tokens.c.id == token_id).values(**values))
        tok = replace(tok, **values)
    return tok


def verify(conn: Connection, token: str) -> IngestToken | None:
    """The live token ``token`` is the secret of, or None.

    The lookup is by digest (so timing does not depend on how much of a
    secret matched) and the digests are compared with `hmac.compare_digest`.
    """
    if not token or len(token) > 512 or not token.startswith(TOKEN_PREFIX):
        return None
    digest = _sha256(token)
    row = conn.execute(
        select(*_COLS, ingest_tokens.c.secret_sha256).where(
            ingest_tokens.c.secret_sha256 == digest, ingest_tokens.c.revoked_at.is_(None)
        )
    ).first()
    if row is None or not hmac.compare_digest(row.secret_sha256, digest):
        return None
    return IngestToken(*row[:-1])
