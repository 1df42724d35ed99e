"""Configuration versions: cheap change detection for in-memory caches.

A writer that changes identity (keys, users, teams) or other cached
configuration calls `bump` inside its transaction; readers poll `read` (one
primary-key lookup) and reload when the number moved.
"""

from sqlalchemy import Connection, select, update

from metis.db.tables import config_versions
from metis.timeutil import utcnow


def bump(conn: Connection, name: str) -> None:
    """Increment the version of ``name`` (creating it at 1)."""
    res = conn.execute(
        update(config_versions)
        .where(config_versions.c.name == name)
        .values(version=config_versions.c.version + 1, updated_at=utcnow())
    )
    if res.rowcount == 0:
        conn.execute(config_versions.insert().values(name=name, version=1, updated_at=utcnow()))


def read(conn: Connection, name: str) -> int:
    """The current version of ``name`` (0 when never bumped)."""
    v = conn.execute(
        select(config_versions.c.version).where(config_versions.c.name == name)
    ).scalar()
    return int(v or 0)
