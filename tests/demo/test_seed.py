"""The demo's data, checked in the ledger after a real in-process run.

One `Demo.start` (real simulator, real server on 127.0.0.1, real HTTP
traffic, real push and sync) against the test's database; the assertions
read the tables and the reconciliation, not the demo's own report alone.
"""

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from metis.db.tables import events, gateway_keys, ingest_runs, usage_records
from metis.demo import seed, traffic
from metis.demo.runner import Demo, DemoOptions, DemoResult
from metis.gateway.routing.rules import parse_rules
from metis.ledger.reconcile import reconciled_cells
from metis.money import to_nanousd


@pytest.fixture
def demo_run(metis_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[DemoResult]:
    # The demo sets these when unset; make sure they are restored after the test.
    for name in ("METIS_LOG_LEVEL", "METIS_GATEWAY_URLS"):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    demo = Demo(DemoOptions(port=0, history_days=5), echo=lambda _line: None)
    try:
        yield demo.start()
    finally:
        demo.stop()


def _today_spend(engine: Engine, team_id: str) -> int:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.connect() as c:
        got = c.execute(
            select(func.coalesce(func.sum(usage_records.c.cost_nanousd), 0)).where(
                usage_records.c.source == "gateway",
                usage_records.c.team_id == team_id,
                usage_records.c.window_start >= today,
            )
        ).scalar_one()
    return int(got)


def _events(engine: Engine, type_: str) -> list[Any]:
    with engine.connect() as c:
        return list(c.execute(select(events).where(events.c.type == type_)).mappings())


def test_demo_data_tells_the_story(demo_run: DemoResult, engine: Engine) -> None:
    ids = demo_run.seeded.team_ids
    # Platform went past the soft cap, and the rule routed calls to cheaper models.
    assert _today_spend(engine, ids["platform"]) > to_nanousd(seed.SOFT_CAP_USD)
    decided = [e["payload"] for e in _events(engine, "route.decided")]
    rules = Counter(p.get("rule") for p in decided)
    assert rules["team-daily-soft-cap-openai"] + rules["team-daily-soft-cap-anthropic"] >= 6
    # Research ran into its hard daily cap: refusals recorded, spend close to the cap.
    refused = _events(engine, "gateway.quota_exceeded")
    assert len(refused) >= 3 and {e["team_id"] for e in refused} == {ids["research"]}
    research_cap = to_nanousd(Decimal(3))
    assert 0.8 * research_cap < _today_spend(engine, ids["research"]) <= research_cap * 1.2
    # Two keys have their own daily caps, well above what they spent.
    with engine.connect() as c:
        caps = dict(
            c.execute(
                select(gateway_keys.c.name, gateway_keys.c.daily_cap_nanousd).where(
                    gateway_keys.c.daily_cap_nanousd.is_not(None)
                )
            ).all()
        )
    assert caps == {"carol-ci": to_nanousd(5), "eval-pipeline": to_nanousd(1)}
    # Both shapes, streamed and not, are in the call events.
    calls = [e["payload"] for e in _events(engine, "llm.call_completed")]
    assert {(p["inbound_shape"], p["stream"]) for p in calls} == {
        ("openai", False),
        ("openai", True),
        ("anthropic", False),
        ("anthropic", True),
    }
    with engine.connect() as c:
        by_source = dict(
            c.execute(
                select(usage_records.c.source, func.count()).group_by(usage_records.c.source)
            ).all()
        )
        runs = c.execute(select(ingest_runs.c.credential_id, ingest_runs.c.status)).all()
    # Every answered gateway call is a gateway record; every pushed item a plugin record.
    assert by_source["gateway"] == len(demo_run.traffic.ok)
    assert by_source["hermes_plugin"] == demo_run.push.accepted
    assert demo_run.push.accepted == demo_run.push.direct_calls + demo_run.push.duplicates
    assert demo_run.push.duplicates == 2
    # The provider sync ran for both providers and stored their reports.
    assert by_source["provider_api_key"] > 0
    creds = demo_run.seeded.credential_ids
    assert sorted(runs) == sorted(
        (creds[f"{p}:usage_admin"], "ok") for p in ("openai", "anthropic")
    )
    _check_reconciliation(demo_run, engine)  # one demo run for both (CI time)


def _check_reconciliation(demo_run: DemoResult, engine: Engine) -> None:
    today = datetime.now(UTC).date()
    with engine.connect() as c:
        cells = reconciled_cells(c, today - timedelta(days=10), today + timedelta(days=1))
    assert cells
    assert all(cell.covered for cell in cells)  # the sync covered every day with usage
    # Past days: the simulator's history bypassed Metis -> unattributed.
    assert any(cell.day < today and cell.unattributed.cost_nanousd > 0 for cell in cells)
    # The agent's direct calls are attributed plugin rows.
    assert sum(cell.plugin.rows for cell in cells) == demo_run.push.direct_calls
    # The plugin's reports of two gateway calls are recognised and counted once.
    assert sum(cell.plugin_duplicate.rows for cell in cells) == 2
    # Today the provider's money equals what Metis saw: no cost drift, nothing
    # unattributed, and the input tokens agree.
    for cell in cells:
        if cell.day == today:
            assert cell.drift.cost_nanousd == 0 and cell.unattributed.cost_nanousd == 0, cell
            assert cell.provider_reported.input_tokens == cell.attributed.input_tokens, cell


def test_routing_rules_are_valid_and_spare_the_research_models() -> None:
    rules = parse_rules(seed.routing_rules_yaml()).rules
    assert [r.name for r in rules] == [
        "team-daily-soft-cap-openai",
        "team-daily-soft-cap-anthropic",
    ]
    downgraded = {m for r in rules for m in (r.when.model_in or ())}
    assert downgraded == {"gpt-4o", "gpt-4.1", "claude-sonnet-4-5"}
    assert all(r.when.team_cost_today_exceeds == to_nanousd(seed.SOFT_CAP_USD) for r in rules)


def test_written_routing_file_is_kept_when_present(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    assert seed.write_routing_file(path) and path.read_text() == seed.routing_rules_yaml()
    path.write_text("schema_version: 1\n")
    assert not seed.write_routing_file(path) and path.read_text() == "schema_version: 1\n"


@pytest.mark.parametrize(
    ("model", "family"),
    [("gpt-4o-mini-2024-07-18", "gpt-4o-mini"), ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
     ("o3", "o3"), ("gpt-4.1", "gpt-4.1")],
)  # fmt: skip
def test_family_strips_snapshot_dates(model: str, family: str) -> None:
    assert traffic.family(model) == family
