"""PostgreSQL monthly partitions of usage_records and events (metis.db.partitions).

The partitioned layout exists on PostgreSQL only; these tests run in the
PostgreSQL pass of the suite (CI runs both). On SQLite one test checks that
the partition functions are no-ops there.
"""

import json
import threading
import time
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, select, text

from metis.db import partitions
from metis.db.migrate import alembic_config, upgrade
from metis.db.tables import events, prune_runs, usage_records, usage_rollups_daily
from metis.events import GatewayKeyIssued, IngestRunCompleted, append_event
from metis.ingest.scheduler import partitions_job
from metis.ledger import rollups
from metis.ledger.prune import prune
from metis.ledger.upsert import upsert_usage
from metis.timeutil import iso
from tests.alerts.helpers import record, workspace
from tests.conftest import BACKEND, Cli

pg_only = pytest.mark.skipif(BACKEND != "postgresql", reason="partitions exist on PostgreSQL only")


def _where(conn: Connection, table: str, cond: str = "TRUE") -> dict[str, int]:
    """Rows of ``table`` matching ``cond`` per leaf partition."""
    q = f"SELECT tableoid::regclass::text, count(*) FROM {table} WHERE {cond} GROUP BY 1"
    return {str(p): int(n) for p, n in conn.execute(text(q))}


def _rollups(conn: Connection) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in conn.execute(select(usage_rollups_daily)))


def _trace() -> IngestRunCompleted:
    return IngestRunCompleted(
        run_id="run_1", credential_id="cred_1", provider="openai", kind="sync", status="ok",
        window_start=None, window_end=None, pages=1, stored=1, updated=0, unchanged=0,
        skipped=0, errors=0, duration_ms=5,
    )  # fmt: skip


def _audit(ts: datetime) -> GatewayKeyIssued:
    return GatewayKeyIssued(
        key_id="key_1", name="k", workspace_path="/w", user_id=None, team_id=None,
        allowed_models=None, daily_cap_usd=None, issued_at=iso(ts),
    )  # fmt: skip


def test_partition_functions_are_noops_on_sqlite(engine: Engine) -> None:
    if BACKEND != "sqlite":
        pytest.skip("the SQLite half of the layout (PostgreSQL: the tests below)")
    with engine.begin() as c:
        assert not partitions.is_partitioned(c)
        assert partitions.list_partitions(c) == []
        assert partitions.ensure_partitions(c, date(2026, 1, 1), date(2026, 12, 1)) == []
    assert partitions_job(engine, date(2026, 12, 5)) == []


@pg_only
def test_migration_builds_the_layout_with_months_ahead(engine: Engine) -> None:
    """A migrated database: both tables partitioned, this month and three ahead exist, the
    identity constraints carry the partition key."""
    today = datetime.now(UTC).date()
    with engine.connect() as c:
        assert partitions.is_partitioned(c)
        names = {p.name for p in partitions.list_partitions(c)}
        cons = dict(
            c.execute(
                text(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid IN ('usage_records'::regclass, 'events'::regclass) "
                    "AND contype IN ('p', 'u')"
                )
            ).all()
        )
    for parent in partitions.MONTHLY:
        assert f"{parent}_default" in names
        for m in partitions.months_between(today, partitions.add_months(today, 3)):
            assert partitions.partition_name(parent, m) in names
    assert cons == {
        "pk_usage_records": "PRIMARY KEY (id, usage_date, granularity)",
        "uq_usage_records_workspace_id_source_dedupe_key": "UNIQUE (workspace_id, source, "
        "dedupe_key, usage_date, granularity)",
        "pk_events": "PRIMARY KEY (id, ts)",
        "uq_events_event_id": "UNIQUE (event_id, ts)",
    }
    for name, cols in partitions.PARTITION_KEYED_CONSTRAINTS.items():
        assert cons[name] == f"UNIQUE ({', '.join(cols)})"


