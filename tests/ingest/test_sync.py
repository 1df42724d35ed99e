"""Provider sync end to end through the CLI against a fake admin API (both providers)."""

import json
import re

import pytest
from sqlalchemy import Engine, func, select

from metis.db.tables import events, ingest_runs, sync_cursors, usage_records
from tests.conftest import Cli
from tests.ingest.fake_admin import Fault
from tests.ingest.pull_fixtures import Provisioned, expected, last_days, ledger_totals


def _runs(cli: type[Cli], *args: str) -> list[dict[str, object]]:
    r = cli.run("ingest", *args, "--json")
    data: list[dict[str, object]] = json.loads(r.stdout)
    return data


def test_sync_equals_ground_truth_and_rerun_is_unchanged(
    cli: type[Cli], provisioned: Provisioned, engine: Engine
) -> None:
    (run,) = _runs(cli, "sync", "--days", "3")
    assert run["status"] == "ok", run
    assert run["stored"] > 0 and run["updated"] == 0 and run["pages"] >= 6
    assert ledger_totals(engine, provisioned.credential_id) == expected(provisioned.fake)
    with engine.connect() as conn:
        srcs = set(conn.execute(select(usage_records.c.cost_source)).scalars())
        assert srcs == {"provider_reported"}
        assert set(conn.execute(select(usage_records.c.source)).scalars()) == {"provider_api_key"}
    (again,) = _runs(cli, "sync", "--days", "3")
    assert again["status"] == "ok"
    assert again["stored"] == 0 and again["updated"] == 0
    assert again["unchanged"] == run["stored"]
    assert ledger_totals(engine, provisioned.credential_id) == expected(provisioned.fake)
    # telemetry: a run row and an event per run
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ingest_runs)).scalar_one() == 2
        evs = (
            conn.execute(select(events.c.payload).where(events.c.type == "ingest.run_completed"))
            .scalars()
            .all()
        )
        assert len(evs) == 2 and evs[-1]["unchanged"] == run["stored"]


def test_auth_headers_and_query(cli: type[Cli], provisioned: Provisioned) -> None:
    _runs(cli, "sync", "--days", "1")
    paths = {p for p, _, _ in provisioned.fake.requests}
    if provisioned.provider == "openai":
        assert paths == {
            "/v1/organization/usage/completions",
            "/v1/organization/usage/embeddings",
            "/v1/organization/costs",
        }
        _, q, _ = provisioned.fake.requests[0]
        assert q["bucket_width"] == ["1d"] and "model" in q["group_by[]"]
    else:
        _, q, h = provisioned.fake.requests[0]
        assert h["anthropic-version"] == "2023-06-01"
        assert q["starting_at"][0].endswith("T00:00:00Z")


def test_revision_replaces_values(cli: type[Cli], provisioned: Provisioned, engine: Engine) -> None:
    _runs(cli, "sync", "--days", "3")
    today = [r for r in provisioned.fake.rows if r.stream == "completions"][-1]
    today.output += 1000  # today's bucket grows
    (run,) = _runs(cli, "sync", "--days", "3")
    assert run["updated"] >= 1 and run["stored"] == 0
    assert ledger_totals(engine, provisioned.credential_id) == expected(provisioned.fake)


# (every simulator fault mode is covered in test_sync_simulator.py; these pin our own fake)
# ("drop" is left to the simulator: a handler that raises makes this fake's server
# log and tear down the socket in ways that are noisy under load.)
@pytest.mark.parametrize("kind", ["429", "truncated"])
def test_transient_faults_are_retried(
    cli: type[Cli], provisioned: Provisioned, engine: Engine, kind: str
) -> None:
    provisioned.fake.faults.append(Fault(kind, times=2))
    (run,) = _runs(cli, "sync", "--days", "3")
    assert run["status"] == "ok", run
    assert ledger_totals(engine, provisioned.credential_id) == expected(provisioned.fake)


