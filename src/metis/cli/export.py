"""``metis export``: usage and audit exports (CSV or JSON Lines), FOCUS (CSV or Parquet)."""

import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from metis.analytics import exports, focus, focus_encode
from metis.analytics.params import parse_window, resolve_filters
from metis.analytics.views import parse_view, query_window
from metis.cli._common import err_console, ready_engine
from metis.errors import ValidationError

app = typer.Typer(
    help="Export usage, the audit log, and FOCUS for FinOps tools.", no_args_is_help=True
)

FromOpt = typer.Option(
    None, "--from", help="ISO 8601 UTC start, inclusive (default: 6 days before today)."
)
ToOpt = typer.Option(None, "--to", help="ISO 8601 UTC end, exclusive (default: tomorrow 00:00Z).")
FormatOpt = typer.Option(
    None,
    "--format",
    help="csv or jsonl; default: from the --output file's extension (.jsonl, .ndjson, .csv), "
    "else csv.",
)
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
GroupByOpt = typer.Option(None, "--group-by", help="Totals per day,user,team,model,… not rows.")
OutputOpt = typer.Option(None, "--output", "-o", help="Write here (mode 0600); default stdout.")


def output_format(fmt: str | None, output: Path | None) -> exports.Format:
    """The format asked for, else the one the output file's name says, else CSV.

    A ``--format`` that contradicts the file's extension is an error: a file
    named ``audit.jsonl`` holding CSV is a trap for whoever reads it next.
    """
    by_name = EXTENSIONS.get(output.suffix.lower()) if output is not None else None
    if fmt is None:
        return exports.parse_format(by_name or "csv")
    chosen = exports.parse_format(fmt)
    if by_name is not None and by_name != chosen:
        raise ValidationError(
            f"--format {chosen} but {output} is named like a {by_name} file: "
            "drop --format, or change the file name"
        )
    return chosen


def _emit(chunks: Iterator[bytes], output: Path | None) -> None:
    if output is None:
        for c in chunks:
            sys.stdout.buffer.write(c)
        sys.stdout.flush()
        return
    n = exports.write_private(output, chunks)
    err_console.print(f"wrote {n} bytes to {output}")


@app.command("usage")
def usage(
    from_: str | None = FromOpt,
    to: str | None = ToOpt,
    fmt: str | None = FormatOpt,
    group_by: list[str] | None = GroupByOpt,
    workspace: str | None = typer.Option(None, "--workspace"),
    user: str | None = typer.Option(None, "--user"),
    team: str | None = typer.Option(None, "--team"),
    source: str | None = typer.Option(None, "--source"),
    view: str | None = typer.Option(None, "--view", help="reconciled (default) or raw."),
    output: Path | None = OutputOpt,
) -> None:
    """Export usage in a view: grouped totals, or every row with its class; exact USD.

    Grouped (--group-by) rows are the figures of `metis report cost` and
    /analytics/cost for the same window and view. Ungrouped, every stored
    row comes with its reconciliation `class` and `counted`, plus (reconciled
    view) the `unattributed`/`drift_adjustment` rows: the counted rows add up
    to the view's total. The resolved window is printed on stderr.

    Example:

        metis export usage --from 2026-11-01 --to 2026-12-01 --format csv --output nov.csv
    """
    f = output_format(fmt, output)
    groups = exports.parse_group_by(group_by)
    v = parse_view(view)
    window = query_window(from_, to, v)
    err_console.print(f"usage, [{window.as_json()['start']}, {window.as_json()['end']}) ({v} view)")
    engine = ready_engine()
    try:
        with engine.connect() as conn:
            filters = resolve_filters(
                conn, workspace=workspace, user=user, team=team, source=source
            )
        _emit(exports.usage_export(engine, window, filters, f, groups, v), output)
    finally:
        engine.dispose()


@app.command("audit")
def audit(
    from_: str | None = FromOpt,
    to: str | None = ToOpt,
    fmt: str | None = FormatOpt,
    with_names: bool = typer.Option(
        False, "--with-names", help="Join user/team/key display names (ids only by default)."
    ),
    workspace: str | None = typer.Option(None, "--workspace"),
    output: Path | None = OutputOpt,
) -> None:
    """Export the audit log: keys issued/revoked, quota exceeded, who paid what per day.

    Example:

        metis export audit --from 2026-11-01 --with-names -o audit.jsonl   # JSON Lines
    """
    f = output_format(fmt, output)
    window = parse_window(from_, to)
    err_console.print(f"audit, [{window.as_json()['start']}, {window.as_json()['end']})")
    engine = ready_engine()
    try:
        with engine.connect() as conn:
            filters = resolve_filters(conn, workspace=workspace)
        _emit(exports.audit_export(engine, window, filters, f, with_names), output)
    finally:
        engine.dispose()


FOCUS_EXTENSIONS = {".csv": "csv", ".parquet": "parquet"}


def focus_format(fmt: str | None, output: Path | None) -> focus.FocusFormat:
    """``--format``, else the ``--output`` file's extension (.csv, .parquet), else CSV;
    a ``--format`` contradicting the extension is an error (as for `output_format`)."""
    by_name = FOCUS_EXTENSIONS.get(output.suffix.lower()) if output is not None else None
    chosen = focus.parse_focus_format(fmt or by_name or "csv")
    if fmt is not None and by_name is not None and by_name != chosen:
        raise ValidationError(
            f"--format {chosen} but {output} is named like a {by_name} file: "
            "drop --format, or change the file name"
        )
    return chosen


@app.command("focus")
def focus_cmd(
    from_: str | None = FromOpt,
    to: str | None = ToOpt,
    fmt: str | None = typer.Option(
        None, "--format", help="csv or parquet; default: from --output's extension, else csv."
    ),
    version: str | None = typer.Option(
        None, "--version", help="FOCUS version: 1.2 (default) or 1.0."
    ),
    output: Path | None = OutputOpt,
) -> None:
    """Export the reconciled ledger as FOCUS rows for FinOps tools (CSV or Parquet).

    One row per day, provider, model, workspace, team, user, key and charge
    kind; provider spend no key or plugin attributed comes as its own
    `unattributed` rows, so BilledCost adds up to `metis report cost` (and
    /analytics/cost) for the same whole UTC days. Re-running gives the same
    bytes. The column mapping is in docs/exports.md.

    Example:

        metis export focus --from 2026-11-01 --to 2026-12-01 --format parquet --output nov.parquet
    """
    v = focus.parse_version(version)
    f = focus_format(fmt, output)
    window = query_window(from_, to, "reconciled")
    if f == "parquet":
        focus_encode.arrow_schema(())  # a missing pyarrow fails before anything is written
        if output is None and sys.stdout.isatty():
            raise ValidationError("Parquet is binary: give --output FILE (or redirect stdout)")
    err_console.print(focus_encode.describe(window, v))
    engine = ready_engine()
    try:
        _emit(focus_encode.focus_export(engine, window, v, f), output)
    finally:
        engine.dispose()
