"""Property: endpoint answers (rollups + raw edges) equal a naive SQL over raw rows."""

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, text

from metis.analytics import service
from metis.analytics.params import Filters, Window
from metis.db.tables import (
    gateway_keys,
    teams,
    usage_records,
    users,
    workspaces,
)
from metis.ledger import rollups
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage
from tests.analytics import seed
from tests.analytics.seed import T0

USERS = [None, "usr_a", "usr_b"]
TEAMS = [None, "team_e"]
KEYS = [None, "key_a", "key_b"]


@st.composite
def records(draw: Any) -> UsageRecord:
    return seed.rec(
        at=T0 + timedelta(minutes=draw(st.integers(0, 4 * 24 * 60))),
        cost=draw(st.integers(0, 10**12)),
        key_id=draw(st.sampled_from(KEYS)),
        user_id=draw(st.sampled_from(USERS)),
        team_id=draw(st.sampled_from(TEAMS)),
        source=draw(st.sampled_from(["gateway", "hermes_plugin", "provider_api_key"])),
        model=draw(st.sampled_from(["gpt-4o", "gpt-4o-mini"])),
        input_tokens=draw(st.integers(0, 5000)),
        dedupe=f"d{draw(st.integers(0, 30))}",  # collisions: revisions and replays
    )


NAIVE = {
    "user": "user_id",
    "team": "team_id",
    "model": "model",
    "source": "source",
    "gateway_key": "gateway_key_id",
    "provider": "provider",
    "workspace": "workspace_id",
}


def _naive(engine: Engine, col: str, w: Window, user: str | None) -> dict[Any, tuple[int, int]]:
    sql = (
        f"SELECT {col}, SUM(cost_nanousd), SUM(input_tokens) FROM usage_records "
        "WHERE window_start >= :s AND window_start < :e"
        + (" AND user_id = :u" if user else "")
        + f" GROUP BY {col}"
    )
    with engine.connect() as c:
        rows = c.execute(text(sql), {"s": w.start, "e": w.end, "u": user}).all()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.lists(records(), max_size=12), min_size=1, max_size=3),
    start_min=st.integers(0, 3 * 24 * 60),
    length_min=st.integers(1, 4 * 24 * 60),
    user=st.sampled_from([None, "usr_a"]),
)
def test_endpoints_agree_with_raw_sql(
    engine: Engine, batches: list[list[UsageRecord]], start_min: int, length_min: int,
    user: str | None,
) -> None:  # fmt: skip
    with engine.begin() as c:
        for t in (*(t for t, _ in rollups.TABLES), usage_records, gateway_keys, users, teams,
                  workspaces):  # fmt: skip
            c.execute(delete(t))
        seed.ws(c)
        seed.user(c, "usr_a", "alice")
        seed.user(c, "usr_b", "bob")
        seed.team(c, "team_e", "eng")
        seed.key(c, "key_a", "a", "usr_a", "team_e")
        seed.key(c, "key_b", "b", "usr_b", "team_e")
    for b in batches:
        with engine.begin() as c:
            upsert_usage(c, b)
    w = Window(T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=start_min + length_min))
    f = Filters(user_id=user)
    with engine.connect() as c:
        for group_by, col in NAIVE.items():
            body = service.cost(c, w, f, "raw", group_by)
            key = {"user": "user_id", "team": "team_id", "gateway_key": "key_id"}.get(
                group_by, group_by
            )
            got = {d[key]: (int(d["cost_usd"] * 10**9), d["input_tokens"]) for d in body["data"]}
            assert got == _naive(engine, col, w, user), group_by
        teams_body = service.by_team(c, w, f, "raw")
    naive_team = _naive(engine, "team_id", w, user)
    assert {t["team_id"]: int(t["cost_usd"] * 10**9) for t in teams_body["data"]} == {
        k: v[0] for k, v in naive_team.items()
    }
    for t in teams_body["data"]:
        assert sum(u["cost_usd"] for u in t["by_user"]) == t["cost_usd"]
