"""The FOCUS export (issue 24): validated by the FinOps Foundation's validator, totals equal
``/analytics/cost`` to the nano-dollar, the same bytes on every run.

The ledger is generated (seeded, so a failure reproduces) over four closed UTC days of
workspace ``w`` with every source:

- day 0: gateway and plugin traffic; the OpenAI report (a covering sync) holds more than
  was attributed (``unattributed`` rows) and the plugin re-sends some gateway calls
  (duplicates, not counted twice);
- day 1: the unattributed day: OpenAI's report has only an organisation-level cost with
  no model and no user (model ``unallocated``), nothing attributed;
- day 2: the report is below what the gateway attributed (``drift_adjustment`` rows);
- day 3: no report (gateway and plugin figures stand, computed cost).

Anthropic calls are never covered by a report.
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, insert

from metis.analytics import focus
from metis.db.tables import provider_credentials, sync_windows
from metis.ledger.record import UsageRecord
from tests.analytics import seed
from tests.analytics.seed import T0, rec
from tests.conftest import Cli

FIXTURES = Path(__file__).parent.parent / "fixtures" / "focus"
DAYS = 4
FROM, TO = T0.date().isoformat(), (T0 + timedelta(days=DAYS)).date().isoformat()
WINDOW = {"from": FROM, "to": TO}
PROVIDER: dict[str, Any] = {"source": "provider_api_key", "status": None, "latency_ms": None}
# focus-validator 1.0.0's FOCUS 1.0 rule set still names four columns as in the 1.0
# preview, and its SkuPriceId rule reads ``ChargeType`` (ChargeCategory's pre-1.0 name);
# FOCUS 1.0 (tests/fixtures/focus/columns-1.0.tsv) renamed them. The validator is given a
# copy with its names (and ChargeType = ChargeCategory), so every one of its rules checks
# our values.
VALIDATOR_NAMES = {
    "ProviderName": "Provider",
    "PublisherName": "Publisher",
    "InvoiceIssuerName": "InvoiceIssuer",
    "ResourceId": "ResourceID",
}


def spec_columns(version: str) -> list[tuple[str, ...]]:
    """The cited column table of FOCUS ``version`` (id, level, nullable, type, introduced)."""
    lines = (FIXTURES / f"columns-{version}.tsv").read_text().splitlines()
    return [tuple(x.split("\t")) for x in lines if x and not x.startswith("#")]


def _reported(**kw: Any) -> UsageRecord:
    """A provider report's daily bucket, its cost the provider's own."""
    return msgspec.structs.replace(rec(**kw), cost_source="provider_reported")


def _ledger(engine: Engine) -> None:
    rnd = random.Random(24)
    with engine.begin() as c:
        seed.ws(c)
        seed.user(c, "usr_a", "Ada")
        seed.user(c, "usr_b", "Bob")
        seed.team(c, "team_e", "eng")
        seed.key(c, "key_a", "ada-laptop", "usr_a", "team_e")
        seed.key(c, "key_b", "bob-ci", "usr_b", None)
        seed.key(c, "key_n", "shared", None, None)
        c.execute(insert(provider_credentials).values(
            id="cred_oai", workspace_id="ws_1", provider="openai", purpose_inference=False,
            purpose_usage_admin=True, mode="admin", created_at=T0))  # fmt: skip
        rows: list[UsageRecord] = []
        owners = {"key_a": ("usr_a", "team_e"), "key_b": ("usr_b", None), "key_n": (None, None)}
        openai_attributed = [0] * DAYS
        for day in range(DAYS):
            t0 = T0 + timedelta(days=day)
            if day < 3:  # a sync covered the whole day, after it ended
                c.execute(insert(sync_windows).values(
                    credential_id="cred_oai", window_start=t0, window_end=t0 + timedelta(days=1),
                    completed_at=t0 + timedelta(days=1, hours=3), records=1))  # fmt: skip
            if day == 1:
                continue  # the unattributed day: only the provider saw spend
            for i in range(rnd.randint(6, 12)):
                key = rnd.choice(list(owners))
                uid, tid = owners[key]
                model, prov = rnd.choice([("gpt-4o", "openai"), ("gpt-4o-mini", "openai"),
                                          ("claude-sonnet-4-5", "anthropic")])  # fmt: skip
                at = t0 + timedelta(minutes=37 * i + rnd.randint(0, 30))
                cost = rnd.randint(1, 5_000_000_000)
                tok = {"input_tokens": rnd.randint(10, 9000), "output_tokens": rnd.randint(1, 900)}
                corr = f"resp-{day}-{i}"
                same = {"model": model, "provider": prov, "correlation_id": corr, **tok}
                rows.append(rec(at=at, cost=cost, key_id=key, user_id=uid, team_id=tid, **same))
                if prov == "openai":
                    openai_attributed[day] += cost
                if rnd.random() < 0.4:  # the plugin saw the same call: a duplicate
                    rows.append(rec(at=at, cost=cost, source="hermes_plugin", status=None, **same))
            for j in range(2):  # plugin calls that bypassed the gateway
                cost = rnd.randint(1, 900_000_000)
                rows.append(rec(at=t0 + timedelta(hours=20, minutes=j), cost=cost,
                                source="hermes_plugin", status=None, model="gpt-4o",
                                correlation_id=f"direct-{day}-{j}"))  # fmt: skip
                openai_attributed[day] += cost
        # The provider's reports (one daily bucket per model, as a sync stores them).
        rows.append(_reported(at=T0, model="gpt-4o", cost=openai_attributed[0] + 7_123_456_789,
                        input_tokens=99_000, output_tokens=9_000, **PROVIDER))  # fmt: skip
        rows.append(_reported(at=T0 + timedelta(days=1), model="unallocated", cost=3_141_592_653,
                        input_tokens=0, output_tokens=0, **PROVIDER))  # fmt: skip
        rows.append(_reported(at=T0 + timedelta(days=2), model="gpt-4o", cost=1_000_000,
                        input_tokens=10, output_tokens=1, **PROVIDER))  # fmt: skip
        seed.write(c, rows)


@pytest.fixture
def ledger(engine: Engine) -> Engine:
    _ledger(engine)
    return engine


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _cost_total(api: httpx.Client) -> Decimal:
    body = api.get("/analytics/cost", params=WINDOW).json(parse_float=Decimal)
    assert body["view"] == "reconciled"
    return Decimal(str(body["total"]["cost_usd"]))


def _validator_failures(report: str) -> list[str]:
    """The ``… failed:`` blocks of focus-validator's console report (it exits 0 anyway)."""
    return re.findall(r"^(\S.*) failed:$", report, flags=re.MULTILINE)


