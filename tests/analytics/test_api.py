"""The analytics endpoints against real data (spec 003 §5 and its test plan)."""

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import Engine, func, insert, inspect, select

from metis.db.tables import (
    events,
    ingest_runs,
    provider_credentials,
    sync_cursors,
    usage_records,
)
from metis.events import RouteDecided, event_row
from metis.pricing import PRICING_VERSION
from tests.analytics import seed
from tests.analytics.seed import T0, rec

CANDS = ["openai:gpt-4o", "openai:gpt-4o-mini"]
WIN = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-09T00:00:00Z"}


def get(api: httpx.Client, path: str, **params: Any) -> Any:
    r = api.get(path, params={**WIN, **params})
    assert r.status_code == 200, r.text
    return json.loads(r.text, parse_float=Decimal)


def err(api: httpx.Client, path: str, status: int = 400, **params: Any) -> str:
    r = api.get(path, params={**WIN, **params})
    assert r.status_code == status, r.text
    return str(r.json()["detail"]["error"])


def _identity(engine: Engine) -> None:
    with engine.begin() as c:
        seed.ws(c)
        seed.user(c, "usr_a", "alice", "alice@example.com")
        seed.user(c, "usr_b", "bob")
        seed.user(c, "usr_c", "carol")
        seed.team(c, "team_e", "eng", daily=50_000_000_000, monthly=1_200_000_000_000)
        seed.team(c, "team_o", "ops")
        seed.key(c, "key_a", "alice-laptop", "usr_a", "team_e")
        seed.key(c, "key_b", "bob-ci", "usr_b", "team_e")
        seed.key(c, "key_c", "carol", "usr_c", "team_o")
        seed.key(c, "key_u", "legacy", None, None)


def _three_keys(engine: Engine) -> None:
    _identity(engine)
    h = timedelta(hours=1)
    records = (
        [rec(at=T0 + i * h, cost=333_333_333, key_id="key_a", user_id="usr_a", team_id="team_e")
         for i in range(3)]
        + [rec(at=T0 + i * h, cost=1_000_000_001, key_id="key_b", user_id="usr_b",
               team_id="team_e") for i in range(2)]
        + [rec(at=T0 + 2 * h, cost=5_000_000_000, key_id="key_c", user_id="usr_c",
               team_id="team_o")]
        + [rec(at=T0 + 3 * h, cost=7, key_id="key_u")]
    )  # fmt: skip
    with engine.begin() as c:
        seed.write(c, records)


def test_by_team_rollup_correctness_and_precision(engine: Engine, api: httpx.Client) -> None:
    _three_keys(engine)
    body = get(api, "/analytics/by_team")
    assert body["window"] == {"start": "2026-11-01T00:00:00Z", "end": "2026-11-09T00:00:00Z"}
    assert body["current_pricing_version"] == PRICING_VERSION
    assert body["partial_coverage"] is False
    teams = body["data"]
    assert [t["team_id"] for t in teams] == ["team_o", "team_e", None]  # cost DESC, null bucket
    ops, eng, null = teams
    assert ops["cost_usd"] == Decimal("5") and ops["call_count"] == 1
    assert eng["team_name"] == "eng"
    assert eng["cost_usd"] == Decimal("3.000000001")
    assert eng["call_count"] == 5
    assert eng["input_tokens"] == 500 and eng["output_tokens"] == 50
    assert eng["daily_cap_usd"] == Decimal("50") and eng["monthly_cap_usd"] == Decimal("1200")
    assert ops["daily_cap_usd"] is None and ops["monthly_cap_usd"] is None
    assert [(u["user_id"], u["display_name"], u["cost_usd"], u["call_count"])
            for u in eng["by_user"]] == [
        ("usr_b", "bob", Decimal("2.000000002"), 2),
        ("usr_a", "alice", Decimal("0.999999999"), 3),
    ]  # fmt: skip
    for t in teams:  # decimal precision: exact, not "close"
        assert sum(u["cost_usd"] for u in t["by_user"]) == t["cost_usd"]
    assert null == {
        "team_id": None,
        "team_name": None,
        "cost_usd": Decimal("0.000000007"),
        "input_tokens": 100,
        "output_tokens": 10,
        "cached_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "call_count": 1,
        "error_count": 0,
        "daily_cap_usd": None,
        "monthly_cap_usd": None,
        "by_user": [
            {"user_id": None, "display_name": None, "alias": None,
             "cost_usd": Decimal("0.000000007"), "call_count": 1}
        ],
    }  # fmt: skip
    # the team filter by name or id; user+team is an AND
    only = get(api, "/analytics/by_team", team="eng")["data"]
    assert [t["team_id"] for t in only] == ["team_e"]
    assert get(api, "/analytics/by_team", team="team_e")["data"] == only
    both = get(api, "/analytics/by_team", team="eng", user="alice")["data"]
    assert [u["user_id"] for u in both[0]["by_user"]] == ["usr_a"]
    assert get(api, "/analytics/by_team", team="ops", user="alice")["data"] == []