@pg_only
def test_scheduler_job_creates_the_months_ahead(engine: Engine) -> None:
    created = partitions_job(engine, date(2160, 5, 17))
    months = ["216005", "216006", "216007", "216008"]
    assert sorted(created) == sorted(f"{p}_p{m}" for p in partitions.MONTHLY for m in months)
    assert partitions_job(engine, date(2160, 5, 18)) == []  # idempotent
    assert partitions_job(engine, date(2160, 6, 1)) == [f"{p}_p216009" for p in partitions.MONTHLY]


@pg_only
def test_a_month_without_partition_lands_in_default_and_moves_when_created(
    engine: Engine,
) -> None:
    day = date(2171, 3, 10)
    at = datetime(2171, 3, 10, 6, tzinfo=UTC)
    recs = [record(day, 1_000 + i) for i in range(3)] + [
        record(day, 7_000, source="provider_api_key", granularity="1d")
    ]
    with engine.begin() as c:
        workspace(c)
        upsert_usage(c, recs)
        append_event(c, _trace(), ts=at)
        append_event(c, _audit(at), ts=at)
    with engine.connect() as c:
        assert _where(c, "usage_records") == {
            "usage_records_request_default": 3,
            "usage_records_agg_default": 1,
        }
        assert _where(c, "events") == {"events_default": 2}
        rolled = _rollups(c)
        before = c.execute(select(usage_records).order_by(usage_records.c.id)).all()
    assert partitions_job(engine, date(2171, 3, 1))  # creates March..June 2171
    with engine.connect() as c:
        assert _where(c, "usage_records") == {
            "usage_records_request_p217103": 3,
            "usage_records_agg_p217103": 1,
        }
        assert _where(c, "events") == {"events_p217103": 2}
        assert c.execute(select(usage_records).order_by(usage_records.c.id)).all() == before
        assert _rollups(c) == rolled
    with engine.begin() as c:  # the identity still holds on the moved rows: a replay is one
        counts = upsert_usage(c, recs)
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 0, 4)


@pg_only
def test_a_revision_moving_across_a_month_boundary_stays_one_row(engine: Engine) -> None:
    """The identity is (workspace, source, dedupe_key) on the partitioned table too: a revision
    whose day moves into another month moves the row (revision 2), and the rollups follow."""
    with engine.begin() as c:
        partitions.ensure_partitions(c, date(2026, 10, 1), date(2026, 11, 1))
        workspace(c)
        first = record(date(2026, 10, 31), 5_000, hour=23)
        other = record(date(2026, 10, 31), 1_000, hour=22)
        upsert_usage(c, [first, other])
    moved = msgspec.structs.replace(
        first,
        window_start=datetime(2026, 11, 1, 0, 30, tzinfo=UTC),
        window_end=datetime(2026, 11, 1, 0, 31, tzinfo=UTC),
        cost_nanousd=6_000,
    )
    with engine.begin() as c:
        counts = upsert_usage(c, [moved])
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 0)
    with engine.begin() as c:  # and once more: a replay of the moved record changes nothing
        again = upsert_usage(c, [moved])
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 1)
    as_agg = msgspec.structs.replace(moved, granularity="1h", cost_nanousd=6_500)
    with engine.begin() as c:  # a granularity change moves it to the aggregates
        counts = upsert_usage(c, [as_agg])
    assert (counts.inserted, counts.updated, counts.unchanged) == (0, 1, 0)
    with engine.begin() as c:
        rows = c.execute(
            text(
                "SELECT tableoid::regclass::text, usage_date, cost_nanousd, revision "
                "FROM usage_records WHERE dedupe_key = :k"
            ),
            {"k": first.dedupe_key},
        ).all()
        assert [tuple(r) for r in rows] == [
            ("usage_records_agg_p202611", date(2026, 11, 1), 6_500, 3)
        ]
        incremental = _rollups(c)
        rollups.rebuild(c)
        assert _rollups(c) == incremental
        by_day = dict(
            c.execute(
                select(
                    usage_rollups_daily.c.usage_date, func.sum(usage_rollups_daily.c.cost_nanousd)
                ).group_by(usage_rollups_daily.c.usage_date)
            ).all()
        )
    assert by_day == {date(2026, 10, 31): 1_000, date(2026, 11, 1): 6_500}


