"""Names where ids are expected: what a CLI argument such as ``--key alice-laptop`` means.

Every command that takes a gateway key, user, team, workspace, provider
credential or ingest token accepts its id or a name a person knows it by,
and resolves it here to one record before anything is changed:

| kind | accepted |
|---|---|
| gateway key | id (``key_…``), name, or display prefix (``gw_1a2b3c4``) |
| user | id (``usr_…``), alias (any case), or display name (any case) |
| team | id (``team_…``) or name (any case) |
| workspace | id (``ws_…``), name or path |
| credential | id (``cred_…``), provider, ``WORKSPACE/PROVIDER``, last four (``…abcd``) |
| ingest token | id (``itok_…``) or name |

A name that fits several records is an `AmbiguousError` listing each
candidate with its id (then pass the id); an unknown one is a
`NotFoundError` that suggests close names. Keys and ingest tokens are
re-issued under the same name: when a name fits several of them but only
one is still live (not revoked), that one is meant. Ids always win: a
value that is some record's id resolves to that record.
"""

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from sqlalchemy import Connection, func, select

from metis.credentials import Credential, list_credentials
from metis.db.tables import gateway_keys, teams, users
from metis.errors import NotFoundError, ValidationError
from metis.identity.records import (
    GatewayKey,
    Team,
    User,
    key_from_row,
    team_from_row,
    user_from_row,
)
from metis.ingest.tokens import IngestToken, list_tokens
from metis.workspaces import Workspace, list_workspaces

T = TypeVar("T")


class AmbiguousError(ValidationError):
    """A name fits several records; the message lists them with their ids."""


