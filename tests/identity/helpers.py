"""Helpers for identity tests: a full dump of the identity-related tables."""

from typing import Any

from sqlalchemy import Engine, select

from metis.db.tables import config_versions, events, gateway_keys, teams, users, workspaces

TABLES = (workspaces, users, teams, gateway_keys, events, config_versions)


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables identity writes, in a stable order (to prove nothing changed)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for t in TABLES:
            rows = conn.execute(select(t)).all()
            out[t.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def events_of(engine: Engine, type_: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(events).where(events.c.type == type_).order_by(events.c.id))
        return [dict(r._mapping) for r in rows]
