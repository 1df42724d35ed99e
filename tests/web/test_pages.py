"""Each page answers 200 with the API's figures for the same range; CSV exports; bad input."""

import csv
import html
import io
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx

from tests.web.conftest import UIClient
from tests.web.seed import Seeded

PAGES = (
    "/ui",
    "/ui/teams",
    "/ui/keys",
    "/ui/forecast",
    "/ui/savings",
    "/ui/routing",
    "/ui/reconciliation",
    "/ui/ingestion",
)


def _rng(s: Seeded) -> dict[str, str]:
    """The last 7 days: ``to`` is exclusive on a page as in the API (issue 18 #4)."""
    return {
        "from": (s.today - timedelta(days=6)).isoformat(),
        "to": (s.today + timedelta(days=1)).isoformat(),
    }


def _api_rng(s: Seeded) -> dict[str, str]:
    """The same days as the page's range, as the API's half-open window."""
    return {
        "from": (s.today - timedelta(days=6)).isoformat() + "T00:00:00Z",
        "to": (s.today + timedelta(days=1)).isoformat() + "T00:00:00Z",
    }


def _csv(ui: UIClient, path: str, table: str, **params: str) -> list[dict[str, str]]:
    r = ui.get(path, params={**params, "csv": table})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(r.text)))


def _usd_cells(page: str, table: str, col: str) -> list[Decimal]:
    body = page.split(f'data-table="{table}"', 1)[1].split("</table>", 1)[0]
    found = re.findall(rf'data-col="{col}" data-label="[^"]*" data-usd="([^"]+)"', body)
    return [Decimal(v) for v in found]


def _api(api: httpx.Client, path: str, **params: str) -> Any:
    r = api.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json(parse_float=Decimal)


def test_every_page_renders(ui: UIClient, seeded: Seeded) -> None:
    for path in PAGES:
        r = ui.get(path, params=_rng(seeded))
        assert r.status_code == 200, (path, r.text[:500])
        assert r.headers["content-type"].startswith("text/html")
        assert "<h1>" in r.text
    # default range (last 7 days) and the slash form
    assert ui.get("/ui").status_code == 200
    assert ui.get("/ui/", follow_redirects=True).status_code == 200
    css = ui.get("/ui/static/metis.css")
    assert css.status_code == 200 and "table-wrap" in css.text


def test_overview_equals_the_api(ui: UIClient, api: httpx.Client, seeded: Seeded) -> None:
    page = ui.get("/ui", params=_rng(seeded)).text
    cost = _api(api, "/analytics/cost", group_by="model", **_api_rng(seeded))
    total = cost["total"]["cost_usd"]
    assert total == Decimal("5.85")  # provider truths 4 + 0.1 on D0, gateway 1.75 today
    assert f'id="kpi-cost" data-usd="{total:.9f}"' in page
    assert ">$5.85<" in page and 'title="$5.85"' in page
    models = {
        r["model"]: Decimal(r["cost_usd"]) for r in _csv(ui, "/ui", "top_models", **_rng(seeded))
    }
    assert models == {d["model"]: d["cost_usd"] for d in cost["data"]}
    users_api = _api(api, "/analytics/cost", group_by="user", **_api_rng(seeded))
    users = {
        r["user_id"] or None: Decimal(r["cost_usd"])
        for r in _csv(ui, "/ui", "top_users", **_rng(seeded))
    }
    assert users == {d["user_id"]: d["cost_usd"] for d in users_api["data"]}
    assert _usd_cells(page, "top_models", "cost_usd") == [d["cost_usd"] for d in cost["data"]]
    # spend per day by team sums to the same total; by source too
    by_team = _csv(ui, "/ui", "spend_by_day", **_rng(seeded))
    assert sum(Decimal(r["cost_usd"]) for r in by_team) == total
    by_source = _csv(ui, "/ui", "spend_by_day", stack="source", **_rng(seeded))
    src_api = _api(api, "/analytics/cost", group_by="source", **_api_rng(seeded))
    per_source: dict[str, Decimal] = {}
    for r in by_source:
        per_source[r["source"]] = per_source.get(r["source"], Decimal(0)) + Decimal(r["cost_usd"])
    assert per_source == {d["source"]: d["cost_usd"] for d in src_api["data"]}
    assert "<svg" in page and "eng" in page
    # today vs caps: eng spent $1.50 today through the gateway against its $5 daily cap
    caps = {r["team"]: r for r in _csv(ui, "/ui", "team_caps", **_rng(seeded))}
    today = {"from": seeded.today.isoformat(), "to": (seeded.today + timedelta(days=1)).isoformat()}
    by_team_api = _api(api, "/analytics/by_team", source="gateway", view="raw", **today)
    eng = next(t for t in by_team_api["data"] if t["team_name"] == "eng")
    assert Decimal(caps["eng"]["today_usd"]) == eng["cost_usd"] == Decimal("1.5")
    assert Decimal(caps["eng"]["daily_cap_usd"]) == Decimal(5)
    assert "ops" not in caps  # no caps
    keys = _csv(ui, "/ui", "key_caps", **_rng(seeded))
    assert [(k["key_id"], Decimal(k["today_usd"])) for k in keys] == [("key_a", Decimal("1.5"))]