def _plan_relations(conn: Connection, sql: str, params: Any = None) -> set[str]:
    """The tables (partitions) the plan of ``sql`` reads."""
    plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params).scalar_one()
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Relation Name" in node:
            found.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    return found


@pg_only
def test_a_one_month_query_touches_one_partition(engine: Engine) -> None:
    with engine.begin() as c:
        partitions.ensure_partitions(c, date(2026, 9, 1), date(2026, 12, 1))
    with engine.connect() as c:
        dec = "usage_date >= '2026-12-01' AND usage_date < '2027-01-01'"
        assert _plan_relations(
            c,
            f"SELECT sum(cost_nanousd) FROM usage_records WHERE granularity = 'request' AND {dec}",
        ) == {"usage_records_request_p202612"}
        assert _plan_relations(c, f"SELECT sum(cost_nanousd) FROM usage_records WHERE {dec}") == {
            "usage_records_request_p202612",
            "usage_records_agg_p202612",
        }
        assert _plan_relations(
            c,
            "SELECT count(*) FROM events WHERE ts >= '2026-11-01T00:00:00+00:00' "
            "AND ts < '2026-12-01T00:00:00+00:00'",
        ) == {"events_p202611"}


@pg_only
def test_retention_drops_whole_months_and_keeps_aggregates_and_audit(
    empty_engine: Engine,
) -> None:
    """Request records of months wholly before the cutoff go as partitions, the straddling month
    row by row; aggregates and (without include_audit) audit events stay; counts are exact.
    (Its own database: a prune in 2161 drops every earlier month's partitions.)"""
    engine = empty_engine
    upgrade(engine)
    now = datetime(2161, 6, 15, 12, tzinfo=UTC)
    days = [date(2161, 2, 10), date(2161, 3, 5), date(2161, 3, 20), date(2161, 4, 20),
            date(2161, 4, 28), date(2161, 6, 14)]  # fmt: skip
    with engine.begin() as c:
        assert partitions.ensure_partitions(c, date(2161, 2, 1), date(2161, 6, 1))
        workspace(c)
        recs = []
        for i, d in enumerate(days):
            recs += [record(d, 10 * (i + 1), hour=h) for h in (1, 2)]
            recs.append(record(d, 1_000, source="provider_api_key", granularity="1d"))
        upsert_usage(c, recs)
        for d in days:
            at = datetime(d.year, d.month, d.day, 6, tzinfo=UTC)
            append_event(c, _trace(), ts=at)
            if d.month != 3:  # March holds no audit event: its partition may go whole
                append_event(c, _audit(at), ts=at)
        rolled = _rollups(c)
    # retention 50 days: cutoff 2161-04-26; February and March are whole months before it.
    dry = prune(engine, retention_days=50, now=now, dry_run=True)
    assert (dry.cutoff, dry.records, dry.events) == (date(2161, 4, 26), 8, 4)
    done = prune(engine, retention_days=50, now=now)
    assert (done.records, done.events, done.audit_events) == (8, 4, 0)
    with engine.connect() as c:
        names = {p.name for p in partitions.list_partitions(c)}
        assert "usage_records_request_p216102" not in names
        assert "usage_records_request_p216103" not in names
        assert "events_p216103" not in names  # no audit event in it: dropped whole
        assert "events_p216102" in names  # keeps its audit event
        assert {"usage_records_agg_p216102", "usage_records_agg_p216103"} <= names
        assert _where(c, "usage_records", "granularity = 'request'") == {
            "usage_records_request_p216104": 2,  # 04-28 kept, 04-20 deleted row by row
            "usage_records_request_p216106": 2,
        }
        assert sum(_where(c, "usage_records", "granularity = '1d'").values()) == 6
        assert _where(c, "events", "type LIKE 'gateway.%'") == {
            "events_p216102": 1,
            "events_p216104": 2,
            "events_p216106": 1,
        }
        assert _where(c, "events", "type NOT LIKE 'gateway.%'") == {
            "events_p216104": 1,
            "events_p216106": 1,
        }
        assert _rollups(c) == rolled  # rollups keep every pruned day
        run = c.execute(select(prune_runs.c.deleted_records, prune_runs.c.deleted_events)).one()
    assert tuple(run) == (8, 4)
    audit = prune(engine, retention_days=50, now=now, include_audit=True)
    assert (audit.records, audit.events, audit.audit_events) == (0, 2, 2)
    with engine.connect() as c:
        assert "events_p216102" not in {p.name for p in partitions.list_partitions(c)}
        assert _where(c, "events") == {"events_p216104": 2, "events_p216106": 2}


