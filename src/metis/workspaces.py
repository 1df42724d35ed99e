"""Workspaces: the tenant unit that owns credentials, keys and usage."""

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from metis.db.tables import workspaces
from metis.errors import ConflictError, NotFoundError, ValidationError
from metis.ids import new_id
from metis.security.fields import PATH_MAX, check_optional
from metis.timeutil import utcnow

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    path: str | None
    created_at: datetime


def add_workspace(conn: Connection, name: str, path: str | None = None) -> Workspace:
    """Create a workspace; names are unique and ``[A-Za-z0-9_.-]``, 1-200 chars."""
    if not NAME_RE.match(name):
        raise ValidationError(
            f"invalid workspace name {name!r}: use letters, digits, '_', '.', '-' (1-200 chars)"
        )
    check_optional("path", path, PATH_MAX)
    ws = Workspace(new_id("ws"), name, path, utcnow())
    try:
        with conn.begin_nested():
            conn.execute(workspaces.insert().values(**ws.__dict__))
    except IntegrityError:
        raise ConflictError(f"workspace {name!r} already exists") from None
    return ws


def list_workspaces(conn: Connection) -> list[Workspace]:
    rows = conn.execute(select(workspaces).order_by(workspaces.c.name)).mappings()
    return [Workspace(**r) for r in rows]


def get_workspace(conn: Connection, ref: str) -> Workspace:
    """Find a workspace by id (``ws_…``), name or path."""
    row = (
        conn.execute(
            select(workspaces).where(
                (workspaces.c.id == ref) | (workspaces.c.name == ref) | (workspaces.c.path == ref)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"unknown workspace {ref!r} (see `metis workspace list`)")
    return Workspace(**row)