def test_persistent_failure_writes_nothing_and_keeps_cursor(
    cli: type[Cli], provisioned: Provisioned, engine: Engine
) -> None:
    (ok,) = _runs(cli, "sync", "--days", "3")
    with engine.connect() as conn:
        cur0 = conn.execute(select(sync_cursors.c.complete_through)).scalar_one()
        n0 = conn.execute(select(func.count()).select_from(usage_records)).scalar_one()
    for r in provisioned.fake.rows:
        # would change every row if anything were written
        r.output += 7 if r.stream == "completions" else 0
    # the cost endpoint (fetched last in a window) keeps failing: the first window fails
    cost_path = "costs" if provisioned.provider == "openai" else "cost_report"
    provisioned.fake.faults.append(Fault("500", times=1000, path_contains=cost_path))
    r = cli.run("ingest", "sync", "--days", "3")
    assert r.exit_code == 1 and "HTTP 500" in r.stderr
    with engine.connect() as conn:
        assert conn.execute(select(sync_cursors.c.complete_through)).scalar_one() == cur0
        assert conn.execute(select(func.count()).select_from(usage_records)).scalar_one() == n0
        assert (
            conn.execute(
                select(func.count()).select_from(usage_records).where(usage_records.c.revision > 1)
            ).scalar_one()
            == 0
        )
    status = json.loads(cli.ok("ingest", "status", "--json").stdout)
    assert "HTTP 500" in status[0]["last_error"] and status[0]["last_run_status"] == "failed"
    assert ok["status"] == "ok"
    provisioned.fake.faults.clear()
    (again,) = _runs(cli, "sync", "--days", "3")
    assert again["status"] == "ok"
    assert ledger_totals(engine, provisioned.credential_id) == expected(provisioned.fake)
    status = json.loads(cli.ok("ingest", "status", "--json").stdout)
    assert status[0]["last_error"] is None


def test_bad_key_fails_cleanly(cli: type[Cli], provisioned: Provisioned, engine: Engine) -> None:
    provisioned.fake.admin_key = "sk-something-else"
    r = cli.run("ingest", "sync")
    assert r.exit_code == 1 and "HTTP 401" in r.stderr
    assert len([x for x in provisioned.fake.requests]) == 1  # a 401 is not retried
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(usage_records)).scalar_one() == 0


def test_backfill_resumes_and_rerun_changes_nothing(
    cli: type[Cli], provisioned: Provisioned, engine: Engine
) -> None:
    from tests.ingest.fake_admin import generate_rows

    provisioned.fake.rows = generate_rows(provisioned.provider, last_days(8), seed=3)
    # interrupted: the 5th day's requests fail for good
    provisioned.fake.faults.append(Fault("500", times=1000))
    ok_requests = 0
    r = cli.run("ingest", "backfill", "--days", "8")
    assert r.exit_code == 1
    provisioned.fake.faults.clear()
    out = cli.ok("ingest", "backfill", "--days", "8")
    assert out.stdout.count("stored") >= 1 and ok_requests == 0
    assert ledger_totals(engine, provisioned.credential_id) == expected(provisioned.fake)
    again = cli.ok("ingest", "backfill", "--days", "8", "--json")
    (run,) = json.loads(again.stdout)
    assert run["stored"] == 0 and run["updated"] == 0
    assert run["skipped"] == 5 and run["unchanged"] > 0  # 5 settled days skipped, 3 re-fetched
    refetch = json.loads(cli.ok("ingest", "backfill", "--days", "8", "--refetch", "--json").stdout)
    assert refetch[0]["skipped"] == 0 and refetch[0]["stored"] == 0 and refetch[0]["updated"] == 0
    assert ledger_totals(engine, provisioned.credential_id) == expected(provisioned.fake)


def test_cost_without_usage_is_kept_then_replaced(
    cli: type[Cli], provisioned: Provisioned, engine: Engine
) -> None:
    from sqlalchemy import text

    from metis.db.tables import usage_rollups_daily

    fake = provisioned.fake
    hidden = [r for r in fake.rows if r.stream == "completions"][-1]
    hidden.stream = "hidden"  # billed, but (not yet) in the usage report
    (run,) = _runs(cli, "sync", "--days", "3")
    assert run["status"] == "ok"
    totals = ledger_totals(engine, provisioned.credential_id)
    assert totals == expected(fake)  # cost includes the hidden row's cost exactly
    with engine.connect() as conn:
        n_cost_only = sum(
            1
            for m in conn.execute(select(usage_records.c.metadata)).scalars()
            if m and m.get("cost_only")
        )
    assert n_cost_only >= 1
    hidden.stream = "completions"  # the usage report catches up
    (run,) = _runs(cli, "sync", "--days", "3")
    assert run["removed"] == n_cost_only and run["stored"] >= 1
    assert ledger_totals(engine, provisioned.credential_id) == expected(fake)
    with engine.connect() as conn:
        rolled = conn.execute(
            select(func.sum(usage_rollups_daily.c.cost_nanousd)).where(
                usage_rollups_daily.c.source == "provider_api_key"
            )
        ).scalar_one()
        raw = conn.execute(text("select sum(cost_nanousd) from usage_records")).scalar_one()
    assert int(rolled) == int(raw) == expected(fake)["cost_nanousd"]


