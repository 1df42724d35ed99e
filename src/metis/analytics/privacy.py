"""Per-user data portability and right-to-forget (spec 003 §8, analytics-api §4.10).

`export_user` gathers everything stored about a user as portable JSON.
`forget_user` pseudonymizes in place, idempotently, in one transaction:

- every ledger row, rollup row, spend counter and event (typed column and
  payload) of the user is re-stamped with a fresh random ``usr_…`` pseudonym
  that is stored nowhere else, so the rows stay counted in team and global
  totals but no longer link to the user;
- the user's gateway keys are revoked (``gateway.key_revoked`` events) and
  unbound from the user (a key id must not lead back to them); ingest tokens
  bound to the user are unbound (their later pushes are nobody's);
- the user record keeps only its id: email and email hash removed, display
  name and alias replaced, disabled, ``forgotten_at`` set;
- ``identity`` config version is bumped so gateways drop cached keys.

What is still on its way is covered too: the HTTP route first flushes the
gateway's write-behind buffer of this process (so the answer counts those
rows) and afterwards drops the user's keys from this process's key cache
(they fail from the next request on; other gateway processes follow at
their next key-cache poll, within about a second). Any row written for the
user later, by any process, gets a fresh pseudonym at write time
(`metis.identity.forgotten`).

The stored ``content_sha256`` of re-stamped ledger rows is kept on purpose: a
later replay of the original record is then still a no-op and cannot re-link
the row. A *revised* record re-sent with the user's id would carry it again.
"""

from typing import Any

from sqlalchemy import Connection, select, update

from metis.analytics.params import ParamError
from metis.db.tables import (
    events,
    gateway_keys,
    ingest_tokens,
    spend_counters,
    teams,
    usage_records,
    usage_rollups_daily,
    usage_rollups_daily_identity,
    usage_rollups_reconcile,
    usage_rollups_reconcile_identity,
    users,
)
from metis.events import GatewayKeyRevoked, event_row
from metis.ids import new_id
from metis.ledger.versions import bump
from metis.money import plain_money_fields, usd_json
from metis.timeutil import iso, utcnow


def _user_row(conn: Connection, user_id: str) -> Any:
    row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    if row is None:
        raise ParamError("unknown_user", f"unknown user {user_id!r}")
    return row


def _jsonable(v: Any) -> Any:
    if hasattr(v, "tzinfo") and hasattr(v, "isoformat"):
        return iso(v)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def export_user(conn: Connection, user_id: str) -> dict[str, Any]:
    """Everything stored about ``user_id``: profile, keys, teams, usage rows, daily totals, events.

    Key secrets are never stored, so never exported; key hashes are omitted.
    """
    u = _user_row(conn, user_id)
    keys = [
        {k: _jsonable(v) for k, v in r.items() if k != "secret_sha256"}
        for r in conn.execute(
            select(gateway_keys)
            .where(gateway_keys.c.user_id == user_id)
            .order_by(gateway_keys.c.id)
        ).mappings()
    ]
    team_ids = sorted({k["team_id"] for k in keys if k["team_id"]})
    team_rows = [
        {"id": r["id"], "name": r["name"]}
        for r in conn.execute(select(teams).where(teams.c.id.in_(team_ids))).mappings()
    ]
    rec_cols = [c for c in usage_records.c if c.name not in ("content_sha256",)]
    records = []
    for r in conn.execute(
        select(*rec_cols).where(usage_records.c.user_id == user_id).order_by(usage_records.c.id)
    ).mappings():
        d = {k: _jsonable(v) for k, v in r.items() if k != "cost_nanousd"}
        d["cost_usd"] = usd_json(r["cost_nanousd"])
        records.append(d)
    daily = []
    for r in conn.execute(
        select(usage_rollups_daily)
        .where(usage_rollups_daily.c.user_id == user_id)
        .order_by(usage_rollups_daily.c.usage_date)
    ).mappings():
        d = {k: (_jsonable(v) if v != "" else None) for k, v in r.items() if k != "cost_nanousd"}
        d["cost_usd"] = usd_json(r["cost_nanousd"])
        daily.append(d)
    evs = [
        {
            "event_id": r["event_id"],
            "type": r["type"],
            "ts": iso(r["ts"]),
            "payload": plain_money_fields(r["payload"]),
        }
        for r in conn.execute(
            select(events).where(events.c.user_id == user_id).order_by(events.c.ts, events.c.id)
        ).mappings()
    ]
    return {
        "user": {
            "id": u["id"],
            "alias": u["alias"],
            "display_name": u["display_name"],
            "email": u["email"],
            "created_at": iso(u["created_at"]),
            "disabled": u["disabled"],
            "forgotten_at": iso(u["forgotten_at"]) if u["forgotten_at"] else None,
        },
        "teams": team_rows,
        "gateway_keys": keys,
        "usage_daily": daily,
        "usage_records": records,
        "events": evs,
        "exported_at": iso(utcnow()),
    }


