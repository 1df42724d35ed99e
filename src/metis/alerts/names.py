"""Names next to ids in alerts: "team platform (team_01…)" instead of a bare id.

An alert's ``scope``/``scope_id`` stay its key of record; the name is looked
up when the alert fires and goes into its message and its ``scope_name``
field, so a person reading Slack or the log knows what it is about without
looking the id up. Users are named by alias (never email or display name:
events carry no personal data beyond stable handles).

Scopes are read generically from their prefix (``team_daily``,
``team_monthly`` -> a team; ``user_*`` -> a user; ``key_*`` -> a gateway
key), so a new cap scope of a known kind (e.g. ``user_monthly``) is named
without a change here.
"""

from typing import Any

from sqlalchemy import Connection, select

from metis.db.tables import gateway_keys, provider_credentials, teams, users, workspaces

# scope prefix -> (what it is called, table, name column)
_KINDS: dict[str, tuple[str, Any, str]] = {
    "team": ("team", teams, "name"),
    "user": ("user", users, "alias"),
    "key": ("key", gateway_keys, "name"),
}


def scope_name(conn: Connection, scope: str, scope_id: str) -> str | None:
    """The human name of what ``scope``/``scope_id`` identifies, or None if unknown."""
    if scope == "credential":
        row = conn.execute(
            select(workspaces.c.name, provider_credentials.c.provider)
            .join(workspaces, workspaces.c.id == provider_credentials.c.workspace_id)
            .where(provider_credentials.c.id == scope_id)
        ).first()
        return f"{row[0]}/{row[1]}" if row else None
    if scope == "cell":  # workspace/provider/model/day: name the workspace
        ws_id, sep, rest = scope_id.partition("/")
        name = workspace_name(conn, ws_id) if sep else None
        return f"{name}/{rest}" if name else None
    kind = _KINDS.get(scope.split("_", 1)[0])
    if kind is None:
        return None
    _, table, col = kind
    value = conn.execute(select(table.c[col]).where(table.c.id == scope_id)).scalar()
    return None if value is None else str(value)


def workspace_name(conn: Connection, workspace_id: str | None) -> str | None:
    """A workspace's name, or None."""
    if not workspace_id:
        return None
    value = conn.execute(select(workspaces.c.name).where(workspaces.c.id == workspace_id)).scalar()
    return None if value is None else str(value)


def label(scope: str, scope_id: str, name: str | None) -> str:
    """How a message names the scope: ``team platform (team_01…)``, else the bare id."""
    if not name:
        return scope_id
    kind = _KINDS.get(scope.split("_", 1)[0])
    word = kind[0] if kind else scope
    return f"{word} {name} ({scope_id})"
