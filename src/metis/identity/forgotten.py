"""A forgotten user stays forgotten: what is written after `forget` never carries their id.

``POST /analytics/user/{id}/forget`` (`metis.analytics.privacy.forget_user`)
re-stamps everything stored about a user with a random pseudonym. Calls can
still be on their way: completed but in a gateway's write-behind buffer, or
in flight when the forget lands. Every write-behind flush therefore calls
`pseudonyms_for_forgotten` first, in its own transaction, for the user ids
it is about to write (records, events, spend counters), and writes a fresh
random pseudonym in place of any forgotten one.

The two never interleave badly: the flush first locks the user rows it
writes for (PostgreSQL ``FOR SHARE``; on SQLite a no-op write that takes the
database's write lock) and only then reads ``forgotten_at``, while
`forget_user` updates the user row first. Whichever comes second sees the
other's result: a flush that won writes its rows before the forget re-stamps
them, a flush that lost reads the user as forgotten.
"""

from collections.abc import Iterable

from sqlalchemy import Connection, select, update

from metis.db.tables import users
from metis.ids import new_id


def pseudonyms_for_forgotten(conn: Connection, user_ids: Iterable[str | None]) -> dict[str, str]:
    """``{forgotten user id: fresh pseudonym}`` among ``user_ids``; locks their rows.

    Call first in the writing transaction (see module docstring). No user ids,
    no query.
    """
    ids = sorted({u for u in user_ids if u})
    if not ids:
        return {}
    if conn.dialect.name == "postgresql":
        q = select(users.c.id, users.c.forgotten_at).where(users.c.id.in_(ids))
        rows = conn.execute(q.with_for_update(read=True)).all()
    else:
        # Take SQLite's write lock before reading: no forget can commit in between.
        conn.execute(
            update(users).where(users.c.id.in_(ids)).values(forgotten_at=users.c.forgotten_at)
        )
        rows = conn.execute(
            select(users.c.id, users.c.forgotten_at).where(users.c.id.in_(ids))
        ).all()
    return {str(uid): new_id("usr") for uid, at in rows if at is not None}
