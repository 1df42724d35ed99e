"""Every identity mutation moves the ``identity`` config version (gateway caches reload)."""

from collections.abc import Callable

import pytest
from sqlalchemy import Connection, Engine

from metis.identity import keys, teams, users
from metis.ledger import versions
from metis.workspaces import add_workspace


def _setup(conn: Connection) -> str:
    add_workspace(conn, "acme")
    users.add_user(conn, "Alice", alias="alice")
    teams.add_team(conn, "eng")
    return keys.issue_key(conn, name="k", workspace="acme")[0].id


MUTATIONS: dict[str, Callable[[Connection, str], object]] = {
    "add_user": lambda c, _k: users.add_user(c, "Bob", alias="bob"),
    "disable_user": lambda c, _k: users.disable_user(c, "alice"),
    "set_email": lambda c, _k: users.set_email(c, "alice", "a@org"),
    "add_team": lambda c, _k: teams.add_team(c, "ops"),
    "set_caps": lambda c, _k: teams.set_caps(c, "eng", daily_cap_nanousd=1),
    "disable_team": lambda c, _k: teams.disable_team(c, "eng"),
    "issue_key": lambda c, _k: keys.issue_key(c, name="k2", workspace="acme", user="alice"),
    "revoke_key": lambda c, k: keys.revoke_key(c, k),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_mutation_bumps_identity_version_in_its_transaction(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        key_id = _setup(conn)
        v0 = versions.read(conn, "identity")
    with engine.begin() as conn:
        MUTATIONS[name](conn, key_id)
        assert versions.read(conn, "identity") == v0 + 1
    # Rolled back with the mutation: a failed transaction leaves no bump behind.
    with engine.connect() as conn:
        assert versions.read(conn, "identity") == v0 + 1
    with pytest.raises(RuntimeError), engine.begin() as conn:
        teams.add_team(conn, "rolled-back")
        raise RuntimeError("abort")
    with engine.connect() as conn:
        assert versions.read(conn, "identity") == v0 + 1