def test_views_and_workspace_filter(ui: UIClient, api: httpx.Client, seeded: Seeded) -> None:
    for view in ("raw", "reconciled"):
        rows = _csv(ui, "/ui", "top_models", view=view, workspace="w", **_rng(seeded))
        body = _api(
            api, "/analytics/cost", group_by="model", view=view, workspace="w", **_api_rng(seeded)
        )
        assert {r["model"]: Decimal(r["cost_usd"]) for r in rows} == {
            d["model"]: d["cost_usd"] for d in body["data"]
        }
    page = ui.get("/ui", params={"view": "raw", **_rng(seeded)}).text
    assert '<option value="raw" selected>' in page
    # the filters travel with the navigation links
    assert "/ui/teams?from=" in page and "view=raw" in page


def test_teams_page(ui: UIClient, api: httpx.Client, seeded: Seeded) -> None:
    r = ui.get("/ui/teams", params=_rng(seeded))
    assert r.status_code == 200
    rows = {t["team"]: t for t in _csv(ui, "/ui/teams", "teams", **_rng(seeded))}
    body = _api(api, "/analytics/by_team", **_api_rng(seeded))
    api_teams = {t["team_name"]: t for t in body["data"]}
    for name in ("eng", "ops"):
        assert Decimal(rows[name]["cost_usd"]) == api_teams[name]["cost_usd"]
        assert int(rows[name]["call_count"]) == api_teams[name]["call_count"]
    assert Decimal(rows["eng"]["daily_cap_usd"]) == Decimal(5)
    assert Decimal(rows["eng"]["monthly_cap_usd"]) == Decimal(100)
    assert rows["ops"]["daily_cap_usd"] == ""
    assert rows["eng"]["users"] == "alice" and rows["ops"]["users"] == "bob"
    members = _csv(ui, "/ui/teams", "team_users", **_rng(seeded))
    alice = next(m for m in members if m["user"] == "alice")
    by_user = {u["user_id"]: u for u in api_teams["eng"]["by_user"]}
    assert Decimal(alice["cost_usd"]) == by_user["usr_a"]["cost_usd"]
    assert 'class="capbar' in r.text  # bars drawn
    assert "<svg" in r.text


def test_keys_page_never_shows_secrets(ui: UIClient, api: httpx.Client, seeded: Seeded) -> None:
    r = ui.get("/ui/keys", params=_rng(seeded))
    assert r.status_code == 200
    keys = {k["key_id"]: k for k in _csv(ui, "/ui/keys", "keys", **_rng(seeded))}
    body = _api(api, "/analytics/by_key", **_api_rng(seeded))
    for d in body["data"]:
        if d["key_id"]:
            assert Decimal(keys[d["key_id"]]["cost_usd"]) == d["cost_usd"]
    assert keys["key_a"]["status"] == "active" and keys["key_a"]["user"] == "alice"
    # only the display prefix is shown: the stored prefix is 8 characters of a 46-character secret
    assert re.search(r"gw_[A-Za-z0-9_-]{20,}", r.text) is None
    users = {u["alias"]: u for u in _csv(ui, "/ui/keys", "users", **_rng(seeded))}
    assert users["alice"]["active_keys"] == "1"


