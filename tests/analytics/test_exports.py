"""Exports (usage, audit), the per-user export/forget, and `metis report cost`."""

import csv
import io
import json
import stat
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import Engine, insert, select

from metis.db.tables import events, gateway_keys, usage_records, users
from metis.events import GatewayKeyIssued, GatewayQuotaExceeded, event_row
from tests.analytics.seed import T0
from tests.analytics.test_api import WIN, _three_keys, get
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
