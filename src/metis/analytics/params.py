"""Parsing and validating analytics query parameters (shared by HTTP and CLI).

Every value that reaches SQL is either whitelist-mapped or passed the
``^[A-Za-z0-9_-]{1,200}$`` guard and is then bound as a parameter; a value
failing the guard raises `ParamError` (``invalid_<field>``) before any query
runs. Names and aliases resolve to ids against the identity tables; an
unknown one raises ``unknown_<field>``.
"""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from metis.db.tables import gateway_keys, teams, users, workspaces
from metis.errors import ValidationError
from metis.timeutil import OutOfRange, check_time, day_start, iso, parse_iso, utcnow

SAFE_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
DEFAULT_DAYS = 7
MAX_DAYS = 3660


class ParamError(ValidationError):
    """A bad query parameter: HTTP 400 ``{"error": code, "message": ...}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Window:
    """A half-open UTC window ``[start, end)``."""

    start: datetime
    end: datetime

    def as_json(self) -> dict[str, str]:
        return {"start": iso(self.start), "end": iso(self.end)}


@dataclass(frozen=True)
class Filters:
    """Resolved filters (ids only); None means "not filtered"."""

    workspace_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    source: str | None = None
    gateway_key_id: str | None = None

    @property
    def identity_filtered(self) -> bool:
        return self.user_id is not None or self.team_id is not None


def default_window(now: datetime | None = None, days: int = DEFAULT_DAYS) -> Window:
    """The one definition of "the last ``days`` days": whole UTC days ending with today.

    ``[today - (days - 1) 00:00Z, tomorrow 00:00Z)``: today is included, so the
    end is tomorrow's midnight, exclusive. Every surface (analytics API,
    exports, ``metis report``/``metis export``, ``/analytics/reconciliation``,
    the dashboard) takes its default from here, and each shows the resolved
    window it answered for.
    """
    today = (now or utcnow()).date()
    end = day_start(today + timedelta(days=1))
    return Window(end - timedelta(days=days), end)


def parse_window(start: str | None, end: str | None, *, now: datetime | None = None) -> Window:
    """``from``/``to`` as ISO 8601 (UTC when no offset; a bare date is its 00:00Z), half-open.

    Defaults (`default_window`): neither given, the last 7 whole UTC days
    through today; only ``from``, through the end of today (tomorrow 00:00Z);
    only ``to``, the 7 days before it. Both must lie in the supported range
    (`metis.timeutil.EARLIEST` .. `metis.timeutil.LATEST`), else
    ``invalid_window`` naming the parameter.
    """

    def _parse(v: str, field: str) -> datetime:
        try:
            dt = parse_iso(v)
        except ValueError:
            raise ParamError(
                "invalid_window", f"{field} must be ISO 8601 UTC (e.g. 2026-11-01T00:00:00Z)"
            ) from None
        try:
            return check_time(dt, field)
        except OutOfRange as exc:
            raise ParamError("invalid_window", str(exc)) from None

    default = default_window(now)
    end_dt = _parse(end, "to") if end else default.end
    start_dt = _parse(start, "from") if start else end_dt - timedelta(days=DEFAULT_DAYS)
    if start_dt >= end_dt:
        raise ParamError("invalid_window", "from must be before to")
    if end_dt - start_dt > timedelta(days=MAX_DAYS):
        raise ParamError("invalid_window", f"window longer than {MAX_DAYS} days")
    return Window(start_dt, end_dt)


def guard(field: str, value: str) -> str:
    """Check ``value`` against the identifier guard; ``invalid_<field>`` otherwise."""
    if not SAFE_RE.match(value):
        raise ParamError(f"invalid_{field}", f"{field} must match ^[A-Za-z0-9_-]{{1,200}}$")
    return value


def resolve_user(conn: Connection, value: str) -> str:
    """A user id from an id or alias."""
    guard("user", value)
    uid = conn.execute(
        select(users.c.id).where((users.c.id == value) | (users.c.alias == value))
    ).scalar()
    if uid is None:
        raise ParamError("unknown_user", f"unknown user {value!r}")
    return str(uid)


def resolve_team(conn: Connection, value: str) -> str:
    """A team id from an id or name."""
    guard("team", value)
    tid = conn.execute(
        select(teams.c.id).where((teams.c.id == value) | (teams.c.name == value))
    ).scalar()
    if tid is None:
        raise ParamError("unknown_team", f"unknown team {value!r}")
    return str(tid)


def resolve_workspace(conn: Connection, value: str) -> str:
    guard("workspace", value)
    wid = conn.execute(
        select(workspaces.c.id).where((workspaces.c.id == value) | (workspaces.c.name == value))
    ).scalar()
    if wid is None:
        raise ParamError("unknown_workspace", f"unknown workspace {value!r}")
    return str(wid)


def resolve_key(conn: Connection, value: str) -> str:
    guard("gateway_key", value)
    rows = (
        conn.execute(
            select(gateway_keys.c.id).where(
                (gateway_keys.c.id == value) | (gateway_keys.c.name == value)
            )
        )
        .scalars()
        .all()
    )
    if not rows:
        raise ParamError("unknown_gateway_key", f"unknown gateway key {value!r}")
    if len(rows) > 1:
        raise ParamError("ambiguous_gateway_key", f"several keys are named {value!r}; use the id")
    return str(rows[0])


def resolve_filters(
    conn: Connection,
    *,
    workspace: str | None = None,
    user: str | None = None,
    team: str | None = None,
    source: str | None = None,
    gateway_key: str | None = None,
) -> Filters:
    """Validate then resolve every given filter (guards run before any lookup)."""
    for field, v in (
        ("workspace", workspace),
        ("user", user),
        ("team", team),
        ("source", source),
        ("gateway_key", gateway_key),
    ):
        if v is not None:
            guard(field, v)
    return Filters(
        workspace_id=resolve_workspace(conn, workspace) if workspace else None,
        user_id=resolve_user(conn, user) if user else None,
        team_id=resolve_team(conn, team) if team else None,
        source=source or None,
        gateway_key_id=resolve_key(conn, gateway_key) if gateway_key else None,
    )
