"""Who a telemetry usage item belongs to: email or account id → a Metis user.

Order, per item:

1. the telemetry's email (``user.email`` on the record or the resource),
   matched against users' emails (by their SHA-256, as stored);
2. the telemetry's account id (``user.account_uuid``, ``user.account_id``,
   ``user.id``, ``enduser.id``) when it equals a user's alias;
3. otherwise the ingest token's user, if it has one (`metis.ingest.push`).

The email is used for the lookup and dropped: it is never put in the item,
its metadata, an event or a log line (DESIGN.md "Security posture"). An
account id is not personal data of that kind and is kept as
``metadata.account_id`` when no user matched, so it can be mapped later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from metis.db.tables import users
from metis.errors import ValidationError
from metis.identity.validate import email_sha256, normalize_email
from metis.ingest.otel.mapping import MAX_LABEL, Mapped


def _email_hash(email: str) -> str | None:
    try:
        return email_sha256(normalize_email(email))
    except (ValidationError, ValueError):
        return None


def to_items(conn: Connection, mapped: Sequence[Mapped]) -> list[dict[str, Any]]:
    """The push items of ``mapped``, with ``user`` set to the resolved alias (see above)."""
    hashes = {m.email: _email_hash(m.email) for m in mapped if m.email}
    accounts = {m.account for m in mapped if m.account and len(m.account) <= 200}
    by_hash: dict[str, str] = {}
    by_alias: set[str] = set()
    live = (users.c.forgotten_at.is_(None),)  # a disabled user's past calls are still theirs
    wanted = sorted({h for h in hashes.values() if h})
    for i in range(0, len(wanted), 500):
        q = select(users.c.email_sha256, users.c.alias).where(
            users.c.email_sha256.in_(wanted[i : i + 500]), *live
        )
        by_hash.update({h: a for h, a in conn.execute(q).all()})
    acc = sorted(accounts)
    for i in range(0, len(acc), 500):
        aq = select(users.c.alias).where(users.c.alias.in_(acc[i : i + 500]), *live)
        by_alias.update(conn.execute(aq).scalars().all())
    out = []
    for m in mapped:
        item = dict(m.item)
        meta = dict(m.meta)
        h = hashes.get(m.email) if m.email else None
        alias = by_hash.get(h) if h else None
        if alias is None and m.account in by_alias:
            alias = m.account
        if alias is not None:
            item["user"] = alias
        elif m.account:
            meta["account_id"] = m.account[:MAX_LABEL]
        if meta:
            item["metadata"] = meta
        out.append(item)
    return out