def test_partial_coverage_fires_on_retagged_key(engine: Engine, api: httpx.Client) -> None:
    _three_keys(engine)
    assert get(api, "/analytics/cost", team="eng", group_by="user")["partial_coverage"] is False
    with engine.begin() as c:
        seed.key(c, "key_r", "retagged", None, None)
        seed.write(c, [rec(at=T0 + timedelta(days=1), cost=10, key_id="key_r")])
        # the key was re-issued bound to alice@eng: later rows carry the binding
        seed.write(
            c,
            [rec(at=T0 + timedelta(days=2), cost=20, key_id="key_r", user_id="usr_a",
                 team_id="team_e")],
        )  # fmt: skip
    assert get(api, "/analytics/cost", team="eng", group_by="user")["partial_coverage"] is True
    assert get(api, "/analytics/by_team", team="eng")["partial_coverage"] is True
    assert get(api, "/analytics/by_team")["partial_coverage"] is True
    # the window holding only the tagged half is not mixed
    later = get(api, "/analytics/by_team", team="eng", **{"from": "2026-11-04T00:00:00Z"})
    assert later["partial_coverage"] is False
    # ops has no retagged key in its result set
    assert get(api, "/analytics/by_team", team="ops")["partial_coverage"] is False


def test_filter_injection_and_validation(engine: Engine, api: httpx.Client) -> None:
    _three_keys(engine)
    for path in ("/analytics/cost", "/analytics/by_team", "/analytics/routing",
                 "/analytics/reliability", "/analytics/savings",
                 "/analytics/cache_effectiveness", "/analytics/by_key"):  # fmt: skip
        assert err(api, path, user="DROP TABLE") == "invalid_user"
        assert err(api, path, user="x' OR 1=1 --") == "invalid_user"
        assert err(api, path, team="eng; DROP TABLE teams") == "invalid_team"
        assert err(api, path, user="") == "invalid_user"
        assert err(api, path, user="a" * 201) == "invalid_user"
        assert err(api, path, user="nobody") == "unknown_user"
        assert err(api, path, team="nobody") == "unknown_team"
        assert err(api, path, **{"from": "yesterday"}) == "invalid_window"
        assert err(api, path, **{"from": "2026-11-09T00:00:00Z"}) == "invalid_window"
    assert err(api, "/analytics/cost", group_by="email") == "invalid_group_by"
    assert err(api, "/analytics/cost", view="bogus") == "invalid_view"
    assert err(api, "/analytics/cost", source="gateway OR 1") == "invalid_source"
    assert err(api, "/analytics/cost", workspace="nope") == "unknown_workspace"
    assert err(api, "/analytics/savings", baseline="gpt-4o") == "invalid_baseline"
    assert err(api, "/analytics/savings", baseline="openai:no-such-model") == "unknown_baseline"
    with engine.connect() as c:
        assert "users" in inspect(c).get_table_names()
        assert c.execute(select(func.count()).select_from(usage_records)).scalar() == 7
    assert httpx.get(str(api.base_url) + "/analytics/cost").status_code == 401


