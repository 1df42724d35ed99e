import pytest
from sqlalchemy import Engine

from metis.errors import ConflictError, NotFoundError, ValidationError
from metis.identity import teams
from metis.ledger import versions
from tests.identity.helpers import dump


def test_add_list_and_caps(engine: Engine) -> None:
    with engine.begin() as conn:
        t = teams.add_team(conn, "eng", daily_cap_nanousd=50_000_000_000)
        teams.add_team(conn, "data")
    assert t.id.startswith("team_") and t.daily_cap_nanousd == 50_000_000_000
    assert t.monthly_cap_nanousd is None
    with engine.begin() as conn:
        assert [x.name for x in teams.list_teams(conn)] == ["data", "eng"]
        v = versions.read(conn, "identity")
        t2 = teams.set_caps(conn, "eng", monthly_cap_nanousd=1_200_000_000_000)
        assert (t2.daily_cap_nanousd, t2.monthly_cap_nanousd) == (50_000_000_000, 1_200_000_000_000)
        t3 = teams.set_caps(conn, t.id, daily_cap_nanousd=None)
        assert (t3.daily_cap_nanousd, t3.monthly_cap_nanousd) == (None, 1_200_000_000_000)
        assert versions.read(conn, "identity") == v + 2


def test_duplicate_name(engine: Engine) -> None:
    with engine.begin() as conn:
        teams.add_team(conn, "eng")
    with pytest.raises(ConflictError), engine.begin() as conn:
        teams.add_team(conn, "eng")


def test_bad_set_cap_writes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        teams.add_team(conn, "eng", daily_cap_nanousd=5)
    before = dump(engine)
    with pytest.raises(NotFoundError, match="unknown team 'nope'"), engine.begin() as conn:
        teams.set_caps(conn, "nope", daily_cap_nanousd=1)
    with pytest.raises(ValidationError, match="negative"), engine.begin() as conn:
        teams.set_caps(conn, "eng", daily_cap_nanousd=-1)
    with pytest.raises(ValidationError, match="nothing to change"), engine.begin() as conn:
        teams.set_caps(conn, "eng")
    with pytest.raises(ValidationError, match="negative"), engine.begin() as conn:
        teams.add_team(conn, "ops", monthly_cap_nanousd=-5)
    assert dump(engine) == before


def test_disable(engine: Engine) -> None:
    with engine.begin() as conn:
        teams.add_team(conn, "eng")
        assert teams.disable_team(conn, "eng").disabled
        assert teams.list_teams(conn, include_disabled=False) == []
        with pytest.raises(NotFoundError):
            teams.disable_team(conn, "nope")


def test_name_differing_only_in_case_is_a_duplicate(engine: Engine) -> None:
    with engine.begin() as conn:
        teams.add_team(conn, "eng")
    with pytest.raises(ConflictError, match="'eng' already exists"), engine.begin() as conn:
        teams.add_team(conn, "ENG")