def test_reconciliation_page(ui: UIClient, api: httpx.Client, seeded: Seeded) -> None:
    r = ui.get("/ui/reconciliation", params=_rng(seeded))
    assert r.status_code == 200
    body = _api(api, "/analytics/reconciliation", **_rng(seeded))
    rows = _csv(ui, "/ui/reconciliation", "reconciliation", **_rng(seeded))
    total = rows[-1]
    assert total["day"] == "total"
    assert Decimal(total["reconciled_usd"]) * 10**9 == body["totals"]["reconciled"]["cost_nanousd"]
    assert (
        Decimal(total["unattributed_usd"]) * 10**9 == body["totals"]["unattributed"]["cost_nanousd"]
    )
    assert Decimal(total["drift_usd"]) * 10**9 == body["totals"]["drift"]["cost_nanousd"]
    d0 = {r["provider"]: r for r in rows if r["day"] == seeded.d0.isoformat()}
    assert Decimal(d0["openai"]["unattributed_usd"]) == Decimal(1)
    assert Decimal(d0["openai"]["duplicates_usd"]) == Decimal(2)
    assert Decimal(d0["anthropic"]["drift_usd"]) == Decimal("0.1")
    # highlighted rows
    assert re.search(r'<tr class="[^"]*drift', r.text)
    assert re.search(r'<tr class="[^"]*unattributed', r.text)
    cells = _csv(ui, "/ui/reconciliation", "cells", **_rng(seeded))
    assert len(cells) == len(body["cells"])


def test_ingestion_page(ui: UIClient, api: httpx.Client, seeded: Seeded) -> None:
    r = ui.get("/ui/ingestion", params=_rng(seeded))
    assert r.status_code == 200
    rows = {c["credential_id"]: c for c in _csv(ui, "/ui/ingestion", "credentials", **_rng(seeded))}
    body = _api(api, "/analytics/ingest", **_api_rng(seeded))
    assert set(rows) == {d["credential_id"] for d in body["data"]} == {"cred_oa", "cred_an"}
    for d in body["data"]:
        assert rows[d["credential_id"]]["complete_through"] == (d["complete_through"] or "")
        assert rows[d["credential_id"]]["days_synced"] == "1/7"  # the covered day D0
    assert "Sync now" in r.text