def test_cost_group_by_every_dimension(engine: Engine, api: httpx.Client) -> None:
    _three_keys(engine)
    with engine.begin() as c:
        r = rec(at=T0 + timedelta(days=3), cost=40, source="hermes_plugin",
                model="claude-sonnet-4-5", provider="anthropic", status=None)  # fmt: skip
        seed.write(c, [r])
    total = Decimal("8.000000048")
    for g in ("model", "provider", "day", "workspace", "gateway_key", "user", "team", "source"):
        body = get(api, "/analytics/cost", group_by=g)
        assert body["total"]["cost_usd"] == total, g
        assert sum(d["cost_usd"] for d in body["data"]) == total, g
        costs = [d["cost_usd"] for d in body["data"]]
        if g != "day":
            assert costs == sorted(costs, reverse=True), g
    users = get(api, "/analytics/cost", group_by="user")["data"]
    assert users[0] == {**users[0], "user_id": "usr_c", "display_name": "carol"}
    assert users[-1]["user_id"] is None  # null bucket: untagged key + plugin traffic
    assert users[-1]["cost_usd"] == Decimal("0.000000047")
    days = get(api, "/analytics/cost", group_by="day")["data"]
    assert [d["day"] for d in days] == ["2026-11-02", "2026-11-05"]
    src = get(api, "/analytics/cost", group_by="source", source="hermes_plugin", view="raw")
    assert [(d["source"], d["cost_usd"]) for d in src["data"]] == [
        ("hermes_plugin", Decimal("0.00000004"))
    ]
    assert src["view"] == "raw"
    keys = get(api, "/analytics/cost", group_by="gateway_key", user="alice")["data"]
    assert [(k["key_id"], k["name"]) for k in keys] == [("key_a", "alice-laptop")]
    # a partial-day window (hours) reads raw rows at the edges, exactly
    edge = get(
        api,
        "/analytics/cost",
        group_by="user",
        view="raw",
        **{"from": "2026-11-02T01:00:00Z", "to": "2026-11-02T02:30:00Z"},
    )
    assert edge["total"]["cost_usd"] == Decimal("6.666666667")  # fmt: skip


def test_empty_window_every_endpoint(engine: Engine, api: httpx.Client) -> None:
    _three_keys(engine)
    empty = {"from": "2025-01-01T00:00:00Z", "to": "2025-01-08T00:00:00Z"}
    for path in ("/analytics/cost", "/analytics/by_key", "/analytics/by_team",
                 "/analytics/cache_effectiveness", "/analytics/savings",
                 "/analytics/reliability", "/analytics/ingest"):  # fmt: skip
        body = get(api, path, **empty)
        assert body["data"] == [], path
        assert body["window"]["start"] == "2025-01-01T00:00:00Z"
    assert get(api, "/analytics/cost", **empty)["total"]["cost_usd"] == 0
    r = get(api, "/analytics/routing", **empty)["data"]
    assert r["decisions"] == 0 and r["rule_hits"] == {}


def test_default_window_is_last_seven_days(engine: Engine, api: httpx.Client) -> None:
    """One definition: 7 whole UTC days ending with today, in both views (issue 18 #4)."""
    from metis.timeutil import parse_iso, utcnow

    today = utcnow().date()
    want = {
        "start": f"{today - timedelta(days=6)}T00:00:00Z",
        "end": f"{today + timedelta(days=1)}T00:00:00Z",
    }
    for view in ("raw", "reconciled"):
        body = api.get("/analytics/cost", params={"view": view}).json()
        assert body["view"] == view and body["window"] == want, body["window"]
    assert api.get("/analytics/cost").json()["view"] == "reconciled"
    # only ``from``: through the end of today; only ``to``: the 7 days before it
    body = api.get("/analytics/cost", params={"from": str(today), "view": "raw"}).json()
    assert body["window"] == {"start": f"{today}T00:00:00Z", "end": want["end"]}
    body = api.get("/analytics/cost", params={"to": "2026-11-08", "view": "raw"}).json()
    assert body["window"] == {"start": "2026-11-01T00:00:00Z", "end": "2026-11-08T00:00:00Z"}
    recon = api.get("/analytics/reconciliation").json()
    assert (recon["from"], recon["to"]) == (want["start"][:10], want["end"][:10])
    assert parse_iso(want["end"]) - parse_iso(want["start"]) == timedelta(days=7)


