"""Exports (usage, audit), the per-user export/forget, and `metis report cost`."""

import csv
import io
import json
import re
import stat
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select

from metis import jsonutil
from metis.analytics.params import Filters, Window
from metis.analytics.views import query_window
from metis.db.tables import (
    events,
    gateway_keys,
    ingest_tokens,
    provider_credentials,
    sync_windows,
    usage_records,
    users,
)
from metis.events import GatewayKeyIssued, GatewayQuotaExceeded, event_row
from metis.ledger.reconcile import reconciled_cells
from metis.money import usd_json
from tests.analytics.seed import T0
from tests.analytics.test_api import WIN, _identity, _three_keys, get
from tests.conftest import Cli


def _audit_events(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(insert(events), [
            event_row(GatewayKeyIssued(key_id="key_a", name="alice-laptop", workspace_path="/w",
                                       user_id="usr_a", team_id="team_e", allowed_models=None,
                                       daily_cap_usd=None, issued_at="2026-11-02T00:00:00Z"),
                      ts=T0, workspace_id="ws_1"),
            event_row(GatewayQuotaExceeded(gateway_key_id="key_a", user_id="usr_a",
                                           team_id="team_e", scope="team_daily",
                                           limit_usd=Decimal("50"), current_usd=Decimal("50.5"),
                                           inbound_shape="openai"),
                      ts=T0 + timedelta(hours=5), workspace_id="ws_1"),
        ])  # fmt: skip


def test_export_usage_cli_csv_jsonl_grouped(engine: Engine, cli: type[Cli], tmp_path: Path) -> None:
    _three_keys(engine)
    out = tmp_path / "u.csv"
    cli.ok("export", "usage", "--from", WIN["from"], "--to", WIN["to"], "--output", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 7
    assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal("8.000000008")
    assert "@" not in out.read_text()
    jl = cli.ok("export", "usage", "--from", WIN["from"], "--to", WIN["to"], "--format", "jsonl",
                "--user", "alice").stdout  # fmt: skip
    lines = [json.loads(x, parse_float=Decimal) for x in jl.splitlines()]
    assert {r["user_id"] for r in lines} == {"usr_a"} and len(lines) == 3
    grouped = cli.ok("export", "usage", "--from", WIN["from"], "--to", WIN["to"],
                     "--group-by", "team,user", "--format", "jsonl").stdout  # fmt: skip
    g = [json.loads(x, parse_float=Decimal) for x in grouped.splitlines()]
    assert {(r["team"], r["user"], r["cost_usd"]) for r in g} == {
        ("team_e", "usr_a", Decimal("0.999999999")),
        ("team_e", "usr_b", Decimal("2.000000002")),
        ("team_o", "usr_c", Decimal("5")),
        (None, None, Decimal("7E-9")),
    }
    bad = cli.run("export", "usage", "--group-by", "email")
    assert bad.exit_code != 0 and "group_by" in bad.stderr
    bad = cli.run("export", "usage", "--user", "DROP TABLE")
    assert bad.exit_code != 0 and "user must match" in bad.stderr


def test_export_audit_ids_only_and_with_names(
    engine: Engine, cli: type[Cli], tmp_path: Path
) -> None:
    _three_keys(engine)
    _audit_events(engine)
    out = tmp_path / "audit.jsonl"
    cli.ok("export", "audit", "--from", WIN["from"], "--to", WIN["to"], "--format", "jsonl",
           "-o", str(out))  # fmt: skip
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    rows = [json.loads(x, parse_float=Decimal) for x in out.read_text().splitlines()]
    kinds = [r["kind"] for r in rows]
    assert kinds[:2] == ["key_issued", "quota_exceeded"]
    assert rows[1]["scope"] == "team_daily" and Decimal(rows[1]["limit_usd"]) == 50
    paid = [r for r in rows if r["kind"] == "who_paid_what"]
    assert {(r["date"], r["user_id"], r["team_id"], r["key_id"], r["model"], r["cost_usd"])
            for r in paid} == {
        ("2026-11-02", "usr_a", "team_e", "key_a", "gpt-4o", Decimal("0.999999999")),
        ("2026-11-02", "usr_b", "team_e", "key_b", "gpt-4o", Decimal("2.000000002")),
        ("2026-11-02", "usr_c", "team_o", "key_c", "gpt-4o", Decimal("5")),
        ("2026-11-02", None, None, "key_u", "gpt-4o", Decimal("7E-9")),
    }  # fmt: skip
    assert "alice" not in out.read_text() and "user_name" not in rows[0]
    named = cli.ok("export", "audit", "--from", WIN["from"], "--to", WIN["to"], "--format",
                   "csv", "--with-names").stdout  # fmt: skip
    table = list(csv.DictReader(io.StringIO(named)))
    alice = [r for r in table if r["user_id"] == "usr_a" and r["kind"] == "who_paid_what"]
    assert alice[0]["user_name"] == "alice" and alice[0]["team_name"] == "eng"
    assert alice[0]["key_name"] == "alice-laptop"
    assert "@" not in named


def test_export_http_streams(engine: Engine, api: httpx.Client) -> None:
    _three_keys(engine)
    _audit_events(engine)
    with api.stream("GET", "/export/usage", params={**WIN, "format": "csv"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        body = b"".join(r.iter_bytes()).decode()
    assert len(body.strip().splitlines()) == 8  # header + 7 rows
    r = api.get("/export/audit", params={**WIN, "format": "jsonl", "with_names": "true"})
    assert r.status_code == 200 and '"user_name":"alice"' in r.text
    assert api.get("/export/usage", params={"format": "xml"}).json()["detail"]["error"] == (
        "invalid_format"
    )
    assert api.get("/export/usage", params={"user": "DROP TABLE"}).status_code == 400
    for bad in ("", "day,", "day,,user", "email"):  # the OpenAPI pattern refuses each
        r = api.get("/export/usage", params={"group_by": bad})
        assert r.json()["detail"]["error"] == "invalid_group_by", (bad, r.text)
    assert httpx.get(str(api.base_url) + "/export/usage").status_code == 401


def test_user_export_and_forget(engine: Engine, api: httpx.Client) -> None:
    _three_keys(engine)
    _audit_events(engine)
    before_team = get(api, "/analytics/by_team")["data"]
    before_total = get(api, "/analytics/cost")["total"]["cost_usd"]

    exp = api.get("/analytics/user/usr_a/export")
    assert exp.status_code == 200
    doc = json.loads(exp.text, parse_float=Decimal)
    assert doc["user"]["email"] == "alice@example.com"
    assert len(doc["usage_records"]) == 3 and len(doc["events"]) == 2
    assert [k["id"] for k in doc["gateway_keys"]] == ["key_a"]
    assert "secret_sha256" not in doc["gateway_keys"][0]
    assert sum(d["cost_usd"] for d in doc["usage_daily"]) == Decimal("0.999999999")

    from metis.ingest import tokens

    with engine.begin() as c:  # an agent's ingest token bound to the user
        itok, _ = tokens.create_token(c, "ws_1", "alice-claude", "otel", user="usr_a")
    r = api.post("/analytics/user/usr_a/forget")
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["usage_records_pseudonymized"] == 3 and first["keys_revoked"] == 1
    assert first["already_forgotten"] is False
    again = api.post("/analytics/user/usr_a/forget").json()  # idempotent
    assert again["already_forgotten"] is True and again["usage_records_pseudonymized"] == 0

    # totals unchanged; the team still counts the rows, but no row links to the user
    assert get(api, "/analytics/cost")["total"]["cost_usd"] == before_total
    after_team = get(api, "/analytics/by_team")["data"]
    assert [(t["team_id"], t["cost_usd"]) for t in after_team] == [
        (t["team_id"], t["cost_usd"]) for t in before_team
    ]
    eng = next(t for t in after_team if t["team_id"] == "team_e")
    assert "usr_a" not in {u["user_id"] for u in eng["by_user"]}
    assert sum(u["cost_usd"] for u in eng["by_user"]) == eng["cost_usd"]
    with engine.connect() as c:
        assert (
            c.execute(select(usage_records).where(usage_records.c.user_id == "usr_a")).first()
            is None
        )
        assert c.execute(select(events).where(events.c.user_id == "usr_a")).first() is None
        payloads = c.execute(select(events.c.payload)).scalars().all()
        assert all("usr_a" not in json.dumps(p) for p in payloads)
        u = c.execute(select(users).where(users.c.id == "usr_a")).mappings().one()
        assert u["email"] is None and u["email_sha256"] is None and u["disabled"]
        assert u["forgotten_at"] is not None and u["display_name"] != "alice"
        k = c.execute(select(gateway_keys).where(gateway_keys.c.id == "key_a")).mappings().one()
        assert k["revoked_at"] is not None and k["user_id"] is None
        (bound,) = c.execute(select(ingest_tokens.c.user_id).where(ingest_tokens.c.id == itok.id))
        assert bound.user_id is None  # the token no longer leads to the user
        revoked = c.execute(select(events).where(events.c.type == "gateway.key_revoked")).all()
        assert len(revoked) == 1
    # the user's export now holds nothing linking usage to them
    doc = api.get("/analytics/user/usr_a/export").json()
    assert doc["usage_records"] == [] and doc["events"] == [] and doc["user"]["email"] is None
    assert get(api, "/analytics/cost", group_by="user", user="usr_a")["data"] == []
    assert api.post("/analytics/user/usr_nobody/forget").json()["detail"]["error"] == "unknown_user"
    assert api.post("/analytics/user/DROP%20TABLE/forget").json()["detail"]["error"] == (
        "invalid_user"
    )


def test_report_cost(engine: Engine, cli: type[Cli]) -> None:
    _three_keys(engine)
    out = cli.ok("report", "cost", "--from", WIN["from"], "--to", WIN["to"], "--group-by",
                 "team").stdout  # fmt: skip
    assert "eng (team_e)" in out and "3.000000" in out and "TOTAL" in out and "(none)" in out
    out = cli.ok("report", "cost", "--from", WIN["from"], "--to", WIN["to"], "--group-by",
                 "user", "--json").stdout  # fmt: skip
    body = json.loads(out, parse_float=Decimal)
    assert body["data"][0]["user_id"] == "usr_c"
    bad = cli.run("report", "cost", "--group-by", "email")
    assert bad.exit_code != 0 and "group_by" in bad.stderr


def _today_three_feeds(engine: Engine) -> str:
    """Today's calls seen by the gateway, a plugin and the provider (a sync earlier today)."""
    from metis.db.tables import provider_credentials, sync_windows
    from metis.timeutil import day_start, utcnow
    from tests.analytics import seed
    from tests.analytics.seed import rec

    _three_keys(engine)
    now = utcnow()
    t0 = day_start(now.date())
    with engine.begin() as c:
        c.execute(insert(provider_credentials).values(
            id="cred_p", workspace_id="ws_1", provider="openai", purpose_inference=False,
            purpose_usage_admin=True, mode="admin", created_at=t0))  # fmt: skip
        c.execute(insert(sync_windows).values(
            credential_id="cred_p", window_start=t0, window_end=t0 + timedelta(days=1),
            completed_at=now, records=1))  # fmt: skip
        at = max(t0, now - timedelta(minutes=1))
        seed.write(c, [
            rec(at=at, cost=1_135_800_000, key_id="key_a", user_id="usr_a", team_id="team_e",
                correlation_id="chatcmpl-t1"),
            rec(at=at, cost=1_135_800_000, source="hermes_plugin", status=None,
                correlation_id="chatcmpl-t1"),
            rec(at=t0, cost=1_135_800_000, source="provider_api_key", status=None,
                latency_ms=None),
        ])  # fmt: skip
    return now.date().isoformat()


def test_grouped_export_honours_the_view(engine: Engine, api: httpx.Client, cli: type[Cli]) -> None:
    """Issue 18 #1: ``/export/usage?from=<today>&group_by=day&format=jsonl&view=reconciled``
    summed every feed (twice the spend); it now gives ``/analytics/cost``'s figure."""
    today = _today_three_feeds(engine)
    for view in ("reconciled", "raw"):
        cost = api.get("/analytics/cost", params={"from": today, "view": view}).json(
            parse_float=Decimal
        )
        params = {"from": today, "group_by": "day", "format": "jsonl", "view": view}
        r = api.get("/export/usage", params=params)
        (row,) = [json.loads(x, parse_float=Decimal) for x in r.text.splitlines()]
        assert row["day"] == today and row["cost_usd"] == cost["total"]["cost_usd"], view
        assert r.headers["x-metis-window-start"] == cost["window"]["start"]
        out = cli.ok("export", "usage", "--from", today, "--group-by", "day", "--format",
                     "jsonl", "--view", view).stdout  # fmt: skip
        (row,) = [json.loads(x, parse_float=Decimal) for x in out.splitlines()]
        assert row["cost_usd"] == cost["total"]["cost_usd"]
        rows = api.get("/export/usage", params={"from": today, "format": "csv", "view": view})
        counted = [r for r in csv.DictReader(io.StringIO(rows.text)) if r["counted"] == "true"]
        assert sum(Decimal(r["cost_usd"]) for r in counted) == cost["total"]["cost_usd"]
        if view == "reconciled":
            reconciled = cost["total"]["cost_usd"]
            assert {r["class"] for r in csv.DictReader(io.StringIO(rows.text))} >= {
                "gateway",
                "plugin_duplicate",
                "provider",
            }
    assert reconciled == Decimal("1.1358")  # one call, counted once
    raw = api.get("/analytics/cost", params={"from": today, "view": "raw"}).json()
    assert Decimal(str(raw["total"]["cost_usd"])) == 3 * reconciled  # each feed's copy


def test_money_leaves_in_plain_notation(engine: Engine, api: httpx.Client, cli: type[Cli]) -> None:
    """Issue 18 #9: exports printed ``8.0E-8`` and ``0E-9``."""
    from tests.analytics import seed
    from tests.analytics.seed import rec

    _three_keys(engine)
    with engine.begin() as c:
        seed.write(c, [rec(at=T0, cost=80, key_id="key_u"), rec(at=T0, cost=0, key_id="key_u")])
        c.execute(insert(events), [
            event_row(GatewayQuotaExceeded(gateway_key_id="key_a", user_id="usr_a",
                                           team_id="team_e", scope="team_daily",
                                           limit_usd=Decimal("8.0E-8"), current_usd=Decimal("0E-9"),
                                           inbound_shape="openai"),
                      ts=T0, workspace_id="ws_1"),
        ])  # fmt: skip
    bodies = [
        api.get("/export/usage", params={**WIN, "format": f, "view": v}).text
        for f in ("csv", "jsonl")
        for v in ("raw", "reconciled")
    ]
    bodies += [
        api.get("/export/usage", params={**WIN, "format": f, "group_by": "user"}).text
        for f in ("csv", "jsonl")
    ]
    bodies += [api.get("/export/audit", params={**WIN, "format": f}).text for f in ("csv", "jsonl")]
    bodies += [api.get("/analytics/cost", params={**WIN, "group_by": "gateway_key"}).text]
    bodies += [api.get("/analytics/user/usr_a/export").text]
    bodies += [cli.ok("export", "usage", "--from", WIN["from"], "--to", WIN["to"]).stdout]
    # a number in exponent notation: bare (JSON number, CSV cell) or as a whole JSON string
    exponent = re.compile(r'(?:^|[,:\[])"?-?[0-9]+(?:\.[0-9]+)?[eE][-+]?[0-9]+"?(?:[,}\]]|$)', re.M)
    for body in bodies:
        assert not exponent.search(body), exponent.search(body)
    rows = list(csv.DictReader(io.StringIO(bodies[0])))
    assert {"0.000000080", "0.000000000"} <= {r["cost_usd"] for r in rows}
    audit = [json.loads(x) for x in bodies[7].splitlines()]
    quota = next(r for r in audit if r["kind"] == "quota_exceeded")
    assert (quota["limit_usd"], quota["current_usd"]) == ("0.000000080", "0.000000000")
    assert exponent.search('{"a":8.0E-8}') and exponent.search("x,0E-9\n")  # the check works


def test_report_counts_billed_calls_and_errors_apart(
    simulator: Any,
    gateway_factory: Any,
    cli: type[Cli],
    fast_ingest: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18 #9: ``metis report cost`` counted upstream-error rows as calls (82 vs 76
    billed). Calls the upstream refused are errors, not billed calls, and the provider's
    own request count then reconciles with the gateway's."""
    import openai

    monkeypatch.setenv("COLUMNS", "200")
    gw = gateway_factory(simulator.url)
    _, secret = gw.issue_key("k", user="ada")
    client = gw.openai(secret)
    for _ in range(4):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    simulator.set_fault("/v1/chat/completions", "503", count=2)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "q"}]
            )
    gw.flush()
    body = json.loads(cli.ok("report", "cost", "--group-by", "model", "--json").stdout)
    assert (body["total"]["call_count"], body["total"]["error_count"]) == (4, 2)
    assert body["total"]["record_count"] == 6
    table = cli.ok("report", "cost", "--group-by", "model").stdout
    header = next(line for line in table.splitlines() if "calls" in line)
    assert "errors" in header
    total = next(line for line in table.splitlines() if "TOTAL" in line)
    cells = total.split()  # TOTAL, cost, calls, errors, ...: no cell holds a space
    assert cells[2:4] == ["4", "2"]
    cli.ok("provider-key", "add", "-w", "w", "--provider", "openai", "--purpose", "usage_admin",
           "--base-url", simulator.url, input=simulator.openai_admin_key)  # fmt: skip
    cli.ok("ingest", "sync", "--workspace", "w", "--days", "1")
    recon = json.loads(cli.ok("report", "cost", "--group-by", "model", "--json").stdout)
    assert recon["total"]["call_count"] == 4  # the provider billed 4 requests, as the gateway
    from metis.timeutil import utcnow

    today = utcnow().date()
    with gw.engine.connect() as c:
        cells = reconciled_cells(c, today, today + timedelta(days=1))
    assert cells and all(x.covered for x in cells)
    assert not any(x.drift.request_count or x.unattributed.request_count for x in cells)


def test_export_format_follows_the_output_file_name(
    engine: Engine, cli: type[Cli], tmp_path: Path
) -> None:
    """The README's `metis export audit ... -o audit.jsonl` writes JSON Lines, not CSV."""
    _three_keys(engine)
    _audit_events(engine)
    win = ["--from", WIN["from"], "--to", WIN["to"]]
    jl = tmp_path / "audit.jsonl"
    cli.ok("export", "audit", *win, "--with-names", "-o", str(jl))
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert lines and all(isinstance(x, dict) for x in lines)
    nd = tmp_path / "usage.NDJSON"
    cli.ok("export", "usage", *win, "-o", str(nd))
    assert json.loads(nd.read_text().splitlines()[0])["cost_usd"] is not None
    plain = tmp_path / "usage.txt"  # no telling extension: CSV, as before
    cli.ok("export", "usage", *win, "-o", str(plain))
    header = next(csv.reader(io.StringIO(plain.read_text())))
    assert "cost_usd" in header and not plain.read_text().startswith("{")
    # an explicit --format that contradicts the name is refused, nothing written
    bad = tmp_path / "x.jsonl"
    r = cli.run("export", "audit", *win, "--format", "csv", "-o", str(bad))
    assert r.exit_code == 1 and not bad.exists()
    assert "--format csv but" in r.stderr and "named like a jsonl file" in r.stderr
    cli.ok("export", "audit", *win, "--format", "jsonl", "-o", str(bad))  # agreeing is fine


# -- the ungrouped usage export: same bytes as a per-cell encoding, streamed -------------------

_GW_URL = "http://gw.test:8080"
_MODELS = ["gpt-4o", "模型-é ünïcode", "=cmd|' /C calc'!A0", "-5", "+SUM(A1)", "@SUM(A1)",
           "tab\tmodel", 'line\nbreak, "quoted"', "\rcr", "-x", "a,b"]  # fmt: skip


def _overlapping_ledger(engine: Engine) -> None:
    """Gateway, plugin (duplicate, via gateway, direct) and provider rows over three days.

    Day T0 of ws_1/openai is covered by a provider sync: gpt-4o's provider figure is above
    what was attributed (an ``unattributed`` row), ``-5``'s below it (a negative
    ``drift_adjustment`` row). Text cells hold unicode, CSV metacharacters and formula
    starts; ids, status, latency and pricing version are null on some rows; times carry
    microseconds on some rows and none on others.
    """
    import random

    from tests.analytics import seed
    from tests.analytics.seed import rec

    _identity(engine)
    rnd = random.Random(23)
    recs = []
    for i in range(40):
        at = T0 + timedelta(hours=i * 1.7, microseconds=(i * 37_001) % 1_000_000 if i % 3 else 0)
        model = _MODELS[i % len(_MODELS)]
        cost = rnd.choice([0, 1, 80, 333_333_333, 5_000_000_007, 123_456_789_012_345])
        keyed = i % 4 != 3
        recs.append(rec(at=at, cost=cost, model=model, key_id="key_a" if keyed else None,
                        user_id="usr_a" if keyed else None, team_id="team_e" if keyed else None,
                        correlation_id=f"chatcmpl-{i}", pricing_version="v1" if i % 2 else None,
                        status=None if i % 5 == 0 else "ok",
                        latency_ms=None if i % 5 == 0 else 100 + i))  # fmt: skip
        if i % 2 == 0:  # the same call seen by a plugin: a duplicate
            recs.append(rec(at=at, cost=cost, model=model, source="hermes_plugin",
                            status=None, correlation_id=f"chatcmpl-{i}"))  # fmt: skip
    for i in range(12):
        at = T0 + timedelta(hours=i * 5, minutes=7)
        via = i % 2 == 0  # sent through the gateway's URL, or straight to the provider
        recs.append(rec(at=at, cost=rnd.randrange(10**10), model=_MODELS[i % len(_MODELS)],
                        source="hermes_plugin", status=None, latency_ms=None,
                        base_url=_GW_URL + "/v1" if via else "https://api.openai.com/v1",
                        correlation_id=None if i % 3 == 0 else f"resp-{i}"))  # fmt: skip
    recs += [
        rec(at=T0, cost=50 * 10**12, source="provider_api_key", status=None, latency_ms=None,
            input_tokens=10**6, output_tokens=10**5),
        rec(at=T0, cost=1, model="-5", source="provider_api_key", status=None, latency_ms=None,
            input_tokens=1, output_tokens=1),
    ]  # fmt: skip
    with engine.begin() as c:
        c.execute(insert(provider_credentials).values(
            id="cred_p", workspace_id="ws_1", provider="openai", purpose_inference=False,
            purpose_usage_admin=True, mode="admin", created_at=T0))  # fmt: skip
        c.execute(insert(sync_windows).values(
            credential_id="cred_p", window_start=T0, window_end=T0 + timedelta(days=1),
            completed_at=T0 + timedelta(days=1, hours=2), records=1))  # fmt: skip
        seed.write(c, recs)


def _old_cell(v: Any) -> Any:
    """How the export rendered one value before it encoded rows in batches (the format)."""
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(v, date):
        return v.isoformat()
    return v


def _per_cell_export(engine: Engine, view: str, fmt: str, window: Window) -> bytes:
    """The ungrouped usage export computed independently: one select of the stored rows,
    classified in Python, then the reconciled cells' residue rows, encoded cell by cell."""
    from metis.analytics.exports import USAGE_COLUMNS, csv_safe
    from metis.ledger import reconcile

    urls = set(reconcile.gateway_url_variants(reconcile.gateway_urls_from_env()))
    ur = usage_records.c
    with engine.connect() as c:
        gateway_ids = {(w, cid) for w, cid in c.execute(
            select(ur.workspace_id, ur.correlation_id).where(ur.source == "gateway"))}  # fmt: skip
        stored = c.execute(
            select(usage_records)
            .where(ur.window_start >= window.start, ur.window_start < window.end)
            .order_by(ur.window_start, ur.id)
        ).mappings().all()  # fmt: skip
        cells = reconcile.reconciled_cells(c, window.start.date(), window.end.date(), None)
    rows: list[dict[str, Any]] = []
    for r in stored:
        if r["source"] == "provider_api_key":
            klass = "provider"
        elif r["source"] == "gateway":
            klass = "gateway"
        elif r["base_url"] in urls:
            klass = "plugin_via_gateway"
        elif r["correlation_id"] is not None and (r["workspace_id"], r["correlation_id"]) in (
            gateway_ids
        ):
            klass = "plugin_duplicate"
        else:
            klass = "plugin"
        counted = view == "raw" or klass in ("gateway", "plugin")
        rows.append({**{n: r[n] for n in USAGE_COLUMNS}, "class": klass, "counted": counted})
    if view == "reconciled":
        for cell in cells:
            for kind, t, sign in (("unattributed", cell.unattributed, 1),
                                  ("drift_adjustment", cell.drift, -1)):  # fmt: skip
                if t.is_zero():
                    continue
                start = datetime.combine(cell.day, datetime.min.time(), UTC)
                row: dict[str, Any] = dict.fromkeys(USAGE_COLUMNS)
                row.update(
                    usage_date=cell.day,
                    window_start=start,
                    window_end=start + timedelta(days=1),
                    workspace_id=cell.workspace_id,
                    source=kind,
                    granularity="1d",
                    provider=cell.provider,
                    model=cell.model,
                    model_raw=cell.model,
                    cost_source="reconciled",
                )
                for m, v in t.measures().items():
                    row[m] = sign * v
                rows.append({**row, "class": kind, "counted": True})
    out = io.StringIO()
    if fmt == "jsonl":
        lines = []
        for r in rows:
            d = {n: _old_cell(r[n]) for n in USAGE_COLUMNS if n != "cost_nanousd"}
            d["cost_usd"] = usd_json(r["cost_nanousd"])
            d["class"], d["counted"] = r["class"], r["counted"]
            lines.append(jsonutil.dumps(d) + b"\n")
        return b"".join(lines)
    names = ["cost_usd" if n == "cost_nanousd" else n for n in USAGE_COLUMNS]
    w = csv.writer(out, lineterminator="\n")
    w.writerow([*names, "class", "counted"])
    for r in rows:
        r["cost_usd"] = usd_json(r.pop("cost_nanousd"))
        cells_out = []
        for n in [*names, "class", "counted"]:
            v = r[n]
            if v is None:
                cells_out.append("")
            elif isinstance(v, bool):
                cells_out.append("true" if v else "false")
            else:
                cells_out.append(csv_safe(_old_cell(v)))
        w.writerow(cells_out)
    return out.getvalue().encode()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("view", ["reconciled", "raw"])
def test_usage_export_bytes_equal_a_per_cell_encoding(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, view: str, fmt: str
) -> None:
    """Issue 23: the export (lines built by the database, odd rows by the batch encoder)
    writes what encoding each cell on its own wrote."""
    from metis.analytics import exports
    from metis.analytics.params import Filters
    from metis.analytics.views import query_window

    monkeypatch.setenv("METIS_GATEWAY_URLS", _GW_URL)
    monkeypatch.setattr(exports, "BATCH", 7)  # several batches, some with formula cells
    _overlapping_ledger(engine)
    window = query_window(WIN["from"], WIN["to"], view)  # type: ignore[arg-type]
    got = b"".join(exports.usage_export(engine, window, Filters(), fmt, (), view))  # type: ignore[arg-type]
    want = _per_cell_export(engine, view, fmt, window)
    assert got.decode() == want.decode()
    text = got.decode()
    classes = {"gateway", "plugin", "plugin_duplicate", "plugin_via_gateway", "provider"}
    if view == "reconciled":
        classes |= {"unattributed", "drift_adjustment"}
    for k in classes:  # the ledger exercises every class the view shows
        assert f"{k}" in text, k
    if fmt == "csv":
        # csv.writer leaves a lone CR unquoted (lineterminator is "\n"), as it always did
        # here: a reader splits that row, so read the others.
        parsed = list(csv.DictReader(io.StringIO(text.replace("\rcr", "cr"), newline="")))
        assert {r["model"] for r in parsed} >= {"'=cmd|' /C calc'!A0", "-5", "'+SUM(A1)",
                                                "'@SUM(A1)", "'-x", "模型-é ünïcode"}  # fmt: skip
        assert any(r["cost_usd"].startswith("-") for r in parsed) == (view == "reconciled")


def test_usage_export_streams_one_batch_at_a_time(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export reads a batch, sends it, then reads the next (a server-side cursor on
    PostgreSQL): memory holds one batch whatever the row count."""
    from metis.analytics import exports
    from tests.analytics import seed
    from tests.analytics.seed import rec

    monkeypatch.setattr(exports, "BATCH", 5)
    _identity(engine)
    with engine.begin() as c:  # plain rows: each batch is its SQL lines, nothing read again
        seed.write(c, [rec(at=T0 + timedelta(minutes=i), cost=i, correlation_id=f"r-{i}")
                       for i in range(53)])  # fmt: skip
    pulled: list[int] = []
    real = exports._plain_batch

    def counting(lines: Any, part: Any, check: Any) -> Any:
        pulled.append(len(part))
        return real(lines, part, check)

    monkeypatch.setattr(exports, "_plain_batch", counting)
    window = query_window(WIN["from"], WIN["to"], "raw")
    chunks = exports.usage_export(engine, window, Filters(), "csv", (), "raw")
    try:
        first = next(chunks)
        assert pulled == [5] and first.count(b"\n") == 1 + 5  # the header and one batch
        if engine.dialect.name == "postgresql":  # the rows wait in a server-side cursor
            with engine.connect() as other:
                q = "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
                queries = [s for (s,) in other.exec_driver_sql(q)]
            assert any(s.startswith("FETCH") for s in queries), queries
        rest = list(chunks)
    finally:
        chunks.close()
    assert len(pulled) == len(rest) + 1  # a chunk per batch read
    assert sum(pulled) == 53 and max(pulled) == 5


def test_export_http_response_is_chunked(
    engine: Engine, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /export/usage streams: a chunked body with no length known up front."""
    from metis.analytics import exports

    monkeypatch.setattr(exports, "BATCH", 5)  # the server runs in this process
    _overlapping_ledger(engine)
    for fmt in ("csv", "jsonl"):
        with api.stream("GET", "/export/usage", params={**WIN, "format": fmt}) as r:
            assert r.status_code == 200
            assert r.headers.get("transfer-encoding") == "chunked"
            assert "content-length" not in r.headers
            body = b"".join(r.iter_bytes())
        want = _per_cell_export(engine, "reconciled", fmt, query_window(WIN["from"], WIN["to"],
                                                                       "reconciled"))  # fmt: skip
        assert body == want


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_nano_usd_text_is_plain_usd_of_the_decimal(nanos: int) -> None:
    from metis.analytics.exports import nano_usd_text
    from metis.money import plain_usd

    assert nano_usd_text(nanos) == plain_usd(usd_json(nanos))  # type: ignore[arg-type]


def test_nano_usd_text_edges() -> None:
    from metis.analytics.exports import nano_usd_text

    assert [nano_usd_text(n) for n in (0, 80, -80, 10**9, -(10**9) - 1, 12_500_000_000)] == [
        "0.000000000", "0.000000080", "-0.000000080", "1.000000000", "-1.000000001",
        "12.500000000",
    ]  # fmt: skip
