"""Money and token sums cannot overflow, on SQLite and PostgreSQL (issue 19 item 3).

The red-team input: ten pushed items of ``cost_usd: "1000000000"`` for one day
and model. On PostgreSQL the second batch got a 500 (``bigint out of range``)
and was lost whole; on SQLite the rollup silently became REAL (1e19),
partial-day raw queries answered ``503 database_unavailable`` and a grouped
export was cut off mid-stream. Now: items above the per-item bound are
rejected one by one; a rollup cell is filled up to its bound
(`metis.ledger.bounds.CELL_MAX`) and the items that would pass it are
rejected, the others stored; every total above 2^63 nano-USD is answered
exactly by the analytics API, the reconciliation API and the grouped export.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text, update

from metis import jsonutil
from metis.analytics.admin_tokens import create_token as create_admin_token
from metis.db.errors import classify
from metis.db.tables import usage_records, usage_rollups_daily, users
from metis.ingest import tokens
from metis.ledger.bounds import CELL_MAX, ITEM_MAX_COST_NANOUSD, ITEM_MAX_TOKENS
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage
from metis.server import create_app
from metis.timeutil import iso, utcnow
from metis.util.server_thread import ServerThread
from metis.workspaces import add_workspace
from tests.conftest import Cli

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini")
PER_CELL = CELL_MAX // ITEM_MAX_COST_NANOUSD  # 46 items of USD 100 million fit one cell


@dataclass
class Env:
    http: httpx.Client
    engine: Engine
    ingest: str
    admin: str
    day: datetime

    def push(self, items: list[dict[str, Any]]) -> httpx.Response:
        return self.http.post(
            "/v1/ingest/usage",
            content=jsonutil.dumps({"items": items}),
            headers={"Authorization": f"Bearer {self.ingest}"},
        )

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.http.get(path, params=params, headers={"Authorization": f"Bearer {self.admin}"})

    def stored(self) -> tuple[int, int]:
        with self.engine.connect() as c:
            n, cost = c.execute(
                select(func.count(), func.coalesce(func.sum(usage_records.c.request_count), 0))
            ).one()
        return int(n), int(cost)


@pytest.fixture
def env(metis_env: dict[str, str], engine: Engine) -> Iterator[Env]:
    with engine.begin() as c:
        add_workspace(c, "acme")
        for i in range(len(MODELS)):
            c.execute(
                users.insert().values(
                    id=f"usr_{i}", alias=f"dev{i}", display_name=f"Dev {i}",
                    created_at=utcnow(), disabled=False,
                )
            )  # fmt: skip
        _, ingest = tokens.create_token(c, "acme", "red-team")
        _, admin = create_admin_token(c, "red-team")
    day = (utcnow() - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    with ServerThread(create_app()) as srv, httpx.Client(base_url=srv.url, timeout=60) as http:
        yield Env(http, engine, ingest, admin, day)


def _item(key: str, at: datetime, model: str = MODELS[0], **kw: Any) -> dict[str, Any]:
    return {"idempotency_key": key, "time": iso(at), "provider": "openai", "model": model, **kw}


def test_ten_billion_dollar_pushes_are_rejected_item_by_item(env: Env) -> None:
    """The issue's exact input, in two batches: nothing 500s, each item says why."""
    noon = env.day + timedelta(hours=12)
    big = [_item(f"big-{i}", noon, cost_usd="1000000000") for i in range(10)]
    for batch in (big[:5], big[5:]):
        r = env.push(batch)
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["accepted"] == [] and len(body["rejected"]) == 5
        for rej in body["rejected"]:
            assert any("cost_usd" in x and "100000000" in x for x in rej["reasons"]), rej
    assert env.stored() == (0, 0)
    # One bad item never costs the good ones.
    r = env.push([_item("good", noon, cost_usd="1.5"), big[0]])
    assert r.status_code == 422
    assert r.json()["accepted"] == ["good"]
    assert env.stored() == (1, 1)