def test_ingest_tokens_and_pushed_sources(
    ui: UIClient, seeded: Seeded, engine: Any, server: Any
) -> None:
    """Last data seen per ingest token; telemetry sources beside the plugin's on reconciliation."""
    from datetime import date

    from metis.ingest import tokens
    from tests.ingest.otel.fixtures import CLAUDE

    with engine.begin() as c:
        _, secret = tokens.create_token(c, "ws_1", "ada-claude", "otel", via_gateway=True)
        tokens.create_token(c, "ws_1", "idle")
    r = httpx.post(
        server.url + "/otel/v1/logs",
        content=(CLAUDE / "logs.json").read_bytes(),
        headers={"content-type": "application/json", "authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 200
    page = ui.get("/ui/ingestion", params=_rng(seeded))
    assert page.status_code == 200 and "ada-claude" in page.text and secret not in page.text
    rows = _csv(ui, "/ui/ingestion", "tokens", **_rng(seeded))
    by_name = {(x["name"], x["channel"]): x for x in rows}
    tok = by_name[("ada-claude", "OTLP logs")]
    assert tok["via_gateway"] == "true" and tok["last_seen_at"].endswith("Z")
    assert (tok["requests"], tok["records"], tok["accepted"], tok["rejected"]) == (
        "1",
        "3",
        "1",
        "0",
    )
    assert by_name[("idle", "never used")]["last_seen_at"] == ""
    fixture_day = date(2026, 12, 5)  # when the Claude Code fixture was captured
    rng = {
        "from": min(fixture_day, seeded.today - timedelta(days=6)).isoformat(),
        "to": (max(fixture_day, seeded.today) + timedelta(days=1)).isoformat(),  # exclusive
    }
    assert ui.get("/ui/reconciliation", params=rng).status_code == 200
    sources = {x["source"]: x for x in _csv(ui, "/ui/reconciliation", "sources", **rng)}
    assert sources["claude_code"]["via_gateway_calls"] == "1"  # the token's setting
    assert sources["claude_code"]["counted_calls"] == "0"
    assert Decimal(sources["claude_code"]["not_counted_usd"]) == Decimal("0.03864375")
    assert sources["hermes_plugin"]["duplicate_calls"] == "1"


BAD_FILTERS = (
    ({"from": "yesterday"}, "from must be a date YYYY-MM-DD"),
    ({"to": "2026-13-01"}, "to must be a date YYYY-MM-DD"),
    ({"from": "2026-11-10", "to": "2026-11-01"}, "from must be before to"),
    ({"from": "2026-11-10", "to": "2026-11-10"}, "from must be before to (to is exclusive)"),
    ({"from": "2020-01-01", "to": "2026-11-01"}, "longer than 366 days"),
    ({"workspace": "nope"}, "unknown workspace 'nope'"),
    ({"workspace": "a b"}, "workspace must match"),
    ({"view": "cooked"}, "view must be raw or reconciled"),
    ({"stack": "user"}, "stack must be one of team, source"),
)


def test_no_user_and_no_team_rows_are_explained_and_linked(ui: UIClient, seeded: Seeded) -> None:
    """(no user) is the provider-reported remainder: $1 unattributed (openai on D0) less the
    $0.10 anthropic drift correction."""
    page = ui.get("/ui", params=_rng(seeded)).text
    note = page.split('id="t-top_users"', 1)[1].split("</section>", 1)[0]
    assert "<strong>(no user)</strong> is" in note
    assert 'data-usd="0.900000000"' in note and "bypassed Metis" in note
    link = re.search(r'<a href="(/ui/reconciliation\?[^"]+)">Reconciliation</a>', note)
    assert link and "from=" + _rng(seeded)["from"] in html.unescape(link.group(1))
    assert ui.get(html.unescape(link.group(1))).status_code == 200
    assert 'id="no-team-explain"' in page  # under the chart stacked by team
    teams = ui.get("/ui/teams", params=_rng(seeded)).text
    assert 'id="no-team-explain"' in teams and "bypassed Metis" in teams
    raw = ui.get("/ui", params={**_rng(seeded), "view": "raw"}).text
    assert "a provider&#39;s report never names a user" in raw


def test_soft_caps_beside_hard_caps(
    ui: UIClient, seeded: Seeded, metis_env: dict[str, str]
) -> None:
    from pathlib import Path

    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text(
        "schema_version: 1\n"
        "rules:\n"
        "  - name: eng-soft\n"
        "    when: {team_cost_today_exceeds_usd: 2.5, model_in: [gpt-4o]}\n"
        "    use: openai:gpt-4o-mini\n"
        "  - name: key-soft\n"
        "    when: {cost_today_exceeds_usd: 1}\n"
        "    use: openai:gpt-4o-mini\n"
    )
    page = html.unescape(ui.get("/ui/teams", params=_rng(seeded)).text)
    soft = _csv(ui, "/ui/teams", "soft_caps", **_rng(seeded))
    assert [(r["rule"], r["scope"], r["period"], r["threshold_usd"]) for r in soft] == [
        ("eng-soft", "team", "day", "2.500000000"),
        ("key-soft", "key", "day", "1.000000000"),
    ]
    assert soft[0]["conditions"] == "model gpt-4o"
    # eng's daily bar: $1.50 of $5.00, with a tick at the $2.50 soft cap (half way)
    assert "$1.50 of $5.00 (30%) · soft $2.50" in page
    assert 'x1="120.0"' in page and "stroke-dasharray" in page
    overview = _csv(ui, "/ui", "team_caps", **_rng(seeded))
    eng = next(r for r in overview if r["team"] == "eng")
    assert eng["soft_caps"].startswith("$2.50/day → openai:gpt-4o-mini (rule eng-soft;")
    keys = _csv(ui, "/ui", "key_caps", **_rng(seeded))
    assert keys[0]["soft_caps"].startswith("$1.00/day → openai:gpt-4o-mini (rule key-soft")
    # a broken file is said, not a 500
    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text("schema_version: 7\n")
    r = ui.get("/ui/teams", params=_rng(seeded))
    assert r.status_code == 200 and "the gateway keeps its last good rules" in r.text


def test_forecast_page_equals_the_api(ui: UIClient, api: httpx.Client, seeded: Seeded) -> None:
    r = ui.get("/ui/forecast")
    assert r.status_code == 200
    body = _api(api, "/analytics/forecast", by="team")
    rows = {t["id"]: t for t in _csv(ui, "/ui/forecast", "forecast_team")}
    assert {k: Decimal(v["forecast_usd"]) for k, v in rows.items()} == {
        d["team_id"] or "": d["forecast_usd"] for d in body["data"]
    }
    eng = rows["team_e"]
    api_eng = next(d for d in body["data"] if d["team_id"] == "team_e")
    assert Decimal(eng["month_to_date_usd"]) == api_eng["month_to_date_usd"]
    assert Decimal(eng["cap_usd"]) == 100 and eng["name"] == "eng"
    assert "Weekly means of the last 4 whole weeks" in r.text  # the method, stated
    assert 'id="backtest"' in r.text
    users = _csv(ui, "/ui/forecast", "forecast_user")
    assert {u["name"] for u in users} >= {"alice", "bob"}
    # one read serves the three tables: each equals its own API answer
    for by in ("user", "workspace"):
        api_by = _api(api, "/analytics/forecast", by=by)
        rows_by = _csv(ui, "/ui/forecast", f"forecast_{by}")
        assert [(r["id"], Decimal(r["forecast_usd"])) for r in rows_by] == [
            (d[f"{by}_id"] or "", d["forecast_usd"]) for d in api_by["data"]
        ]
    assert f'data-usd="{body["total"]["forecast_usd"]:.9f}"' in r.text


def test_savings_page_equals_the_api(ui: UIClient, api: httpx.Client, seeded: Seeded) -> None:
    r = ui.get("/ui/savings", params={**_rng(seeded), "baseline": "openai:gpt-4o-mini"})
    assert r.status_code == 200
    body = _api(api, "/analytics/savings", baseline="openai:gpt-4o-mini", **_api_rng(seeded))
    assert f'id="kpi-savings" data-usd="{body["savings_usd"]:.9f}"' in r.text
    rows = _csv(ui, "/ui/savings", "savings", baseline="openai:gpt-4o-mini", **_rng(seeded))
    assert [(x["model"], Decimal(x["savings_usd"])) for x in rows[:-1]] == [
        (d["model"], d["savings_usd"]) for d in body["data"]
    ]
    assert 'value="openai:gpt-4o-mini"' in r.text  # the baseline picker keeps it
    cache = _csv(ui, "/ui/savings", "cache", **_rng(seeded))
    api_cache = _api(api, "/analytics/cache_effectiveness", **_api_rng(seeded))
    assert [x["model"] for x in cache[:-1]] == [d["model"] for d in api_cache["data"]]
    bad = ui.get("/ui/savings", params={"baseline": "nope"})
    assert bad.status_code == 400 and "baseline must be provider:model" in html.unescape(bad.text)


def test_routing_page_equals_the_api(ui: UIClient, api: httpx.Client, seeded: Seeded) -> None:
    r = ui.get("/ui/routing", params=_rng(seeded))
    assert r.status_code == 200
    rel = _api(api, "/analytics/reliability", **_api_rng(seeded))
    rows = _csv(ui, "/ui/routing", "reliability", **_rng(seeded))
    assert [(x["model"], int(x["calls"]), x["p50"]) for x in rows] == [
        (d["model"], d["calls"], str(d["latency_ms"]["p50"])) for d in rel["data"]
    ]
    routing = _api(api, "/analytics/routing", **_api_rng(seeded))["data"]
    assert f'id="kpi-decisions">{routing["decisions"]}<' in r.text


def test_bad_filters_are_400_pages(ui: UIClient) -> None:
    for params, message in BAD_FILTERS:
        for path in ("/ui", "/ui/reconciliation"):
            r = ui.get(path, params=params)
            assert r.status_code == 400, (path, params)
            assert r.headers["content-type"].startswith("text/html")
            assert message in html.unescape(r.text), (path, params)


def test_unknown_csv_table_is_404(ui: UIClient) -> None:
    r = ui.get("/ui/teams", params={"csv": "nope"})
    assert r.status_code == 404 and "no table 'nope'" in html.unescape(r.text)


def test_csv_text_cells_are_never_formulas(ui: UIClient, seeded: Seeded, cli: Any) -> None:
    cli.ok("gateway", "user", "add", "--name", "=HYPERLINK(1)", "--alias", "mallory")
    users = {u["alias"]: u for u in _csv(ui, "/ui/keys", "users", **_rng(seeded))}
    assert users["mallory"]["display_name"] == "'=HYPERLINK(1)"
    rec = _csv(ui, "/ui/reconciliation", "cells", **_rng(seeded))
    assert rec and all(not r["drift_usd"].startswith("'") for r in rec)  # numbers stay numbers


def test_user_text_is_escaped(ui: UIClient, seeded: Seeded, cli: Any) -> None:
    cli.ok("gateway", "user", "add", "--name", "<img src=x onerror=alert(1)>", "--alias", "eve")
    page = ui.get("/ui/keys").text
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_range_presets(ui: UIClient, seeded: Seeded) -> None:
    page = html.unescape(ui.get("/ui/teams", params={"workspace": "w"}).text)
    t = seeded.today
    end = (t + timedelta(days=1)).isoformat()
    for days in (7, 30, 90):
        start = (t - timedelta(days=days - 1)).isoformat()
        assert f"/ui/teams?from={start}&to={end}&workspace=w" in page
    assert f"from={t.replace(day=1).isoformat()}&to={end}" in page
    assert 'aria-current="true">7 days</a>' in page  # the default range
    # the resolved window is shown: the default is the API's default
    start7 = (t - timedelta(days=6)).isoformat()
    assert f'id="window" data-start="{start7}T00:00:00Z" data-end="{end}T00:00:00Z"' in page
    assert "7 days, today in progress" in page


def test_user_caps_on_overview_and_keys_page(
    ui: UIClient, api: httpx.Client, seeded: Seeded, cli: Any
) -> None:
    """Issue 18 #7: user caps are reported like team caps (today's gateway spend vs caps)."""
    cli.ok("gateway", "user", "set-cap", "alice", "--daily-cap-usd", "2", "--monthly-cap-usd", "50")
    page = ui.get("/ui", params=_rng(seeded)).text
    assert 'data-table="user_caps"' in page
    (row,) = _csv(ui, "/ui", "user_caps", **_rng(seeded))
    today = {"from": seeded.today.isoformat(), "to": (seeded.today + timedelta(days=1)).isoformat()}
    by_user = _api(api, "/analytics/cost", group_by="user", source="gateway", view="raw", **today)
    alice = next(u for u in by_user["data"] if u["user_id"] == "usr_a")
    assert row["user"] == "alice" and Decimal(row["today_usd"]) == alice["cost_usd"]
    assert Decimal(row["daily_cap_usd"]) == 2 and Decimal(row["monthly_cap_usd"]) == 50
    assert alice["daily_cap_usd"] == 2 and alice["monthly_cap_usd"] == 50
    users = {u["alias"]: u for u in _csv(ui, "/ui/keys", "users", **_rng(seeded))}
    assert Decimal(users["alice"]["daily_cap_usd"]) == 2 and users["bob"]["daily_cap_usd"] == ""