@pg_only
def test_migration_converts_a_populated_database_losing_nothing(empty_engine: Engine) -> None:
    """A database from before 0006 with records and events in several months (and one far in
    the past) is converted row for row: same rows, same ids, the sequence keeps going; the
    downgrade too. (The rows are written at head, then the schema taken back to before 0006:
    today's write path also fills tables that later migrations add.)"""
    eng = empty_engine
    upgrade(eng)
    before_0006 = str(
        ScriptDirectory.from_config(alembic_config(eng)).get_revision("0006").down_revision
    )
    days = [date(2001, 1, 5), date(2026, 9, 30), date(2026, 10, 1), date(2026, 11, 15)]
    with eng.begin() as c:
        workspace(c)
        recs = [record(d, 100 + i, hour=h) for i, d in enumerate(days) for h in (3, 4)]
        recs += [record(d, 9_999, source="provider_api_key", granularity="1d") for d in days]
        upsert_usage(c, recs)
        for d in days:
            at = datetime(d.year, d.month, d.day, 23, 59, tzinfo=UTC)
            append_event(c, _trace(), ts=at)
            append_event(c, _audit(at), ts=at)
    command.downgrade(alembic_config(eng), before_0006)
    with eng.connect() as c:
        assert not partitions.is_partitioned(c)

    def snapshot() -> tuple[list[Any], list[Any], list[Any]]:
        with eng.connect() as c:
            return (
                [tuple(r) for r in c.execute(select(usage_records).order_by(usage_records.c.id))],
                [tuple(r) for r in c.execute(select(events).order_by(events.c.id))],
                _rollups(c),
            )

    before = snapshot()
    assert len(before[0]) == 12 and len(before[1]) == 8
    upgrade(eng)
    with eng.connect() as c:
        assert partitions.is_partitioned(c)
        names = {p.name for p in partitions.list_partitions(c)}
        assert _where(c, "usage_records", "usage_date = '2001-01-05'") == {
            "usage_records_request_p200101": 2,
            "usage_records_agg_p200101": 1,
        }
        assert _where(c, "events", "ts < '2001-02-01T00:00:00+00:00'") == {"events_p200101": 2}
    assert {"usage_records_request_p202609", "events_p202611"} <= names
    assert snapshot() == before
    with eng.begin() as c:
        upsert_usage(c, [record(date(2026, 11, 16), 1)])
        new_id = c.execute(select(func.max(usage_records.c.id))).scalar_one()
    assert new_id == max(r[0] for r in before[0]) + 1  # the id sequence kept going
    with eng.begin() as c:
        c.execute(text("DELETE FROM usage_records WHERE id = :i"), {"i": new_id})
        rollups.rebuild(c)
    command.downgrade(alembic_config(eng), before_0006)
    with eng.connect() as c:
        assert not partitions.is_partitioned(c)
    assert snapshot()[:2] == before[:2]


