"""``metis ingest sync|backfill|status``: the provider-pull side of ingestion.

`attach` adds these commands to the ``metis ingest`` group (cli/ingest.py).
"""

from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from metis.cli import resolve
from metis.cli._common import (
    WIDE_HELP,
    console,
    err_console,
    print_json,
    print_table,
    ready_engine,
    settings,
)
from metis.credentials import Credential, list_credentials
from metis.db.tables import ingest_runs, sync_cursors
from metis.ingest.log import use_cli_format
from metis.ingest.sync import CURSOR_STREAM, RunOutcome, WindowOutcome, run_sync
from metis.timeutil import iso
from metis.workspaces import list_workspaces


def _select(
    engine: Any, workspace: str | None, credential: str | None
) -> tuple[str | None, str | None]:
    """``--workspace``/``--credential`` as ids (names resolved, usage_admin credentials only)."""
    with engine.connect() as conn:
        ws_id = resolve.workspace(conn, workspace).id if workspace else None
        cred_id = (
            resolve.credential(conn, credential, purpose="usage_admin").id if credential else None
        )
    return ws_id, cred_id


def _ws_names(engine: Any) -> dict[str, str]:
    with engine.connect() as conn:
        return resolve.workspace_names(conn)


def _summary(o: RunOutcome) -> dict[str, Any]:
    return {
        "run_id": o.run_id,
        "credential_id": o.credential_id,
        "workspace_id": o.workspace_id,
        "provider": o.provider,
        "kind": o.kind,
        "status": o.status,
        "window_start": iso(o.window_start) if o.window_start else None,
        "window_end": iso(o.window_end) if o.window_end else None,
        "pages": o.pages,
        "stored": o.stored,
        "updated": o.updated,
        "unchanged": o.unchanged,
        "skipped": o.skipped,
        "removed": o.removed,
        "errors": o.errors,
        "duration_ms": o.duration_ms,
        "error": o.error_message,
        "unpriced_models": sorted(o.unpriced_models),
    }


def _report(outcomes: list[RunOutcome], json_out: bool, ws_names: dict[str, str]) -> None:
    if json_out:
        print_json(
            [{**_summary(o), "workspace_name": ws_names.get(o.workspace_id)} for o in outcomes]
        )
    else:
        if not outcomes:
            console.print("no usage_admin credentials to sync (see `metis provider-key add`)")
        for o in outcomes:
            console.print(
                f"{o.credential_id} ({ws_names.get(o.workspace_id, o.workspace_id)}/{o.provider}) "
                f"{o.kind} {o.status}: "
                f"stored {o.stored}, updated {o.updated}, unchanged {o.unchanged}, "
                f"skipped {o.skipped}, pages {o.pages}, errors {o.errors}"
            )
            if o.unpriced_models:
                console.print(
                    f"  warning: no provider cost and no known price for "
                    f"{', '.join(sorted(o.unpriced_models))} (recorded with cost_source none)"
                )
            if o.error_message:
                err_console.print(f"  {o.status}: {o.error_message}")
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def sync(
    workspace: str | None = typer.Option(None, "--workspace", "-w", help="Only this workspace."),
    credential: str | None = typer.Option(
        None, "--credential", help="Only this credential: id, provider, WORKSPACE/PROVIDER."
    ),
    days: int | None = typer.Option(
        None, "--days", min=1, max=400, help="Days to re-fetch, ending today (default 2)."
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print JSON run summaries (and log JSON lines on stderr)."
    ),
) -> None:
    """Pull recent provider usage and costs for every usage_admin key (or the ones named).

    Re-fetches today and yesterday by default (their buckets still change),
    plus any days since the last complete sync. Exits 1 if a run failed; a
    run skipped because another worker holds the key's lease is not a failure.

    Example:

        metis ingest sync --workspace acme --days 3
    """
    use_cli_format(json_lines=json_out)
    s = settings()
    engine = ready_engine(s)
    try:
        ws_id, cred_id = _select(engine, workspace, credential)
        outcomes = run_sync(engine, s, workspace=ws_id, credential=cred_id, kind="sync", days=days)
        ws_names = _ws_names(engine)
    finally:
        engine.dispose()
    _report(outcomes, json_out, ws_names)


