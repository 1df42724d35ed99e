from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from metis.db.migrate import current_revision, head_revision, upgrade
from metis.db.partitions import schema_compare_filter
from metis.db.tables import metadata
from tests.conftest import BACKEND


def test_backend_is_the_one_requested(engine: Engine) -> None:
    # With METIS_TEST_DATABASE_URL set this must really be a PostgreSQL server.
    assert engine.dialect.name == BACKEND
    with engine.connect() as c:
        if BACKEND == "postgresql":
            assert c.exec_driver_sql("select version()").scalar_one().startswith("PostgreSQL")
        else:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1


def test_migrations_produce_exactly_the_declared_schema(engine: Engine) -> None:
    with engine.connect() as c:
        diff = compare_metadata(
            MigrationContext.configure(
                c,
                opts={
                    "compare_type": True,
                    "include_object": schema_compare_filter(c.dialect.name),
                },
            ),
            metadata,
        )
    assert diff == []


def test_upgrade_is_idempotent(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    before = sorted(inspect(engine).get_table_names())
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert sorted(inspect(engine).get_table_names()) == before
    assert {"usage_records", "events", "spend_counters", "leases"} <= set(before)


def test_0003_unanswered_gateway_calls_stop_counting_as_requests(engine: Engine) -> None:
    """Records written before issue 18 counted an upstream failure as a request; the
    migration takes it off the records and the gateway rollups alike."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import insert, select

    from metis.db.migrate import alembic_config
    from metis.db.tables import usage_records, usage_rollups_daily, workspaces
    from metis.ledger.record import UsageRecord
    from metis.ledger.upsert import upsert_usage

    at = datetime(2026, 11, 2, 10, tzinfo=UTC)

    def rec(key: str, status: str, tokens: int) -> UsageRecord:
        return UsageRecord(
            workspace_id="ws_m", source="gateway", source_ref="key_m", dedupe_key=key,
            window_start=at, window_end=at, granularity="request", provider="openai",
            model="gpt-4o", model_raw="gpt-4o", input_tokens=tokens, output_tokens=tokens,
            request_count=1, cost_nanousd=tokens, status=status, user_id="usr_m",
        )  # fmt: skip

    command.downgrade(alembic_config(engine), "0002")
    try:
        with engine.begin() as c:
            c.execute(insert(workspaces).values(id="ws_m", name="m", created_at=at))
            upsert_usage(c, [
                rec("ok", "ok", 10),
                rec("refused", "upstream_error", 0),
                rec("no-answer", "connect_error", 0),
                rec("cut-stream", "upstream_error", 7),  # answered, then broke: billed
                rec("gone", "client_disconnected", 0),  # answered 2xx: billed
            ])  # fmt: skip
    finally:
        upgrade(engine)
    with engine.connect() as c:
        q = select(usage_records.c.dedupe_key, usage_records.c.request_count)
        counts = {str(k): int(n) for k, n in c.execute(q).all()}
        rolled = c.execute(select(usage_rollups_daily.c.request_count)).scalar_one()
        errors = c.execute(select(usage_rollups_daily.c.error_count)).scalar_one()
    assert counts == {"ok": 1, "refused": 0, "no-answer": 0, "cut-stream": 1, "gone": 1}
    assert (rolled, errors) == (3, 4)
    assert "daily_cap_nanousd" in {c["name"] for c in inspect(engine).get_columns("users")}


def test_0004_gives_existing_credentials_their_provider_as_family(
    empty_engine: Engine, metis_env: dict[str, str]
) -> None:
    """Credentials stored before provider families keep working: OpenAI and Anthropic rows get
    their provider as family, no price provider (the family's default) and no options; the
    downgrade drops the three columns again."""
    from metis.credentials import get_credential
    from metis.db.migrate import alembic_config

    eng = empty_engine
    upgrade(eng, "0003")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with eng.begin() as c:
        c.execute(
            text("INSERT INTO workspaces (id, name, created_at) VALUES ('ws_1', 'w', :t)"),
            {"t": now},
        )
        for cid, prov in (("cred_1", "openai"), ("cred_2", "anthropic")):
            c.execute(
                text(
                    "INSERT INTO provider_credentials (id, workspace_id, provider, "
                    "purpose_inference, purpose_usage_admin, mode, created_at, secret_ref) "
                    "VALUES (:id, 'ws_1', :p, true, false, 'standard', :t, 'env:X')"
                ),
                {"id": cid, "p": prov, "t": now},
            )
    upgrade(eng)
    with eng.connect() as c:
        rows = c.execute(
            text("SELECT id, family, price_provider, options FROM provider_credentials ORDER BY id")
        ).all()
        assert [tuple(r) for r in rows] == [
            ("cred_1", "openai", None, None),
            ("cred_2", "anthropic", None, None),
        ]
        cred = get_credential(c, "cred_2")
    assert (cred.family, cred.effective_price_provider, cred.api_root) == (
        "anthropic",
        "anthropic",
        "https://api.anthropic.com",
    )
    command.downgrade(alembic_config(eng), "0003")
    cols = {c["name"] for c in inspect(eng).get_columns("provider_credentials")}
    assert not {"family", "price_provider", "options"} & cols


def test_0005_fills_the_latency_histograms_from_stored_gateway_records(
    empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgraded install answers reliability from histograms at once: 0005 buckets the
    gateway records already stored (plugin rows and rows without a latency stay out)."""
    from collections import Counter
    from datetime import timedelta

    from sqlalchemy import insert, select

    from metis.db.migrate import alembic_config
    from metis.db.tables import usage_rollups_latency, workspaces
    from metis.ledger import latency_rollups, rollups
    from metis.ledger.record import UsageRecord
    from metis.ledger.upsert import upsert_usage

    at = datetime(2026, 11, 2, 10, tzinfo=UTC)
    lat = [None, 0, 7, 99, 100, 950, 951, 1_000, 60_000, 950]

    def rec(i: int, source: str = "gateway") -> UsageRecord:
        t = at + timedelta(days=i % 3)
        return UsageRecord(
            workspace_id="ws_m", source=source, source_ref="key_m", dedupe_key=f"k{i}",
            window_start=t, window_end=t, granularity="request", provider="openai",
            model="gpt-4o" if i % 2 else "o3", model_raw="gpt-4o", request_count=1,
            status="ok", latency_ms=lat[i % len(lat)],
        )  # fmt: skip

    recs = [rec(i) for i in range(40)] + [rec(i, "hermes_plugin") for i in range(5)]
    eng = empty_engine
    upgrade(eng, "0004")
    # Records written by a release before 0005: no histogram maintenance. (Nor any
    # rollup: today's write path also fills tables later migrations add; only the
    # histograms are checked here.)
    monkeypatch.setattr(latency_rollups, "apply_deltas", lambda conn, deltas: None)
    monkeypatch.setattr(rollups, "apply_deltas", lambda conn, deltas: None)
    with eng.begin() as c:
        c.execute(insert(workspaces).values(id="ws_m", name="m", created_at=at))
        upsert_usage(c, recs)
    monkeypatch.undo()
    upgrade(eng)
    want = Counter(
        (r.usage_date, "ws_m", "openai", r.model, latency_rollups.bucket_of(r.latency_ms))
        for r in recs
        if r.source == "gateway" and r.latency_ms is not None
    )
    cols = [usage_rollups_latency.c[d] for d in (*latency_rollups.DIMS, "call_count")]
    with eng.connect() as c:
        got = {tuple(r[:-1]): r[-1] for r in c.execute(select(*cols))}
    assert got == dict(want) and sum(got.values()) == 36
    command.downgrade(alembic_config(eng), "0004")
    assert "usage_rollups_latency" not in inspect(eng).get_table_names()


def test_0007_fills_the_identity_projection_and_reclassifies_priced_provider_rows(
    engine: Engine,
) -> None:
    """An install upgraded past 0007 has the rollups a rebuild from raw rows gives: the
    identity projection filled, provider rows with a computed cost as ``provider_priced``."""
    from alembic import command
    from sqlalchemy import insert, select, update

    from metis.db.migrate import alembic_config
    from metis.db.tables import usage_rollups_reconcile, usage_rollups_reconcile_model, workspaces
    from metis.ledger import rollups
    from metis.ledger.record import UsageRecord
    from metis.ledger.upsert import upsert_usage

    at = datetime(2026, 11, 2, 10, tzinfo=UTC)

    def rec(key: str, source: str, model: str, cost_source: str, **kw: Any) -> UsageRecord:
        return UsageRecord(
            workspace_id="ws_m", source=source, source_ref="r", dedupe_key=key,
            window_start=at, window_end=at, granularity="1h" if source == "provider_api_key"
            else "request", provider="openai", model=model, model_raw=model, input_tokens=9,
            request_count=1, cost_nanousd=5, cost_source=cost_source, **kw,
        )  # fmt: skip

    with engine.begin() as c:
        c.execute(insert(workspaces).values(id="ws_m", name="m", created_at=at))
        upsert_usage(c, [
            rec("p1", "provider_api_key", "gpt-4o", "computed"),
            rec("p2", "provider_api_key", "gpt-4o-mini", "provider_reported"),
            rec("g1", "gateway", "gpt-4o", "computed", correlation_id="c1", user_id="usr_a"),
            rec("h1", "hermes_plugin", "gpt-4o", "computed", correlation_id="c1", user_id="usr_a"),
            rec("h2", "hermes_plugin", "gpt-4o", "computed", user_id="usr_b",
                base_url="https://api.openai.com/v1"),
        ])  # fmt: skip

    def snapshot() -> list[list[tuple[Any, ...]]]:
        with engine.connect() as c:
            return [
                sorted(tuple(r) for r in c.execute(select(t)).all()) for t in rollups.RECON_TABLES
            ]

    with engine.begin() as c:
        rollups.rebuild(c)
    want = snapshot()
    assert any(rollups.KLASS_PROVIDER_COMPUTED in r for r in want[0])
    before_0007 = str(
        ScriptDirectory.from_config(alembic_config(engine)).get_revision("0007").down_revision
    )
    command.downgrade(alembic_config(engine), before_0007)
    try:
        with engine.begin() as c:  # what the write path stored before 0007
            for t in (usage_rollups_reconcile, usage_rollups_reconcile_model):
                c.execute(
                    update(t)
                    .where(t.c.klass == rollups.KLASS_PROVIDER_COMPUTED)
                    .values(klass=rollups.KLASS_PROVIDER)
                )
    finally:
        upgrade(engine)
    assert snapshot() == want
