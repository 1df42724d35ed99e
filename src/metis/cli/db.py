"""``metis db``: schema migrations and maintenance."""

import typer

from metis.cli._common import console, settings
from metis.db.engine import make_engine
from metis.db.migrate import current_revision, head_revision
from metis.db.migrate import upgrade as run_upgrade

app = typer.Typer(help="Database schema and maintenance.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Migrate the database to the schema this Metis needs (a no-op when current).

    Example:

        METIS_DATABASE_URL=postgresql://metis@db/metis metis db upgrade
    """
    engine = make_engine(settings=settings())
    try:
        before, head = current_revision(engine), head_revision()
        if before == head:
            console.print(f"database is at {head}; nothing to do")
            return
        run_upgrade(engine)
        console.print(f"database migrated {before or 'empty'} -> {head}")
    finally:
        engine.dispose()


@app.command()
def status() -> None:
    """Show the schema revision of the database and the one this Metis needs.

    Example:

        metis db status
    """
    engine = make_engine(settings=settings())
    try:
        console.print(f"database: {current_revision(engine) or 'empty'}  code: {head_revision()}")
    finally:
        engine.dispose()


@app.command("rebuild-rollups")
def rebuild_rollups(
    from_: str | None = typer.Option(
        None, "--from", help="First UTC day to rebuild (YYYY-MM-DD); default: all."
    ),
    to: str | None = typer.Option(None, "--to", help="Day after the last one (exclusive)."),
) -> None:
    """Recompute the daily analytics rollups (and gateway latency histograms) from raw records.

    The write path keeps rollups current; run this after restoring a backup,
    after editing usage_records by hand, or to verify them. It runs in one
    transaction, so analytics never see half-built rollups.

    Example:

        metis db rebuild-rollups --from 2026-11-01 --to 2026-12-01
    """
    from datetime import date

    from metis.cli._common import transaction
    from metis.errors import ValidationError
    from metis.ledger.rollups import rebuild
    from metis.timeutil import OutOfRange, check_day

    def _day(v: str | None, flag: str) -> date | None:
        if v is None:
            return None
        try:
            return check_day(date.fromisoformat(v), flag)
        except OutOfRange as exc:
            raise ValidationError(str(exc)) from None
        except ValueError:
            raise ValidationError(f"{flag} must be a date like 2026-11-01, got {v!r}") from None

    start, end = _day(from_, "--from"), _day(to, "--to")
    from metis.ledger.prune import pruned_before

    with transaction() as conn:
        # Retention (issue 12): raw rows of pruned days are gone; their rollups are
        # the only record left and must not be rebuilt from nothing.
        floor = pruned_before(conn)
        if floor is not None and (start is None or start < floor):
            console.print(f"days before {floor.isoformat()} were pruned: their rollups are kept")
            start = floor
        if end is not None and start is not None and end <= start:
            n = 0
        else:
            n = rebuild(conn, start, end)
    console.print(f"rebuilt rollups: {n} rollup rows")


@app.command()
def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; delete nothing."),
    include_audit: bool = typer.Option(
        False, "--include-audit", help="Also delete old audit events (gateway.*)."
    ),
    retention_days: int | None = typer.Option(
        None,
        "--retention-days",
        min=1,
        max=73_049,  # metis.timeutil.MAX_SPAN_DAYS: 2000-01-01 .. 2200-01-01
        help="Override METIS_RETENTION_DAYS for this run.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Delete raw per-request records and events older than the retention window.

    The window is METIS_RETENTION_DAYS (or --retention-days): days before
    today minus that many are pruned. Daily rollups are kept, so analytics
    over pruned days still answer; audit events (gateway.*) are kept unless
    --include-audit; days inside the provider sync window are never pruned.

    Example:

        METIS_RETENTION_DAYS=90 metis db prune --dry-run
    """
    from metis.alerts.service import sync_window_days
    from metis.cli._common import print_json, ready_engine
    from metis.errors import ConfigError
    from metis.ledger.prune import prune as run_prune

    s = settings()
    days = retention_days or s.retention_days
    if days is None:
        raise ConfigError(
            "no retention configured: set METIS_RETENTION_DAYS or pass --retention-days "
            "(by default Metis keeps everything)"
        )
    engine = ready_engine(s)
    try:
        res = run_prune(
            engine,
            retention_days=days,
            sync_window_days=sync_window_days(),
            include_audit=include_audit,
            dry_run=dry_run,
        )
    finally:
        engine.dispose()
    if as_json:
        print_json(
            {
                "cutoff": res.cutoff.isoformat(),
                "dry_run": res.dry_run,
                "include_audit": res.include_audit,
                "records": res.records,
                "events": res.events,
                "audit_events": res.audit_events,
                "deliveries": res.deliveries,
            }
        )
        return
    verb = "would delete" if res.dry_run else "deleted"
    console.print(
        f"{verb} {res.records} per-request records and {res.events} events "
        f"(of which {res.audit_events} audit) from before {res.cutoff.isoformat()}; "
        "daily rollups kept"
    )


@app.command("partitions")
def partitions_cmd(
    create_ahead: bool = typer.Option(
        False,
        "--create-ahead",
        help="First create this month's partitions and the next 3 months' (what the "
        "scheduler in metis serve does daily).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List the monthly partitions of usage_records and events (PostgreSQL).

    One line per partition: its parent, name, month (or DEFAULT) and row
    count estimate (pg_class.reltuples, -1 before the first ANALYZE). Rows
    in a DEFAULT partition belong to a month that had no partition when they
    were written; --create-ahead (or the scheduler) moves them when it
    creates that month. SQLite has no partitions: the list is empty.

    Example:

        metis db partitions --create-ahead
    """
    from sqlalchemy import text

    from metis.cli._common import print_json, ready_engine
    from metis.db import partitions
    from metis.timeutil import utcnow

    engine = ready_engine(settings())
    try:
        created = partitions.maintain(engine, utcnow().date()) if create_ahead else []
        with engine.connect() as conn:
            parts = partitions.list_partitions(conn)
            est = {
                str(n): int(t)
                for n, t in conn.execute(
                    text("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(:n)"),
                    {"n": [p.name for p in parts]},
                )
            } if parts else {}  # fmt: skip
    finally:
        engine.dispose()
    rows = [
        {
            "parent": p.parent,
            "name": p.name,
            "month": p.month.strftime("%Y-%m") if p.month else "DEFAULT",
            "rows_estimate": est.get(p.name, -1),
        }
        for p in parts
    ]
    if as_json:
        print_json({"created": created, "partitions": rows})
        return
    if engine.dialect.name != "postgresql":
        console.print("no partitions: only PostgreSQL databases are partitioned")
        return
    for name in created:
        console.print(f"created {name}")
    for r in rows:
        console.print(f"{r['parent']:<22} {r['name']:<32} {r['month']:<8} ~{r['rows_estimate']}")