def _not_found(kind: str, ref: str, names: Iterable[str], see: str) -> NotFoundError:
    close = difflib.get_close_matches(ref, sorted(set(names)), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return NotFoundError(f"unknown {kind} {ref!r}{hint} (see `{see}`)")


def _one(
    kind: str, ref: str, found: Sequence[T], describe: Callable[[T], str], ident: Callable[[T], str]
) -> T:
    """The single record of ``found``; several is an `AmbiguousError` listing them."""
    if len(found) == 1:
        return found[0]
    lines = "\n".join(f"  {ident(f)}  {describe(f)}" for f in found)
    raise AmbiguousError(f"{ref!r} fits {len(found)} {kind}s; use one of their ids:\n{lines}")


def _live_first(found: list[T], live: Callable[[T], bool]) -> list[T]:
    """Of several records with one name, the one still live if only one is."""
    alive = [f for f in found if live(f)]
    return alive if len(found) > 1 and len(alive) == 1 else found


# ---------------------------------------------------------------- workspaces


def workspace(conn: Connection, ref: str) -> Workspace:
    """The workspace with id, name or path ``ref``."""
    every = list_workspaces(conn)
    for w in every:
        if w.id == ref:
            return w
    found = [w for w in every if ref in (w.name, w.path)]
    if not found:
        raise _not_found("workspace", ref, (w.name for w in every), "metis workspace list")
    return _one(
        "workspace", ref, found, lambda w: f"{w.name} (path {w.path or '-'})", lambda w: w.id
    )


def workspace_names(conn: Connection) -> dict[str, str]:
    """Workspace id -> name, for showing names next to ids."""
    return {w.id: w.name for w in list_workspaces(conn)}


# ---------------------------------------------------------------- users and teams


def user(conn: Connection, ref: str) -> User:
    """The user with id, alias or display name ``ref`` (alias and name in any case)."""
    u = users.c
    rows = list(
        conn.execute(
            select(users).where(
                (u.id == ref)
                | (func.lower(u.alias) == ref.lower())
                | (func.lower(u.display_name) == ref.lower())
            )
        ).mappings()
    )
    found = [user_from_row(r) for r in rows]
    exact = (
        [x for x in found if x.id == ref]
        or [x for x in found if x.alias == ref]
        or [x for x in found if x.alias.lower() == ref.lower()]
    )
    if exact:
        return exact[0]  # ids and aliases (in any case) are unique
    if not found:
        names = [r[0] for r in conn.execute(select(u.alias))]
        raise _not_found("user", ref, names, "metis gateway user list")
    return _one(
        "user",
        ref,
        sorted(found, key=lambda x: x.alias),
        lambda x: (
            f"alias {x.alias}, name {x.display_name!r}" + (" (disabled)" if x.disabled else "")
        ),
        lambda x: x.id,
    )


def team(conn: Connection, ref: str) -> Team:
    """The team with id or name ``ref`` (the name in any case)."""
    t = teams.c
    row = (
        conn.execute(select(teams).where((t.id == ref) | (func.lower(t.name) == ref.lower())))
        .mappings()
        .first()
    )
    if row is None:
        names = [r[0] for r in conn.execute(select(t.name))]
        raise _not_found("team", ref, names, "metis gateway team list")
    return team_from_row(row)  # names are unique in any case, ids are unique


def find_team(conn: Connection, ref: str) -> Team | None:
    """Like `team`, but None for an unknown team."""
    try:
        return team(conn, ref)
    except NotFoundError:
        return None


def find_user(conn: Connection, ref: str) -> User | None:
    """Like `user`, but None for an unknown user (an ambiguous name still raises)."""
    try:
        return user(conn, ref)
    except NotFoundError:
        return None


# ---------------------------------------------------------------- gateway keys


def key(conn: Connection, ref: str) -> GatewayKey:
    """The gateway key with id, name or display prefix ``ref`` (see the module docstring)."""
    k = gateway_keys.c
    rows = conn.execute(
        select(gateway_keys)
        .where((k.id == ref) | (k.name == ref) | (k.display_prefix == ref.rstrip("…")))
        .order_by(k.created_at, k.id)
    ).mappings()
    found = [key_from_row(r) for r in rows]
    by_id = [x for x in found if x.id == ref]
    if by_id:
        return by_id[0]
    if not found:
        names = [r[0] for r in conn.execute(select(k.name))]
        raise _not_found("gateway key", ref, names, "metis gateway list-keys")
    found = _live_first(found, lambda x: not x.revoked)
    ws = workspace_names(conn)
    aliases = {r[0]: r[1] for r in conn.execute(select(users.c.id, users.c.alias))}
    team_names = {r[0]: r[1] for r in conn.execute(select(teams.c.id, teams.c.name))}

    def describe(x: GatewayKey) -> str:
        parts = [f"workspace {ws.get(x.workspace_id, x.workspace_id)}"]
        if x.user_id:
            parts.append(f"user {aliases.get(x.user_id, x.user_id)}")
        if x.team_id:
            parts.append(f"team {team_names.get(x.team_id, x.team_id)}")
        parts.append(f"revoked {x.revoked_at:%Y-%m-%d}" if x.revoked_at else "active")
        return f"{x.name} ({', '.join(parts)})"

    return _one("gateway key", ref, found, describe, lambda x: x.id)


# ---------------------------------------------------------------- credentials and tokens


def credential(conn: Connection, ref: str, *, purpose: str | None = None) -> Credential:
    """The provider credential ``ref`` (see the module docstring), of ``purpose`` if given.

    Only credentials that are not removed are candidates.
    """
    every = list_credentials(conn, purpose=purpose)
    for c in every:
        if c.id == ref:
            return c
    ws = workspace_names(conn)
    ws_part, sep, rest = ref.partition("/")
    if sep:
        w = workspace(conn, ws_part)
        found = [c for c in every if c.workspace_id == w.id and c.provider == rest]
    else:
        last4 = ref.lstrip("…").removeprefix("...")
        found = [c for c in every if c.provider == ref or (len(last4) == 4 and c.last4 == last4)]
    what = f"{purpose} credential" if purpose else "credential"
    if not found:
        names = [c.provider for c in every] + [
            f"{ws.get(c.workspace_id)}/{c.provider}" for c in every
        ]
        raise _not_found(what, ref, names, "metis provider-key list")

    def describe(c: Credential) -> str:
        return (
            f"{ws.get(c.workspace_id, c.workspace_id)}/{c.provider} "
            f"({','.join(c.purposes)}, key …{c.last4 or '?'})"
        )

    return _one(what, ref, found, describe, lambda c: c.id)


def ingest_token(conn: Connection, ref: str) -> IngestToken:
    """The ingest token with id or name ``ref`` (a live one when the name was re-used)."""
    every = list_tokens(conn)
    for t in every:
        if t.id == ref:
            return t
    found = _live_first([t for t in every if t.name == ref], lambda t: t.revoked_at is None)
    if not found:
        raise _not_found("ingest token", ref, (t.name for t in every), "metis ingest token list")
    ws = workspace_names(conn)
    return _one(
        "ingest token",
        ref,
        found,
        lambda t: (
            f"{t.name} (workspace {ws.get(t.workspace_id, t.workspace_id)}, "
            + (f"revoked {t.revoked_at:%Y-%m-%d})" if t.revoked_at else "active)")
        ),
        lambda t: t.id,
    )