def _replace(v: Any, old: str, new: str) -> Any:
    if v == old:
        return new
    if isinstance(v, dict):
        return {k: _replace(x, old, new) for k, x in v.items()}
    if isinstance(v, list):
        return [_replace(x, old, new) for x in v]
    return v


def forget_user(conn: Connection, user_id: str) -> dict[str, Any]:
    """Pseudonymize ``user_id`` everywhere (see module docstring); safe to repeat."""
    u = _user_row(conn, user_id)
    already = u["forgotten_at"] is not None
    pseudo = new_id("usr")
    now = utcnow()
    # The user row first: a write-behind flush locks the rows of the users it
    # writes for before reading ``forgotten_at`` (`metis.identity.forgotten`), so
    # it either wrote before this (and is re-stamped below) or sees the user gone.
    conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(
            email=None,
            email_sha256=None,
            display_name="forgotten user",
            alias=f"forgotten-{user_id}",
            disabled=True,
            forgotten_at=u["forgotten_at"] or now,
        )
    )
    n_records = conn.execute(
        update(usage_records).where(usage_records.c.user_id == user_id).values(user_id=pseudo)
    ).rowcount
    for rollup in (
        usage_rollups_daily,
        usage_rollups_daily_identity,
        usage_rollups_reconcile,
        usage_rollups_reconcile_identity,
    ):
        conn.execute(update(rollup).where(rollup.c.user_id == user_id).values(user_id=pseudo))
    conn.execute(
        update(spend_counters)
        .where(
            spend_counters.c.scope.in_(("user_daily", "user_monthly")),
            spend_counters.c.scope_id == user_id,
        )
        .values(scope_id=pseudo)
    )
    # Revoke and unbind the user's keys, recording the revocations.
    key_rows = conn.execute(
        select(gateway_keys.c.id, gateway_keys.c.revoked_at).where(
            gateway_keys.c.user_id == user_id
        )
    ).all()
    revoked = [k for k, at in key_rows if at is None]
    if revoked:
        conn.execute(
            update(gateway_keys)
            .where(gateway_keys.c.id.in_(revoked))
            .values(revoked_at=now, revoke_reason="user forgotten")
        )
    if key_rows:
        conn.execute(
            update(gateway_keys).where(gateway_keys.c.user_id == user_id).values(user_id=None)
        )
    # Ingest tokens bound to the user (their agents' pushes) no longer name them.
    conn.execute(
        update(ingest_tokens).where(ingest_tokens.c.user_id == user_id).values(user_id=None)
    )
    # Events: the typed column and any payload value equal to the user id.
    n_events = 0
    for eid, payload in conn.execute(
        select(events.c.id, events.c.payload).where(events.c.user_id == user_id)
    ).all():
        conn.execute(
            update(events)
            .where(events.c.id == eid)
            .values(user_id=pseudo, payload=_replace(payload, user_id, pseudo))
        )
        n_events += 1
    rows = [
        event_row(
            GatewayKeyRevoked(key_id=k, revoked_at=iso(now), reason="user forgotten"),
            ts=now,
            user_id=None,
        )
        for k in revoked
    ]
    if rows:
        conn.execute(events.insert(), rows)
    bump(conn, "identity")
    return {
        "user_id": user_id,
        "already_forgotten": already,
        "usage_records_pseudonymized": n_records,
        "events_pseudonymized": n_events,
        "keys_revoked": len(revoked),
    }
