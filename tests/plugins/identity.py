"""Fixtures for identity tests (shared by other areas).

Everything goes through the real library (`metis.identity`), so rows, events
and the ``identity`` config version are exactly what production writes.

- ``make_key(db, ...) -> IssuedKey``: plain helper; ``db`` is an Engine (one
  committed transaction) or a Connection (the caller's transaction). Gets or
  creates the workspace (by name), the user (by alias) and the team (by name),
  then issues a key. ``user=None``/``team=None`` gives a key without that
  binding (the back-compat "null principal" case).
- fixture ``make_gateway_key``: ``make_key`` bound to the test's ``engine``:
  ``k = make_gateway_key(user="bob", team=None, daily_cap_usd="1.50")``.
- fixture ``gateway_key``: one key for user ``alice`` in team ``eng`` in
  workspace ``acme``; ``gateway_key.token`` is the ``gw_…`` secret.

Example::

    def test_x(make_gateway_key):
        k = make_gateway_key(user="alice", team="eng", team_daily_cap_usd="0.001")
        principal, snap = resolve(conn, k.token)
"""

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlalchemy import Connection, Engine

from metis.identity.keys import issue_key
from metis.identity.teams import KEEP, add_team, find_team, set_caps
from metis.identity.users import add_user, find_user
from metis.money import to_nanousd
from metis.workspaces import Workspace, add_workspace, list_workspaces


@dataclass(frozen=True)
class IssuedKey:
    """A freshly issued key: ``token`` is the plaintext ``gw_…`` secret."""

    token: str
    key_id: str
    workspace_id: str
    workspace_path: str  # the workspace's path, or its name when it has none
    user_id: str | None
    team_id: str | None


def _nanos(usd: str | Decimal | int | None) -> int | None:
    return None if usd is None else to_nanousd(usd)


def _workspace(conn: Connection, name: str, path: str | None) -> Workspace:
    for ws in list_workspaces(conn):
        if ws.name == name:
            return ws
    return add_workspace(conn, name, path)


def _make(
    conn: Connection,
    *,
    workspace: str,
    workspace_path: str | None,
    user: str | None,
    team: str | None,
    name: str | None,
    allowed_models: Sequence[str] | None,
    daily_cap_usd: str | Decimal | int | None,
    team_daily_cap_usd: str | Decimal | int | None,
    team_monthly_cap_usd: str | Decimal | int | None,
) -> IssuedKey:
    ws = _workspace(conn, workspace, workspace_path)
    user_id = None
    if user is not None:
        u = find_user(conn, user) or add_user(conn, user, alias=user)
        user_id = u.id
    team_id = None
    if team is not None:
        t = find_team(conn, team)
        if t is None:
            t = add_team(
                conn,
                team,
                daily_cap_nanousd=_nanos(team_daily_cap_usd),
                monthly_cap_nanousd=_nanos(team_monthly_cap_usd),
            )
        elif team_daily_cap_usd is not None or team_monthly_cap_usd is not None:
            set_caps(
                conn,
                t.id,
                daily_cap_nanousd=KEEP
                if team_daily_cap_usd is None
                else _nanos(team_daily_cap_usd),
                monthly_cap_nanousd=(
                    KEEP if team_monthly_cap_usd is None else _nanos(team_monthly_cap_usd)
                ),
            )
        team_id = t.id
    key, secret = issue_key(
        conn,
        name=name or f"{user or 'anon'}-key",
        workspace=ws.id,
        user=user_id,
        team=team_id,
        allowed_models=allowed_models,
        daily_cap_nanousd=_nanos(daily_cap_usd),
    )
    return IssuedKey(
        token=secret,
        key_id=key.id,
        workspace_id=ws.id,
        workspace_path=ws.path or ws.name,
        user_id=key.user_id,
        team_id=key.team_id,
    )


def make_key(
    db: Engine | Connection,
    *,
    workspace: str = "acme",
    workspace_path: str | None = None,
    user: str | None = "alice",
    team: str | None = "eng",
    name: str | None = None,
    allowed_models: Sequence[str] | None = None,
    daily_cap_usd: str | Decimal | int | None = None,
    team_daily_cap_usd: str | Decimal | int | None = None,
    team_monthly_cap_usd: str | Decimal | int | None = None,
) -> IssuedKey:
    """Get-or-create workspace/user/team and issue a key; returns its plaintext token and ids.

    Money arguments are USD (Decimal, int or decimal string). Team caps apply
    to a new team, or update an existing one when given.
    """
    ctx: AbstractContextManager[Connection] = (
        nullcontext(db) if isinstance(db, Connection) else db.begin()
    )
    with ctx as conn:
        return _make(
            conn,
            workspace=workspace,
            workspace_path=workspace_path,
            user=user,
            team=team,
            name=name,
            allowed_models=allowed_models,
            daily_cap_usd=daily_cap_usd,
            team_daily_cap_usd=team_daily_cap_usd,
            team_monthly_cap_usd=team_monthly_cap_usd,
        )


@pytest.fixture
def make_gateway_key(engine: Engine) -> Callable[..., IssuedKey]:
    """`make_key` bound to this test's ``engine`` (keyword arguments as `make_key`)."""

    def _issue(**kw: object) -> IssuedKey:
        return make_key(engine, **kw)  # type: ignore[arg-type]

    return _issue


@pytest.fixture
def gateway_key(make_gateway_key: Callable[..., IssuedKey]) -> IssuedKey:
    """A key for user ``alice`` in team ``eng``, workspace ``acme`` (no caps)."""
    return make_gateway_key()