def test_unknown_model_without_cost_is_flagged_not_silent(
    cli: type[Cli], provisioned: Provisioned, engine: Engine
) -> None:
    from tests.ingest.fake_admin import Row

    today = last_days(1)[0]
    # A day the cost report does not cover yet (no cost row at all): Metis prices
    # the usage itself, and a model it has no price for is flagged.
    provisioned.fake.rows[:] = [r for r in provisioned.fake.rows if r.day != today]
    provisioned.fake.rows.append(
        Row(today, "mystery-model-x", "key_a", "proj_1", 10, 0, 0, 5, 1, billed=False)
    )
    r = cli.ok("ingest", "sync", "--days", "1")
    assert "mystery-model-x" in r.stdout and "cost_source none" in r.stdout
    with engine.connect() as conn:
        rec = conn.execute(
            select(usage_records.c.cost_source, usage_records.c.cost_nanousd).where(
                usage_records.c.model_raw == "mystery-model-x"
            )
        ).one()
        details = conn.execute(select(ingest_runs.c.details)).scalar_one()
    assert tuple(rec) == ("none", 0)
    assert details["unpriced_models"] == ["mystery-model-x"]


def test_undocumented_shape_fails_the_window_cleanly(
    cli: type[Cli], provisioned: Provisioned, engine: Engine
) -> None:
    provisioned.fake.faults.append(Fault("shape", times=1000))
    r = cli.run("ingest", "sync", "--days", "2", "--json")
    assert r.exit_code == 1
    (run,) = json.loads(r.stdout)
    assert run["status"] == "failed" and "unexpected response shape" in run["error"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(usage_records)).scalar_one() == 0
        assert set(conn.execute(select(ingest_runs.c.status)).scalars()) == {"failed"}


def test_a_day_the_cost_report_covers_is_never_priced_on_top(
    cli: type[Cli], provisioned: Provisioned, engine: Engine
) -> None:
    """Issue 18 #2: usage the day's cost report has no row for gets no computed price."""
    from tests.ingest.fake_admin import Row

    today = last_days(1)[0]
    provisioned.fake.rows.append(
        Row(today, "gpt-4o-mini", "key_a", "proj_1", 1000, 0, 0, 50, 2, billed=False)
    )
    cli.ok("ingest", "sync", "--days", "1")
    with engine.connect() as conn:
        rec = conn.execute(
            select(
                usage_records.c.cost_source, usage_records.c.cost_nanousd, usage_records.c.metadata
            ).where(usage_records.c.model_raw == "gpt-4o-mini")
        ).one()
        day_total = conn.execute(
            select(func.sum(usage_records.c.cost_nanousd)).where(
                usage_records.c.usage_date == today
            )
        ).scalar_one()
        details = conn.execute(select(ingest_runs.c.details)).scalar_one()
    assert (rec.cost_source, rec.cost_nanousd) == ("provider_reported", 0)
    assert rec.metadata["cost_unallocated"] is True
    # the day's stored provider total is exactly what the cost report says
    assert int(day_total) == expected(provisioned.fake, {today})["cost_nanousd"]
    assert details["windows"][0]["cost_unallocated"] == 1


def test_terminal_output_is_human_unless_json_is_asked_for(
    cli: type[Cli], provisioned: Provisioned, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METIS_LOG_FORMAT", "console")  # the default
    monkeypatch.delenv("METIS_LOG_LEVEL", raising=False)
    provisioned.fake.faults.append(Fault("500", times=100))  # the day's window fails
    r = cli.run("ingest", "sync", "--days", "1")
    assert r.exit_code == 1
    assert not [ln for ln in r.stderr.splitlines() if ln.startswith("{")], r.stderr
    assert re.search(r"^warning: ingest\.window_failed .*day=\d{4}-\d\d-\d\d", r.stderr, re.M)
    assert f"{provisioned.credential_id} (acme/{provisioned.provider}) sync failed" in r.stdout
    provisioned.fake.faults.clear()
    r = cli.ok("ingest", "sync", "--days", "1")
    assert r.stderr == ""  # info lines stay quiet: the summary line says it
    assert f"{provisioned.credential_id} (acme/{provisioned.provider}) sync ok" in r.stdout
    # --json: JSON on stdout and JSON log lines on stderr, info included
    r = cli.ok("ingest", "sync", "--days", "1", "--json")
    lines = r.stderr.splitlines()
    assert lines and all(json.loads(ln)["logger"] == "metis.ingest" for ln in lines)
    assert any(json.loads(ln)["event"] == "ingest.run_completed" for ln in lines)
    assert json.loads(r.stdout)[0]["workspace_name"] == "acme"
    # METIS_LOG_FORMAT=json alone: JSON log lines, human summary
    monkeypatch.setenv("METIS_LOG_FORMAT", "json")
    r = cli.ok("ingest", "sync", "--days", "1")
    assert r.stderr and all(ln.startswith("{") for ln in r.stderr.splitlines())
    assert "sync ok" in r.stdout