@pytest.fixture(scope="session")
def validator() -> str:
    """focus-validator's executable: ``METIS_FOCUS_VALIDATOR`` (scripts/test.sh sets it), else
    the one scripts/focus-venv.sh makes (a venv of its own: it pins numpy<2)."""
    exe = os.environ.get("METIS_FOCUS_VALIDATOR")
    if not exe:
        script = Path(__file__).parents[2] / "scripts" / "focus-venv.sh"
        r = subprocess.run([str(script)], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            pytest.fail(f"focus-validator unavailable: {r.stderr[-2000:]}")
        exe = r.stdout.strip()
    return exe


def _validate(exe: str, tmp_path: Path, export: str) -> str:
    rows = list(csv.reader(io.StringIO(export)))
    category = rows[0].index("ChargeCategory")
    rows = [[*r, r[category]] for r in rows]
    rows[0] = [VALIDATOR_NAMES.get(c, c) for c in rows[0][:-1]] + ["ChargeType"]
    copy = tmp_path / "for-validator.csv"
    with copy.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    # It opens its ISO 4217 list by a path relative to the working directory
    # ("focus_validator/utils/currency_codes.csv"): run it from its site-packages.
    py = str(Path(exe).parent / "python")
    where = subprocess.run(
        [py, "-c", "import focus_validator, pathlib; print(pathlib.Path("
         "focus_validator.__file__).parent.parent)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    r = subprocess.run(
        [exe, "--data-file", str(copy), "--validate-version", "1.0"],
        capture_output=True, text=True, timeout=300, check=False, cwd=where,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_focus_1_0_passes_the_finops_validator(
    ledger: Engine, api: httpx.Client, tmp_path: Path, validator: str
) -> None:
    r = api.get("/export/focus", params={**WINDOW, "version": "1.0"})
    assert r.status_code == 200, r.text[:500]
    report = _validate(validator, tmp_path, r.text)
    assert _validator_failures(report) == [], report
    assert "Errors encountered" not in report and "Validation succeeded." in report, report
    rows = _csv(r.text)
    kinds = {x["x_ChargeKind"] for x in rows}
    assert kinds == {"gateway", "hermes_plugin", "unattributed", "drift_adjustment"}
    unallocated = [x for x in rows if x["ResourceId"] == "unallocated"]
    tags = '{"metis.workspace":"w","metis.workspace_id":"ws_1"}'
    assert [
        (x["x_ChargeKind"], x["BilledCost"], x["Tags"], x["ChargePeriodStart"]) for x in unallocated
    ] == [("unattributed", "3.141592653", tags, "2026-11-03T00:00:00Z")]


def test_the_validator_report_is_read(tmp_path: Path, validator: str) -> None:
    """The validator exits 0 with failing rules: a broken file must show failures here."""
    cols = list(focus.columns("1.0"))
    bad = dict.fromkeys(cols, "")
    bad.update(BilledCost="not-a-number", ChargeCategory="Usage", ServiceCategory="Snacks")
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, lineterminator="\n")
    w.writeheader()
    w.writerow(bad)
    report = _validate(validator, tmp_path, buf.getvalue())
    failed = _validator_failures(report)
    assert "Errors encountered" in report and "Validation failed!" in report
    assert any("BilledCost" in f for f in failed) and any("ServiceCategory" in f for f in failed)


def _parquet_rows(data: bytes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(data)).to_pylist()
    return rows


def test_totals_equal_analytics_and_bytes_repeat(
    ledger: Engine, api: httpx.Client, cli: type[Cli], tmp_path: Path
) -> None:
    """BilledCost sums to /analytics/cost's reconciled total to the nano-dollar, in every
    version and format, over HTTP and the CLI; a re-run gives identical bytes."""
    total = _cost_total(api)
    assert total > 0
    for version in ("1.0", "1.2"):
        for fmt in ("csv", "parquet"):
            params = {**WINDOW, "version": version, "format": fmt}
            first, again = (
                api.get("/export/focus", params=params),
                api.get("/export/focus", params=params),
            )
            assert first.status_code == 200, first.text[:300]
            assert first.content == again.content, (version, fmt)
            assert first.headers["x-metis-window-start"] == f"{FROM}T00:00:00Z"
            assert first.headers["x-metis-focus-version"] == version
            if fmt == "csv":
                rows: list[dict[str, Any]] = _csv(first.text)
                got = sum((Decimal(r["BilledCost"]) for r in rows), Decimal(0))
            else:
                rows = _parquet_rows(first.content)
                got = sum((r["BilledCost"] for r in rows), Decimal(0))
            assert got == total, (version, fmt)
            assert list(rows[0]) == list(focus.columns(version))
            out = tmp_path / f"f{version}.{fmt}"
            cli.ok("export", "focus", "--from", FROM, "--to", TO, "--version", version,
                   "--output", str(out))  # fmt: skip
            assert out.read_bytes() == first.content, (version, fmt)
            assert out.stat().st_mode & 0o777 == 0o600
    # The per-row split: each charge kind's rows, each ledger day, in order.
    rows = _csv(api.get("/export/focus", params=WINDOW).text)
    days = [r["ChargePeriodStart"][:10] for r in rows]
    assert days == sorted(days) and len(set(days)) == DAYS
    attributed = [r for r in rows if r["x_ChargeKind"] in ("gateway", "hermes_plugin")]
    assert all(json_tags(r)["metis.key_id"] for r in attributed if r["x_ChargeKind"] == "gateway")
    ada = [r for r in attributed if json_tags(r).get("metis.user_id") == "usr_a"]
    assert ada and all(json_tags(r)["metis.user"] == "Ada" for r in ada)
    assert all(r["SubAccountId"] == "team_e" and r["SubAccountName"] == "eng" for r in ada)
    covered = {r["x_CostSource"] for r in rows if r["ProviderName"] == "OpenAI"
               and r["ChargePeriodStart"] < f"{(T0 + timedelta(days=3)).date()}"}  # fmt: skip
    assert covered == {"provider_reported"}
    assert {r["x_CostSource"] for r in rows if r["ProviderName"] == "Anthropic"} == {"computed"}
    drift = [r for r in rows if r["x_ChargeKind"] == "drift_adjustment"]
    # Drift takes back what was attributed above the provider's figure: cost, or only tokens.
    assert all(r["ChargeCategory"] == "Adjustment" and Decimal(r["BilledCost"]) <= 0
               and r["ConsumedQuantity"] == "" for r in drift)  # fmt: skip
    assert any(Decimal(r["BilledCost"]) < 0 for r in drift)


def json_tags(row: dict[str, str]) -> dict[str, str]:
    import json

    tags: dict[str, str] = json.loads(row["Tags"])
    return tags


@pytest.mark.parametrize("version", ["1.0", "1.2"])
def test_columns_match_the_focus_spec(ledger: Engine, api: httpx.Client, version: str) -> None:
    """Every FOCUS column of ``version`` (the cited list), nothing else but ``x_`` columns;
    non-nullable columns filled, values of the spec's types."""
    spec = spec_columns(version)
    rows = _csv(api.get("/export/focus", params={**WINDOW, "version": version}).text)
    header = list(rows[0])
    assert [c for c in header if not c.startswith("x_")] == sorted(c[0] for c in spec)
    iso_z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
    for col, level, nullable, dtype, _ in spec:
        values = [r[col] for r in rows]
        if nullable == "False" and (level == "Mandatory" or any(values)):
            assert all(values), (version, col)
        present = [v for v in values if v]
        if dtype == "Decimal":
            assert all(Decimal(v).is_finite() for v in present), col
        elif dtype == "Date/Time":
            assert all(iso_z.match(v) for v in present), col
        elif dtype == "JSON":
            assert all(isinstance(__import__("json").loads(v), dict) for v in present), col
    if version == "1.2":
        assert {r["ServiceSubcategory"] for r in rows} == {"Generative AI"}
        assert {r["BillingAccountType"] for r in rows} == {"Workspace"}
        assert all(r["PricingCurrencyEffectiveCost"] == r["BilledCost"] for r in rows)


def test_bad_input_is_a_clear_400(engine: Engine, api: httpx.Client, cli: type[Cli],
                                  tmp_path: Path) -> None:  # fmt: skip
    for params, code in (
        ({"version": "1.1"}, "invalid_version"),
        ({"format": "xlsx"}, "invalid_format"),
        ({"format": ""}, "invalid_format"),
        ({"version": ""}, "invalid_version"),
        ({"from": "yesterday"}, "invalid_window"),
        ({"from": "2026-11-05", "to": "2026-11-01"}, "invalid_window"),
    ):
        r = api.get("/export/focus", params=params)
        assert r.status_code == 400 and r.json()["detail"]["error"] == code, (params, r.text)
    for args, says in (
        (["--version", "2"], "version must be 1.0 or 1.2"),
        (["--format", "xlsx"], "format must be csv or parquet"),
        (["--from", "nope"], "from must be ISO 8601"),
        (["--format", "csv", "--output", str(tmp_path / "x.parquet")], "named like a parquet"),
    ):
        bad = cli.run("export", "focus", *args)
        assert bad.exit_code != 0 and says in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_rows_are_read_one_day_at_a_time(ledger: Engine) -> None:
    """Flat memory: the export holds one UTC day's rows at a time (one batch per day)."""
    from metis.analytics.params import Window
    from metis.timeutil import day_start

    window = Window(day_start(T0.date()), day_start(T0.date()) + timedelta(days=DAYS))
    batches: Iterator[list[dict[str, Any]]] = focus.focus_rows(ledger, window, "1.2")
    days = [{r["ChargePeriodStart"] for r in b} for b in batches]
    assert len(days) == DAYS and all(len(d) == 1 for d in days)


def test_an_empty_window_is_a_valid_empty_file(engine: Engine, api: httpx.Client) -> None:
    """No spend in the window: the CSV is its header line, the Parquet a file of 0 rows."""
    params = {"from": "2026-10-01", "to": "2026-10-03", "version": "1.0"}
    r = api.get("/export/focus", params=params)
    assert r.status_code == 200 and r.text == ",".join(focus.columns("1.0")) + "\n"
    r = api.get("/export/focus", params={**params, "format": "parquet"})
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(r.content))
    assert table.num_rows == 0 and table.column_names == list(focus.columns("1.0"))