def test_by_key(engine: Engine, api: httpx.Client) -> None:
    _three_keys(engine)
    data = get(api, "/analytics/by_key")["data"]
    assert [d["key_id"] for d in data] == ["key_c", "key_b", "key_a", "key_u"]
    assert data[0]["user_id"] == "usr_c" and data[0]["team_id"] == "team_o"
    assert data[0]["name"] == "carol" and data[0]["revoked"] is False
    with engine.begin() as c:
        seed.write(c, [rec(at=T0, cost=1, source="hermes_plugin")])
    data = get(api, "/analytics/by_key")["data"]
    assert data[-1]["key_id"] is None and data[-1]["cost_usd"] == Decimal("0.000000001")


def test_cache_effectiveness_and_savings(engine: Engine, api: httpx.Client) -> None:
    from metis.pricing import price

    _identity(engine)
    with engine.begin() as c:
        seed.write(c, [
            rec(at=T0, cost=1000, input_tokens=1000, cached=600, key_id="key_a",
                user_id="usr_a", team_id="team_e"),
            rec(at=T0, cost=500, input_tokens=1000, cached=0, model="gpt-4o-mini",
                key_id="key_c", user_id="usr_c", team_id="team_o"),
        ])  # fmt: skip
    body = get(api, "/analytics/cache_effectiveness")
    top = body["data"][0]
    assert (top["model"], top["cached_input_tokens"], top["uncached_input_tokens"]) == (
        "gpt-4o",
        600,
        400,
    )
    assert top["cache_hit_rate"] == Decimal("0.6")
    plain = price("openai", "gpt-4o", input_tokens=600, at=T0).cost_nanousd
    read = price("openai", "gpt-4o", input_tokens=600, cached_input_tokens=600, at=T0).cost_nanousd
    assert plain is not None and read is not None and plain > read
    assert top["savings_usd"] == Decimal(plain - read) / 10**9
    assert body["total"]["savings_usd"] == top["savings_usd"]
    eng = get(api, "/analytics/cache_effectiveness", team="eng")["data"]
    assert [d["model"] for d in eng] == ["gpt-4o"]

    s = get(api, "/analytics/savings", baseline="openai:gpt-4o")
    assert s["baseline"] == "openai:gpt-4o"
    assert s["actual_cost_usd"] == Decimal("0.0000015")
    base = sum(
        price("openai", "gpt-4o", input_tokens=i, cached_input_tokens=ca, output_tokens=10,
              at=T0).cost_nanousd or 0
        for i, ca in ((1000, 600), (1000, 0))
    )  # fmt: skip
    assert s["baseline_cost_usd"] == Decimal(base) / 10**9
    assert s["savings_usd"] == s["baseline_cost_usd"] - s["actual_cost_usd"]
    mini = [d for d in s["data"] if d["model"] == "gpt-4o-mini"]
    assert mini[0]["call_count"] == 1
    team_only = get(api, "/analytics/savings", team="ops")
    assert team_only["actual_cost_usd"] == Decimal("0.0000005")


def test_routing_from_route_decided_events(engine: Engine, api: httpx.Client) -> None:
    _identity(engine)
    rows = []
    for i, (idx, reason, rule) in enumerate([
        (0, "rule", "cheap"), (0, "rule", "cheap"), (1, "fallback", None),
        (-1, "quota_exceeded", None), (-1, "all_failed", None),
    ]):  # fmt: skip
        rows.append(
            event_row(
                RouteDecided(request_id=f"req_{i}", candidates=CANDS,
                             winner_index=idx, reason=reason, rule=rule),
                ts=T0 + timedelta(minutes=i),
                workspace_id="ws_1",
                user_id="usr_a" if i < 4 else "usr_b",
                team_id="team_e",
                gateway_key_id="key_a" if i < 4 else "key_b",
            )
        )  # fmt: skip
    with engine.begin() as c:
        c.execute(insert(events), rows)
    d = get(api, "/analytics/routing")["data"]
    assert d["decisions"] == 5 and d["fallbacks"] == 1 and d["hard_failures"] == 2
    assert d["hard_failures_by_reason"] == {"all_failed": 1, "quota_exceeded": 1}
    assert d["rule_hits"] == {"cheap": 2}
    assert d["winners"] == {"openai:gpt-4o": 2, "openai:gpt-4o-mini": 1}
    assert d["fallback_rate"] == Decimal("0.2")
    a = get(api, "/analytics/routing", user="alice")["data"]
    assert a["decisions"] == 4 and a["hard_failures_by_reason"] == {"quota_exceeded": 1}