def test_cli_lists_and_creates_partitions(cli: type[Cli], engine: Engine) -> None:
    """`metis db partitions`: the list (PostgreSQL), `--create-ahead`, and an honest empty
    answer on SQLite; rows in a DEFAULT partition show in its estimate after ANALYZE."""
    if BACKEND == "sqlite":
        assert "no partitions" in cli.ok("db", "partitions").stdout
        out = json.loads(cli.ok("db", "partitions", "--create-ahead", "--json").stdout)
        assert out == {"created": [], "partitions": []}
        return
    out = json.loads(cli.ok("db", "partitions", "--create-ahead", "--json").stdout)
    month = datetime.now(UTC).strftime("%Y-%m")
    listed = {(p["parent"], p["month"]) for p in out["partitions"]}
    assert {(parent, m) for parent in partitions.MONTHLY for m in (month, "DEFAULT")} <= listed
    again = json.loads(cli.ok("db", "partitions", "--create-ahead", "--json").stdout)
    assert again["created"] == [] and again["partitions"] == out["partitions"]
    text_out = cli.ok("db", "partitions").stdout
    assert f"usage_records_request_p{month.replace('-', '')}" in text_out


@pg_only
def test_concurrent_first_writes_of_one_record_on_two_days_make_one_row(engine: Engine) -> None:
    """Two writers send the same new record with different days at once: without a unique index
    on the identity alone, the record's advisory lock is what keeps it one row. The second
    writer waits for the first to commit, then finds and moves its row."""
    with engine.begin() as c:
        workspace(c)
    first = record(date(2026, 11, 30), 100, hour=23)
    second = msgspec.structs.replace(
        first,
        window_start=datetime(2026, 12, 1, 0, 5, tzinfo=UTC),
        window_end=datetime(2026, 12, 1, 0, 6, tzinfo=UTC),
        cost_nanousd=200,
    )
    results: dict[str, Any] = {}
    with engine.connect() as a:
        tx = a.begin()
        upsert_usage(a, [first])  # holds the lock until commit

        def other() -> None:
            with engine.begin() as b:
                results["b"] = upsert_usage(b, [second])

        t = threading.Thread(target=other)
        t.start()
        with engine.connect() as watch:  # wait until the other writer waits on the lock
            waiting = text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            deadline = time.monotonic() + 30
            while watch.execute(waiting).scalar_one() == 0:
                assert time.monotonic() < deadline, "the second writer never waited"
                time.sleep(0.01)
        tx.commit()
        t.join(30)
    b = results["b"]
    assert (b.inserted, b.updated, b.unchanged) == (0, 1, 0)
    with engine.connect() as c:
        rows = c.execute(
            select(
                usage_records.c.usage_date, usage_records.c.cost_nanousd, usage_records.c.revision
            ).where(usage_records.c.dedupe_key == first.dedupe_key)
        ).all()
        assert [tuple(r) for r in rows] == [(date(2026, 12, 1), 200, 2)]
        incremental = _rollups(c)
    with engine.begin() as c:
        rollups.rebuild(c)
        assert _rollups(c) == incremental