def test_cells_fill_to_their_bound_and_totals_past_2_63_stay_exact(env: Env) -> None:
    """Every rollup row is bounded: per model (all users) and per user (all models), so
    model i is used by user i here, and one day holds four full cells."""
    noon = env.day + timedelta(hours=12)
    max_cost = str(Decimal(ITEM_MAX_COST_NANOUSD) / 10**9)  # "100000000"
    batch = [
        _item(f"{m}-{i}", noon + timedelta(seconds=i), m, cost_usd=max_cost, user=f"dev{j}")
        for j, m in enumerate(MODELS)
        for i in range(PER_CELL + 3)
    ]
    r = env.push(batch)
    assert r.status_code == 422, r.text[:500]
    body = r.json()
    assert len(body["accepted"]) == PER_CELL * len(MODELS)
    assert len(body["rejected"]) == 3 * len(MODELS)
    for rej in body["rejected"]:
        assert any("per-cell limit" in x for x in rej["reasons"]), rej
        assert int(rej["idempotency_key"].rsplit("-", 1)[1]) >= PER_CELL
    # A replay of the accepted items changes nothing and hits no limit.
    accepted = [it for it in batch if it["idempotency_key"] in set(body["accepted"])]
    again = env.push(accepted)
    assert again.status_code == 200, again.text[:500]
    assert len(again.json()["unchanged"]) == len(accepted)

    per_model = PER_CELL * ITEM_MAX_COST_NANOUSD
    total = per_model * len(MODELS)
    assert total > 2**63  # past what one 64-bit SUM could hold
    usd = Decimal(total) / 10**9
    with env.engine.connect() as c:  # the rollups hold integers, never REAL
        kinds = c.execute(select(usage_rollups_daily.c.cost_nanousd)).scalars().all()
    assert kinds and all(type(v) is int and 0 < v <= CELL_MAX for v in kinds)

    d0, d1 = env.day.date().isoformat(), (env.day + timedelta(days=1)).date().isoformat()
    whole = env.get("/analytics/cost", group_by="model", **{"from": d0, "to": d1})
    assert whole.status_code == 200, whole.text
    assert Decimal(str(whole.json()["total"]["cost_usd"])) == usd
    assert {d["model"]: Decimal(str(d["cost_usd"])) for d in whole.json()["data"]} == {
        m: Decimal(per_model) / 10**9 for m in MODELS
    }
    # Partial days are summed from raw rows (the 503 of the issue).
    part = env.get(
        "/analytics/cost",
        group_by="day",
        **{"from": iso(env.day + timedelta(hours=6)), "to": iso(env.day + timedelta(hours=18))},
    )
    assert part.status_code == 200, part.text
    assert Decimal(str(part.json()["total"]["cost_usd"])) == usd
    recon = env.get("/analytics/reconciliation", **{"from": d0, "to": d1})
    assert recon.status_code == 200, recon.text
    assert recon.json()["totals"]["reconciled"]["cost_nanousd"] == total
    # The grouped export is whole (every group, exact), as is the raw one.
    with env.http.stream(
        "GET",
        "/export/usage",
        params={"from": d0, "to": d1, "group_by": "model", "format": "csv"},
        headers={"Authorization": f"Bearer {env.admin}"},
    ) as resp:
        assert resp.status_code == 200
        rows = list(csv.DictReader(io.StringIO(resp.read().decode())))
    assert sorted(r["model"] for r in rows) == sorted(MODELS)
    assert sum(Decimal(r["cost_usd"]) for r in rows) == usd
    raw = env.get("/export/usage", format="jsonl", **{"from": d0, "to": d1})
    assert raw.status_code == 200
    assert len(raw.text.splitlines()) == PER_CELL * len(MODELS)


def test_token_cells_fill_to_their_bound(env: Env) -> None:
    """Tokens have the same per-cell bound: 10^15 per item, 4611 items per cell."""
    noon = env.day + timedelta(hours=12)
    per_cell = CELL_MAX // ITEM_MAX_TOKENS
    items = [
        _item(f"t-{i}", noon, input_tokens=ITEM_MAX_TOKENS, cost_usd="0")
        for i in range(per_cell + 2)
    ]
    accepted: list[str] = []
    rejected: list[str] = []
    for start in range(0, len(items), 1000):
        r = env.push(items[start : start + 1000])
        assert r.status_code in (200, 422), r.text[:300]
        accepted += r.json()["accepted"]
        rejected += [x["idempotency_key"] for x in r.json()["rejected"]]
    assert len(accepted) == per_cell and len(rejected) == 2
    d0 = env.day.date().isoformat()
    d1 = (env.day + timedelta(days=1)).date().isoformat()
    r = env.get("/analytics/cost", group_by="model", **{"from": d0, "to": d1})
    assert r.json()["total"]["input_tokens"] == per_cell * ITEM_MAX_TOKENS


def _record(model: str, cost: int, at: datetime) -> UsageRecord:
    return UsageRecord(
        workspace_id="ws_hand",
        source="hermes_plugin",
        source_ref="hand",
        dedupe_key=model,
        window_start=at,
        window_end=at,
        granularity="request",
        provider="openai",
        model=model,
        model_raw=model,
        cost_nanousd=cost,
        cost_source="provider_reported",
    )


def test_a_rebuild_that_would_overflow_says_so(cli: type[Cli], engine: Engine) -> None:
    """Rows edited by hand into one cell past 64 bits: a clear CLI error, rollups unchanged."""
    cli.ok("init")
    at = datetime(2026, 1, 5, 12, tzinfo=UTC)
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO workspaces (id, name, created_at) VALUES ('ws_hand', 'hand', :t)"),
            {"t": at.replace(tzinfo=None) if engine.dialect.name == "sqlite" else at},
        )
        days = [at + timedelta(days=i) for i in range(3)]  # three cells, each within bounds
        upsert_usage(c, [_record(f"m{i}", CELL_MAX - 1, d) for i, d in enumerate(days)])
    with engine.begin() as c:  # three rows, one cell now
        c.execute(
            update(usage_records).values(
                model="m0", window_start=at, window_end=at, usage_date=at.date()
            )
        )
        before = c.execute(select(func.count()).select_from(usage_rollups_daily)).scalar()
    r = cli.run("db", "rebuild-rollups")
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert "outside what the database can store exactly" in r.stderr, r.output
    assert "unavailable" not in r.stderr
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(usage_rollups_daily)).scalar() == before


def test_overflow_errors_are_classified_as_values_not_outages(engine: Engine) -> None:
    """The driver's real overflow error of this backend maps to 422, not 503 unavailable."""
    from sqlalchemy.exc import DBAPIError

    sql = (
        "SELECT CAST(9223372036854775807 AS BIGINT) + 1"
        if engine.dialect.name == "postgresql"
        else "SELECT sum(x) FROM (SELECT 9223372036854775807 AS x UNION ALL SELECT 1)"
    )
    with engine.connect() as c, pytest.raises(DBAPIError) as info:
        c.execute(text(sql))
    f = classify(info.value)
    assert (f.status, f.code, f.retryable) == (422, "value_out_of_range", False)