def test_reliability(engine: Engine, api: httpx.Client) -> None:
    _identity(engine)
    recs = [rec(at=T0, cost=1, latency_ms=ms, key_id="key_a", user_id="usr_a", team_id="team_e")
            for ms in range(10, 110, 10)]  # fmt: skip
    recs += [rec(at=T0, cost=0, status="upstream_error", latency_ms=500, model="gpt-4o-mini",
                 key_id="key_b", user_id="usr_b", team_id="team_e"),
             rec(at=T0, cost=0, status="ok", latency_ms=50, model="gpt-4o-mini",
                 key_id="key_b", user_id="usr_b", team_id="team_e"),
             rec(at=T0, cost=5, source="hermes_plugin", status=None)]  # fmt: skip
    with engine.begin() as c:
        seed.write(c, recs)
    data = get(api, "/analytics/reliability")["data"]
    assert [(d["model"], d["calls"], d["errors"]) for d in data] == [
        ("gpt-4o", 10, 0),
        ("gpt-4o-mini", 2, 1),
    ]
    # Exact nearest rank: 50, 90, 100, 100, 100; 90 ms lies in the 89-90 ms bucket, reported 89.
    assert data[0]["latency_ms"] == {"p50": 50, "p90": 89, "p95": 100, "p99": 100, "max": 100}
    assert data[1]["error_rate"] == Decimal("0.5")
    bob = get(api, "/analytics/reliability", user="bob")["data"]
    assert [d["model"] for d in bob] == ["gpt-4o-mini"]
    # No identity filter: from the latency histograms (exact below 58 ms, else within 2%).
    body = get(api, "/analytics/reliability")
    assert (body["latency_method"], body["relative_error"]) == ("histogram", Decimal("0.02"))
    assert body["latency_sample"] == {"rows": 12, "every": 1, "exact": False}
    # A user filter reads the raw records, exactly.
    bob_body = get(api, "/analytics/reliability", user="bob")
    assert (bob_body["latency_method"], bob_body["relative_error"]) == ("raw", 0)
    assert bob_body["latency_sample"] == {"rows": 2, "every": 1, "exact": True}
    assert bob_body["data"][0]["latency_ms"] == {
        "p50": 50, "p90": 500, "p95": 500, "p99": 500, "max": 500
    }  # fmt: skip


def test_reliability_samples_latency_beyond_the_limit(
    engine: Engine, api: httpx.Client, monkeypatch: Any
) -> None:
    from metis.analytics import latency

    _identity(engine)
    with engine.begin() as c:
        seed.write(c, [rec(at=T0, cost=1, latency_ms=ms, status="ok" if ms % 3 else "error",
                           key_id="key_a", user_id="usr_a", team_id="team_e")
                       for ms in range(1, 101)])  # fmt: skip
    monkeypatch.setattr(latency, "LATENCY_SAMPLE", 10)
    body = get(api, "/analytics/reliability", user="alice")  # identity filter: raw records
    d = body["data"][0]
    assert (d["calls"], d["errors"]) == (100, 33)  # counts stay exact
    assert body["latency_sample"] == {"rows": 10, "every": 10, "exact": False}
    assert (body["latency_method"], body["relative_error"]) == ("raw_sample", None)
    assert 40 <= d["latency_ms"]["p50"] <= 60
    # Without the filter the histograms answer every call, however many.
    whole = get(api, "/analytics/reliability")
    assert whole["latency_sample"] == {"rows": 100, "every": 1, "exact": False}
    figures = {"p50": 50, "p90": 89, "p95": 94, "p99": 98, "max": 100}  # exact: 50 90 95 99 100
    assert whole["data"][0]["latency_ms"] == figures


