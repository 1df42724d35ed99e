"""Teams: budget-owning groups with optional hard caps (nano-USD).

Referenced by id (``team_…``) or name. Every mutation bumps the ``identity``
config version in the caller's transaction. Disabling is a soft delete: keys
bound to the team stop authenticating; there is no re-enable path in v1.
"""

from typing import Final

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from metis.db.tables import teams
from metis.errors import ConflictError, NotFoundError, ValidationError
from metis.identity.records import Team, team_from_row
from metis.identity.validate import check_cap_nanousd, check_team_name
from metis.ids import new_id
from metis.ledger import versions
from metis.timeutil import utcnow


class _Keep:
    """Sentinel type: leave a cap unchanged."""


KEEP: Final = _Keep()


def add_team(
    conn: Connection,
    name: str,
    *,
    daily_cap_nanousd: int | None = None,
    monthly_cap_nanousd: int | None = None,
) -> Team:
    """Create a team; names are unique. Caps are optional hard caps in nano-USD."""
    check_team_name(name)
    daily = check_cap_nanousd(daily_cap_nanousd, "daily cap")
    monthly = check_cap_nanousd(monthly_cap_nanousd, "monthly cap")
    clash = conn.execute(
        select(teams.c.name).where(func.lower(teams.c.name) == name.lower())
    ).scalar()
    if clash is not None:  # names differing only in case would be a trap
        raise ConflictError(f"team {clash!r} already exists")
    team = Team(
        id=new_id("team"),
        name=name,
        daily_cap_nanousd=daily,
        monthly_cap_nanousd=monthly,
        created_at=utcnow(),
        disabled=False,
    )
    try:
        with conn.begin_nested():
            conn.execute(
                teams.insert().values(
                    id=team.id,
                    name=team.name,
                    daily_cap_nanousd=daily,
                    monthly_cap_nanousd=monthly,
                    created_at=team.created_at,
                    disabled=False,
                )
            )
    except IntegrityError:
        raise ConflictError(f"team {name!r} already exists") from None
    versions.bump(conn, "identity")
    return team


def find_team(conn: Connection, ref: str) -> Team | None:
    """The team with id or name ``ref``, or None."""
    row = (
        conn.execute(select(teams).where((teams.c.id == ref) | (teams.c.name == ref)))
        .mappings()
        .first()
    )
    return None if row is None else team_from_row(row)


def get_team(conn: Connection, ref: str) -> Team:
    """Like `find_team` but an unknown ``ref`` is a `NotFoundError`."""
    team = find_team(conn, ref)
    if team is None:
        raise NotFoundError(f"unknown team {ref!r} (see `metis gateway team list`)")
    return team


def list_teams(conn: Connection, *, include_disabled: bool = True) -> list[Team]:
    """Teams ordered by name."""
    q = select(teams).order_by(teams.c.name)
    if not include_disabled:
        q = q.where(teams.c.disabled.is_(False))
    return [team_from_row(r) for r in conn.execute(q).mappings()]


def set_caps(
    conn: Connection,
    ref: str,
    *,
    daily_cap_nanousd: int | _Keep | None = KEEP,
    monthly_cap_nanousd: int | _Keep | None = KEEP,
) -> Team:
    """Change a team's caps: an int sets, None clears, `KEEP` (default) leaves as is.

    Takes effect on the gateway's next request (the identity version moves).
    """
    values: dict[str, int | None] = {}
    if not isinstance(daily_cap_nanousd, _Keep):
        values["daily_cap_nanousd"] = check_cap_nanousd(daily_cap_nanousd, "daily cap")
    if not isinstance(monthly_cap_nanousd, _Keep):
        values["monthly_cap_nanousd"] = check_cap_nanousd(monthly_cap_nanousd, "monthly cap")
    if not values:
        raise ValidationError("nothing to change: give a daily and/or monthly cap")
    team = get_team(conn, ref)
    conn.execute(update(teams).where(teams.c.id == team.id).values(**values))
    versions.bump(conn, "identity")
    return get_team(conn, team.id)


def disable_team(conn: Connection, ref: str) -> Team:
    """Soft-delete a team: its keys fail auth from the next request on (idempotent)."""
    team = get_team(conn, ref)
    if not team.disabled:
        conn.execute(update(teams).where(teams.c.id == team.id).values(disabled=True))
        versions.bump(conn, "identity")
    return get_team(conn, team.id)