def backfill(
    days: int = typer.Option(30, "--days", min=1, max=400, help="Days to walk, ending today."),
    workspace: str | None = typer.Option(None, "--workspace", "-w", help="Only this workspace."),
    credential: str | None = typer.Option(
        None, "--credential", help="Only this credential: id, provider, WORKSPACE/PROVIDER."
    ),
    refetch: bool = typer.Option(
        False, "--refetch", help="Fetch settled days again instead of skipping them."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON run summaries."),
) -> None:
    """Walk the last N days one UTC day at a time, committing each complete day.

    Prints a line per day (stored / updated / unchanged / skipped). Resumable:
    days already fetched after they settled (2 days after they ended) are
    skipped, so a rerun after an interruption continues where it stopped.

    Example:

        metis ingest backfill --days 30 --workspace acme
    """
    use_cli_format(json_lines=json_out)
    s = settings()
    engine = ready_engine(s)
    ws_id, cred_id = _select(engine, workspace, credential)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=json_out,
    )
    tasks: dict[str, Any] = {}

    def on_window(cred: Credential, w: WindowOutcome) -> None:
        if cred.id not in tasks:
            tasks[cred.id] = progress.add_task(f"{cred.id} ({cred.provider})", total=days)
        progress.advance(tasks[cred.id])
        if json_out:
            return
        if w.status == "ok":
            line = (
                f"stored {w.stored}, updated {w.updated}, unchanged {w.unchanged}, "
                f"skipped 0, pages {w.pages}"
            )
        elif w.status == "skipped":
            line = "skipped (already complete and settled)"
        else:
            line = f"FAILED: {w.error}"
        progress.console.print(f"{cred.id} {w.day.isoformat()}: {line}")

    try:
        with progress:
            outcomes = run_sync(
                engine,
                s,
                workspace=ws_id,
                credential=cred_id,
                kind="backfill",
                days=days,
                refetch=refetch,
                on_window=on_window,
            )
        ws_names = _ws_names(engine)
    finally:
        engine.dispose()
    _report(outcomes, json_out, ws_names)


def status(
    workspace: str | None = typer.Option(None, "--workspace", "-w", help="Only this workspace."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
) -> None:
    """Per usage_admin key: last success, cursor, last run, last error.

    Example:

        metis ingest status --json
    """
    s = settings()
    engine = ready_engine(s)
    try:
        with engine.connect() as conn:
            ws_id = resolve.workspace(conn, workspace).id if workspace else None
            names = {w.id: w.name for w in list_workspaces(conn)}
            creds = list_credentials(conn, workspace_id=ws_id, purpose="usage_admin")
            rows = []
            for c in creds:
                cur = (
                    conn.execute(
                        select(sync_cursors).where(
                            sync_cursors.c.credential_id == c.id,
                            sync_cursors.c.stream == CURSOR_STREAM,
                        )
                    )
                    .mappings()
                    .first()
                )
                run = (
                    conn.execute(
                        select(ingest_runs)
                        .where(ingest_runs.c.credential_id == c.id)
                        .order_by(ingest_runs.c.started_at.desc(), ingest_runs.c.id.desc())
                        .limit(1)
                    )
                    .mappings()
                    .first()
                )

                def t(v: Any) -> str | None:
                    return iso(v) if v is not None else None

                rows.append(
                    {
                        "credential_id": c.id,
                        "workspace_id": c.workspace_id,
                        "workspace": names.get(c.workspace_id),
                        "provider": c.provider,
                        "last_success_at": t(cur["last_success_at"]) if cur else None,
                        "complete_through": t(cur["complete_through"]) if cur else None,
                        "last_error": cur["last_error"] if cur else None,
                        "last_error_at": t(cur["last_error_at"]) if cur else None,
                        "last_run_id": run["id"] if run else None,
                        "last_run_kind": run["kind"] if run else None,
                        "last_run_status": run["status"] if run else None,
                        "last_run_started_at": t(run["started_at"]) if run else None,
                    }
                )
    finally:
        engine.dispose()
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("no usage_admin credentials (see `metis provider-key add`)")
        return
    print_table(
        "Provider sync status",
        [
            "credential",
            "workspace",
            "provider",
            "last success",
            "complete through",
            "last run",
            "last error",
        ],
        [
            (
                r["credential_id"],
                r["workspace"],
                r["provider"],
                r["last_success_at"] or "never",
                r["complete_through"] or "-",
                f"{r['last_run_kind']} {r['last_run_status']}" if r["last_run_id"] else "-",
                r["last_error"] or "",
            )
            for r in rows
        ],
        wide=wide,
    )


def attach(app: typer.Typer) -> None:
    """Register sync/backfill/status on the ``metis ingest`` group."""
    app.command("sync")(sync)
    app.command("backfill")(backfill)
    app.command("status")(status)
