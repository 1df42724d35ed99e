"""``metis ingest token|push|hermes-import``: the plugin-fed (push) side of ingestion.

`attach` adds these commands to the ``metis ingest`` group (cli/ingest.py).
"""

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from metis.cli import resolve
from metis.cli._common import (
    WIDE_HELP,
    console,
    err_console,
    print_json,
    print_table,
    transaction,
)
from metis.errors import MetisError
from metis.ingest import tokens
from metis.ingest.hermes_import import import_state_db
from metis.ingest.push import MAX_ITEMS, PushResult, PushTarget, RejectedItem, ingest_items
from metis.jsonutil import DECODE_ERRORS
from metis.timeutil import iso

token_app = typer.Typer(
    help="Ingest tokens: what agent plugins push usage with.", no_args_is_help=True
)


@token_app.command("create")
def token_create(
    workspace: str = typer.Option(..., "--workspace", help="Workspace id, name or path."),
    name: str = typer.Option(..., "--name", help="A label (which agent or machine uses it)."),
    source: str = typer.Option(
        tokens.DEFAULT_SOURCE,
        "--source",
        help="Source its pushes to /v1/ingest/usage are stored under "
        "(telemetry sent to /otel is stored under its own source: claude_code, codex, otel_genai).",
    ),
    via_gateway: bool = typer.Option(
        False,
        "--via-gateway",
        help="The agent holding it sends its calls through this gateway: "
        "items that name no base URL are not counted again (docs/ingest-otel.md).",
    ),
    user: str | None = typer.Option(
        None, "--user", help="User (id or alias) its items belong to when they name nobody known."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Create an ingest token and print its secret once (only its SHA-256 is stored).

    Examples:

        metis ingest token create --workspace acme --name laptop-hermes

        metis ingest token create --workspace acme --name ada-claude --user ada --via-gateway
    """
    with transaction() as conn:
        tok, secret = tokens.create_token(
            conn,
            resolve.workspace(conn, workspace).id,
            name,
            source,
            via_gateway=via_gateway,
            user=user,
        )
    if as_json:
        print_json(
            {
                "id": tok.id,
                "name": tok.name,
                "source": tok.source,
                "via_gateway": tok.via_gateway,
                "user_id": tok.user_id,
                "token": secret,
            }
        )
        return
    console.print(f"created ingest token {tok.id} ({tok.name}, source {tok.source})")
    console.print("token (shown once, store it now):")
    typer.echo(secret)


@token_app.command("list")
def token_list(
    workspace: str | None = typer.Option(None, "--workspace", help="Only this workspace."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
) -> None:
    """List ingest tokens (ids, names, prefixes; never secrets).

    Example:

        metis ingest token list --json
    """
    with transaction() as conn:
        ws_id = resolve.workspace(conn, workspace).id if workspace else None
        toks = tokens.list_tokens(conn, ws_id)
        ws_names = resolve.workspace_names(conn)
    rows = [
        {
            "id": t.id,
            "workspace_id": t.workspace_id,
            "workspace_name": ws_names.get(t.workspace_id),
            "name": t.name,
            "source": t.source,
            "prefix": t.display_prefix,
            "via_gateway": t.via_gateway,
            "user_id": t.user_id,
            "created_at": iso(t.created_at),
            "revoked_at": iso(t.revoked_at) if t.revoked_at else None,
        }
        for t in toks
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no ingest tokens yet: create one with `metis ingest token create`")
        return
    print_table(
        "ingest tokens",
        ["id", "workspace", "name", "source", "prefix", "via gw", "user", "created", "revoked"],
        [
            [
                r["id"],
                r["workspace_name"] or r["workspace_id"],
                r["name"],
                r["source"],
                r["prefix"],
                r["via_gateway"],
                r["user_id"],
                r["created_at"],
                r["revoked_at"],
            ]
            for r in rows
        ],
        wide=wide,
    )


@token_app.command("set")
def token_set(
    token_id: str = typer.Argument(..., help="Token id (itok_…)."),
    via_gateway: bool | None = typer.Option(
        None,
        "--via-gateway/--direct",
        help="Whether the agent holding it sends its calls through this gateway.",
    ),
    user: str | None = typer.Option(None, "--user", help="Bind to this user (id or alias)."),
    no_user: bool = typer.Option(False, "--no-user", help="Bind to no user."),
) -> None:
    """Change a token's settings; they apply to items pushed from now on.

    Example:

        metis ingest token set itok_01J... --via-gateway --user ada
    """
    if user is not None and no_user:
        raise MetisError("give --user or --no-user, not both")
    kw: dict[str, Any] = {"via_gateway": via_gateway}
    if user is not None or no_user:
        kw["user"] = user
    with transaction() as conn:
        tok = tokens.set_routing(conn, token_id, **kw)
    console.print(
        f"ingest token {tok.id}: via_gateway={'yes' if tok.via_gateway else 'no'}, "
        f"user={tok.user_id or '-'}"
    )


@token_app.command("revoke")
def token_revoke(token_id: str = typer.Argument(..., help="Token id (itok_…) or name.")) -> None:
    """Revoke an ingest token; pushes with it get 401 from then on.

    Example:

        metis ingest token revoke laptop-hermes
    """
    with transaction() as conn:
        tok = tokens.revoke_token(conn, resolve.ingest_token(conn, token_id).id)
    console.print(f"revoked ingest token {tok.id} ({tok.name})")


_decoder = msgspec.json.Decoder(float_hook=Decimal)


def push(
    file: Annotated[Path, typer.Argument(help="JSON Lines file: one usage item per line.")],
    workspace: str = typer.Option(..., "--workspace", help="Workspace id, name or path."),
    source: str = typer.Option(tokens.DEFAULT_SOURCE, "--source", help="Source to store under."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-item result as JSON."),
) -> None:
    """Push usage items from a JSONL file, as POST /v1/ingest/usage does.

    Items follow the UsageItem schema (see docs and /openapi.json). Valid items
    are stored even when others are rejected; the exit code is 1 when any
    item was rejected. Re-running the same file changes nothing.

    Example:

        metis ingest push usage.jsonl --workspace acme
    """
    if source in tokens.RESERVED_SOURCES or not tokens.SOURCE_RE.match(source):
        raise MetisError(f"invalid or reserved source {source!r}")
    try:
        lines = file.read_bytes().splitlines()
    except OSError as exc:
        raise MetisError(f"cannot read {file}: {exc.strerror}") from None
    raw: list[tuple[int, Any]] = []
    bad: list[RejectedItem] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw.append((n, _decoder.decode(line)))
        except DECODE_ERRORS as exc:
            bad.append(RejectedItem(index=n, idempotency_key=None, reasons=[f"bad JSON: {exc}"]))
    total = PushResult(rejected=bad)
    with transaction() as conn:
        ws = resolve.workspace(conn, workspace)
        target = PushTarget(ws.id, source, "cli:push")
        for i in range(0, len(raw), MAX_ITEMS):
            chunk = raw[i : i + MAX_ITEMS]
            res = ingest_items(conn, target, [item for _, item in chunk])
            total.accepted += res.accepted
            total.unchanged += res.unchanged
            total.revised += res.revised
            for rej in res.rejected:  # report file line numbers, not chunk indexes
                rej.index = chunk[rej.index][0]
                total.rejected.append(rej)
    total.rejected.sort(key=lambda r: r.index)
    if as_json:
        print_json(total.model_dump())
    else:
        console.print(
            f"{len(total.accepted)} accepted, {len(total.unchanged)} unchanged, "
            f"{len(total.revised)} revised, {len(total.rejected)} rejected"
        )
        for r in total.rejected:
            err_console.print(f"line {r.index}: {'; '.join(r.reasons)}")
    if total.rejected:
        raise typer.Exit(1)


def hermes_import(
    state_db: Annotated[Path, typer.Option("--state-db", help="Path to Hermes' state.db.")],
    workspace: str = typer.Option(..., "--workspace", help="Workspace id, name or path."),
) -> None:
    """Import past usage from a Hermes Agent state.db as per-session rollups.

    Reads its session_model_usage table read-only. Re-running is a no-op;
    sessions the live plugin already reported call by call are skipped.

    Example:

        metis ingest hermes-import --state-db ~/.hermes/state.db --workspace acme
    """
    with transaction() as conn:
        ws = resolve.workspace(conn, workspace)
        res = import_state_db(conn, state_db.expanduser(), ws.id)
    c = res.counts
    console.print(
        f"{res.rows} session usage rows: {c.inserted} imported, {c.updated} revised, "
        f"{c.unchanged} unchanged, {res.skipped_live} skipped (already reported live)"
    )


def attach(app: typer.Typer) -> None:
    """Add ``token``, ``push`` and ``hermes-import`` to the ``metis ingest`` group."""
    app.add_typer(token_app, name="token")
    app.command("push")(push)
    app.command("hermes-import")(hermes_import)
