"""``GET /analytics/forecast`` and ``metis report forecast`` on a real ledger.

The ledger holds gateway records on each of the last 70 days (so the current
month and at least one complete past month); the expected figures come from
the pure method (`metis.analytics.forecast`) run on the same daily series.
"""

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import Engine

from metis.analytics.forecast import backtest, breach_day, forecast_month, next_month
from metis.money import from_nanousd
from metis.timeutil import day_start, utcnow
from tests.analytics import seed
from tests.analytics.seed import rec
from tests.conftest import Cli

USD = 1_000_000_000


def _series(today: date) -> dict[str, dict[date, int]]:
    """Spend per team per day: eng grows $0.05/day from $1, ops is flat $0.40."""
    out: dict[str, dict[date, int]] = {"team_e": {}, "team_o": {}}
    for i in range(70, -1, -1):
        d = today - timedelta(days=i)
        out["team_e"][d] = USD + (70 - i) * USD // 20
        out["team_o"][d] = 4 * USD // 10
    return out


def _seed(engine: Engine, today: date) -> dict[str, dict[date, int]]:
    series = _series(today)
    with engine.begin() as c:
        seed.ws(c)
        seed.user(c, "usr_a", "alice")
        seed.user(c, "usr_c", "carol")
        seed.team(c, "team_e", "eng", monthly=40 * USD)
        seed.team(c, "team_o", "ops")
        seed.key(c, "key_a", "alice-laptop", "usr_a", "team_e")
        seed.key(c, "key_c", "carol-ci", "usr_c", "team_o")
        records = []
        for tid, kid, uid in (("team_e", "key_a", "usr_a"), ("team_o", "key_c", "usr_c")):
            for d, cost in series[tid].items():
                at = day_start(d) + timedelta(seconds=1)
                records.append(rec(at=at, cost=cost, key_id=kid, user_id=uid, team_id=tid))
        seed.write(c, records)
    return series


def _get(api: httpx.Client, **params: str) -> Any:
    r = api.get("/analytics/forecast", params=params)
    assert r.status_code == 200, r.text
    return json.loads(r.text, parse_float=Decimal)


def test_forecast_per_team_matches_the_method_and_the_cost_api(
    engine: Engine, api: httpx.Client
) -> None:
    today = utcnow().date()
    series = _seed(engine, today)
    body = _get(api, by="team", view="raw")
    ms = today.replace(day=1)
    assert body["month"] == ms.strftime("%Y-%m") and body["by"] == "team"
    assert body["window"] == {
        "start": f"{ms}T00:00:00Z",
        "end": f"{next_month(today)}T00:00:00Z",
    }
    assert body["method"]["name"] == "damped_weekly_trend" and body["method"]["fit_days"] == 28
    rows = {r["team_id"]: r for r in body["data"]}
    assert set(rows) == {"team_e", "team_o"}
    for tid, s in series.items():
        f = forecast_month(s, today)
        r = rows[tid]
        assert r["month_to_date_usd"] == from_nanousd(f.month_to_date_nanousd)
        assert r["forecast_usd"] == from_nanousd(f.forecast_nanousd)
    assert rows["team_e"]["team_name"] == "eng" and rows["team_o"]["team_name"] == "ops"
    assert [r["team_id"] for r in body["data"]] == ["team_e", "team_o"]  # forecast DESC
    # Month to date agrees with /analytics/cost for the month's days so far.
    cost = api.get(
        "/analytics/cost",
        params={
            "group_by": "team",
            "view": "raw",
            "from": f"{ms}T00:00:00Z",
            "to": f"{today + timedelta(days=1)}T00:00:00Z",
        },
    ).json(parse_float=Decimal)
    assert {c["team_id"]: c["cost_usd"] for c in cost["data"]} == {
        tid: r["month_to_date_usd"] for tid, r in rows.items()
    }
    assert body["total"]["forecast_usd"] == sum(r["forecast_usd"] for r in rows.values())
    # The monthly cap of eng: its gateway spend, forecast and the day it gets there.
    cap = rows["team_e"]["cap"]
    f = forecast_month(series["team_e"], today)
    want_day = breach_day(f, 40 * USD)
    assert cap["scope"] == "team_monthly" and cap["limit_usd"] == 40
    assert cap["spent_usd"] == rows["team_e"]["month_to_date_usd"]
    assert cap["reaches_on"] == (want_day.isoformat() if want_day else None)
    assert cap["status"] == (
        "reached"
        if f.month_to_date_nanousd >= 40 * USD
        else ("forecast_to_reach" if want_day else "ok")
    )
    assert rows["team_o"]["cap"] is None  # no monthly cap
    # The backtest: the past month that is fully in the ledger, replayed.
    months = body["backtest"]["months"]
    assert months and months[-1] == (ms - timedelta(days=1)).strftime("%Y-%m")
    (last,) = [b for b in rows["team_e"]["backtest"] if b["month"] == months[-1]]
    m0 = date.fromisoformat(months[-1] + "-01")
    points = backtest(series["team_e"], [m0])
    assert last["actual_usd"] == from_nanousd(points[0].actual_nanousd)
    assert [(x["known_days"], x["forecast_usd"]) for x in last["forecasts"]] == [
        (p.known_days, from_nanousd(p.forecast_nanousd)) for p in points
    ]
    assert [e["known_days"] for e in body["backtest"]["errors"]] == [7, 14, 21]


def test_forecast_by_user_and_workspace_names_them(engine: Engine, api: httpx.Client) -> None:
    _seed(engine, utcnow().date())
    users = _get(api, by="user")["data"]
    assert {(r["user_id"], r["alias"], r["display_name"]) for r in users} == {
        ("usr_a", "alice", "alice"),
        ("usr_c", "carol", "carol"),
    }
    (ws,) = _get(api, by="workspace", workspace="w")["data"]
    assert ws["workspace_id"] == "ws_1" and ws["workspace_name"] == "w"
    assert ws["cap"] is None
    # the reconciled view (the default) equals raw when the gateway is the only source
    assert _get(api, by="workspace")["data"][0]["forecast_usd"] == ws["forecast_usd"]


def test_bad_parameters_are_400(api: httpx.Client) -> None:
    for params, code in (
        ({"by": "model"}, "invalid_by"),
        ({"view": "cooked"}, "invalid_view"),
        ({"workspace": "nope"}, "unknown_workspace"),
        ({"team": "a b"}, "invalid_team"),
    ):
        r = api.get("/analytics/forecast", params=params)
        assert r.status_code == 400 and r.json()["detail"]["error"] == code, r.text


def test_report_forecast_cli(engine: Engine, cli: type[Cli], api: httpx.Client) -> None:
    _seed(engine, utcnow().date())
    as_json = json.loads(cli.ok("report", "forecast", "--json").stdout, parse_float=Decimal)
    assert as_json["data"] == _get(api)["data"]
    out = cli.ok("report", "forecast", "--wide").stdout
    eng = next(line for line in out.splitlines() if line.startswith("eng "))
    f = next(r for r in as_json["data"] if r["team_id"] == "team_e")
    assert "team_e" in eng and f"{f['forecast_usd']:,.2f}" in eng  # cents for reading
    assert "method: weekly means of the last 4 whole weeks" in out
    assert "backtest on " in out
    bad = cli.run("report", "forecast", "--by", "model")
    assert bad.exit_code == 2 and "--by must be one of team, user, workspace" in bad.stderr