@pg_only
def test_retention_falls_back_to_row_deletes_when_a_partition_is_busy(
    empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long reader holds a month's partition: the drop gives up after LOCK_TIMEOUT instead of
    queueing every query behind it, the rows go row by row (same count), and the next prune
    drops the emptied partition."""
    engine = empty_engine
    upgrade(engine)
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "200ms")
    now = datetime(2162, 6, 15, tzinfo=UTC)
    with engine.begin() as c:
        partitions.ensure_partitions(c, date(2162, 2, 1), date(2162, 6, 1))
        workspace(c)
        upsert_usage(c, [record(date(2162, 2, d), 10) for d in (3, 4, 5)])
    with engine.connect() as reader:
        tx = reader.begin()
        reader.execute(text("SELECT count(*) FROM usage_records_request_p216202")).scalar_one()
        busy = prune(engine, retention_days=50, now=now)
        tx.rollback()
    assert busy.records == 3
    with engine.connect() as c:
        assert "usage_records_request_p216202" in {p.name for p in partitions.list_partitions(c)}
        assert _where(c, "usage_records", "granularity = 'request'") == {}
    assert prune(engine, retention_days=50, now=now).records == 0
    with engine.connect() as c:
        names = {p.name for p in partitions.list_partitions(c)}
    assert "usage_records_request_p216202" not in names


def _hold_and_run(engine: Engine, held: list[Any], other: list[Any]) -> dict[str, Any]:
    """Upsert ``held`` in an open transaction, run ``other`` in a thread; return what happened.

    ``waited``: whether the thread waited on an advisory lock before ``held`` committed (polled
    until it either waits or finishes); ``b``: the thread's counts.
    """
    out: dict[str, Any] = {}
    waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    with engine.connect() as a:
        tx = a.begin()
        upsert_usage(a, held)

        def run() -> None:
            with engine.begin() as b:
                out["b"] = upsert_usage(b, other)

        t = threading.Thread(target=run)
        t.start()
        with engine.connect() as watch:
            deadline = time.monotonic() + 30
            while t.is_alive() and watch.execute(waiting).scalar_one() == 0:
                assert time.monotonic() < deadline, watch.execute(
                    text(
                        "SELECT wait_event, left(query, 120) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock'"
                    )
                ).all()
                time.sleep(0.01)
            out["waited"] = t.is_alive()
        tx.commit()
        t.join(30)
    return out


@pg_only
def test_writers_of_different_records_do_not_wait_for_each_other(engine: Engine) -> None:
    with engine.begin() as c:
        workspace(c)
    day = date(2026, 11, 20)
    # Other models and teams: writers of the same rollup cell wait on its row, locks or not.
    others = [
        record(day, 2, model="gpt-4o-mini", team_id="t2"),
        record(day, 3, model="o3", team_id="t3"),
    ]
    out = _hold_and_run(engine, [record(day, 1, team_id="t1")], others)
    assert out["waited"] is False
    assert (out["b"].inserted, out["b"].updated) == (2, 0)


@pg_only
def test_a_large_batch_locks_its_whole_workspace_and_source(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past KEY_LOCKS_MAX records a batch takes one exclusive (workspace, source) lock instead of
    one per record: it waits for a writer of other records of that source, and stays correct."""
    import metis.ledger.upsert as upsert_module

    monkeypatch.setattr(upsert_module, "KEY_LOCKS_MAX", 2)
    with engine.begin() as c:
        workspace(c)
    day = date(2026, 11, 21)
    big = [record(day, 10 + i) for i in range(3)]
    out = _hold_and_run(engine, [record(day, 1)], big)
    assert out["waited"] is True
    assert (out["b"].inserted, out["b"].updated) == (3, 0)
    with engine.connect() as c:
        n = c.execute(select(func.count()).select_from(usage_records)).scalar_one()
    assert n == 4


@pg_only
def test_a_partial_day_analytics_read_touches_only_its_months_partitions(engine: Engine) -> None:
    """The raw read of a window's partial edge (`metis.analytics.query`) states the day range
    too, so it is planned against that month's partitions, not every month's index."""
    from metis.analytics.params import Filters
    from metis.analytics.query import _raw_query

    with engine.begin() as c:
        partitions.ensure_partitions(c, date(2026, 9, 1), date(2026, 12, 1))
    lo, hi = datetime(2026, 11, 3, 5, tzinfo=UTC), datetime(2026, 11, 3, 17, tzinfo=UTC)
    with engine.connect() as c:
        q = _raw_query((lo, hi), Filters(), ["model"], "postgresql")
        compiled = q.compile(dialect=c.dialect, compile_kwargs={"render_postcompile": True})
        found = _plan_relations(c, str(compiled), compiled.params)
    assert found == {"usage_records_request_p202611", "usage_records_agg_p202611"}