def test_ingest_health(engine: Engine, api: httpx.Client) -> None:
    _identity(engine)
    with engine.begin() as c:
        for cid in ("cred_ok", "cred_bad"):
            c.execute(insert(provider_credentials).values(
                id=cid, workspace_id="ws_1", provider="openai", purpose_inference=False,
                purpose_usage_admin=True, mode="admin", created_at=T0))  # fmt: skip
        # used by the gateway only: never synced, so neither healthy nor failing
        c.execute(insert(provider_credentials).values(
            id="cred_inf", workspace_id="ws_1", provider="openai", purpose_inference=True,
            purpose_usage_admin=False, mode="standard", created_at=T0))  # fmt: skip
        c.execute(insert(sync_cursors), [
            {"credential_id": "cred_ok", "stream": "usage", "complete_through": T0,
             "last_success_at": T0, "last_error": None, "last_error_at": None, "updated_at": T0},
            {"credential_id": "cred_bad", "stream": "usage", "complete_through": None,
             "last_success_at": None, "last_error": "401 from provider", "last_error_at": T0,
             "updated_at": T0},
        ])  # fmt: skip
        c.execute(insert(ingest_runs), [
            {"id": "run_1", "credential_id": "cred_ok", "workspace_id": "ws_1", "kind": "sync",
             "started_at": T0, "status": "ok", "stored": 5, "updated": 1, "unchanged": 2,
             "errors": 0},
            {"id": "run_2", "credential_id": "cred_bad", "workspace_id": "ws_1", "kind": "sync",
             "started_at": T0, "status": "failed", "stored": 0, "updated": 0, "unchanged": 0,
             "errors": 1},
        ])  # fmt: skip
    data = {d["credential_id"]: d for d in get(api, "/analytics/ingest")["data"]}
    ok, bad = data["cred_ok"], data["cred_bad"]
    assert ok["healthy"] is True and ok["runs"] == 1 and ok["records_stored"] == 5
    assert ok["complete_through"] == "2026-11-02T00:00:00Z"
    assert bad["healthy"] is False and bad["failed_runs"] == 1
    assert bad["last_error"] == "401 from provider"
    assert ok["syncable"] is True and bad["syncable"] is True
    inf = data["cred_inf"]
    assert inf["healthy"] is None and inf["syncable"] is False and inf["runs"] == 0
    assert get(api, "/analytics/ingest", workspace="w")["data"] != []


def test_answers_name_the_users_teams_keys_and_workspaces_they_list(
    engine: Engine, api: httpx.Client
) -> None:
    """Ids stay the keys of record; a name (or alias) travels next to each."""
    _three_keys(engine)
    keys = {k["key_id"]: k for k in get(api, "/analytics/by_key")["data"]}
    a = keys["key_a"]
    assert (a["name"], a["workspace_name"], a["user_alias"], a["team_name"]) == (
        "alice-laptop", "w", "alice", "eng"
    )  # fmt: skip
    assert (keys["key_u"]["user_alias"], keys["key_u"]["team_name"]) == (None, None)
    (ws,) = get(api, "/analytics/cost", group_by="workspace")["data"]
    assert (ws["workspace"], ws["workspace_name"]) == ("ws_1", "w")
    users = {u["user_id"]: u for u in get(api, "/analytics/cost", group_by="user")["data"]}
    assert (users["usr_a"]["alias"], users["usr_a"]["display_name"]) == ("alice", "alice")
    eng = next(t for t in get(api, "/analytics/by_team")["data"] if t["team_id"] == "team_e")
    assert {u["alias"] for u in eng["by_user"]} == {"alice", "bob"}
    with engine.begin() as c:
        c.execute(
            insert(provider_credentials).values(
                id="cred_1", workspace_id="ws_1", provider="openai", mode="admin",
                purpose_inference=False, purpose_usage_admin=True, last4="abcd",
                created_at=T0,
            )
        )  # fmt: skip
    (cred,) = get(api, "/analytics/ingest")["data"]
    assert (cred["workspace_id"], cred["workspace_name"]) == ("ws_1", "w")
    recon = api.get("/analytics/reconciliation", params={"from": "2026-11-01", "to": "2026-11-09"})
    cells = recon.json()["cells"]
    assert cells and all(c["workspace_name"] == "w" for c in cells)
    # an empty workspace is a bad value (the documented pattern), as on every other endpoint
    empty = api.get("/analytics/reconciliation", params={"workspace": ""})
    assert empty.status_code == 400 and empty.json()["error"] == "invalid_workspace"
