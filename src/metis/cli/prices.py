"""``metis prices``: what prices each configured model (genai-prices, prices file, nothing)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import typer
from sqlalchemy import select

from metis.cli._common import console, print_json, print_table, ready_engine, settings
from metis.errors import MetisError

app = typer.Typer(
    help="Prices: what prices each configured model (genai-prices, the prices file).",
    no_args_is_help=True,
)


def _routing_targets() -> list[tuple[str, str, str]]:
    """(provider, model, where) of every target and alias of the routing rules file."""
    from metis.gateway.routing.rules import RoutingConfigError, parse_rules

    path = settings().effective_routing_file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise MetisError(f"{path}: cannot read: {exc}") from None
    try:
        rules = parse_rules(text, str(path))
    except RoutingConfigError as exc:
        raise MetisError(f"{exc.message} (fix it first: `metis routing check`)") from None
    out: list[tuple[str, str, str]] = []
    for r in rules.rules:
        out.append((r.use.provider, r.use.model, f"routing rule {r.name}"))
        out += [(t.provider, t.model, f"routing rule {r.name}") for t in r.fallbacks]
    for model, targets in rules.model_fallbacks.items():
        out += [(t.provider, t.model, f"routing fallbacks.{model}") for t in targets]
    for name, t in rules.aliases.items():
        out.append((t.provider, t.model, f"routing alias {name}"))
    return out


@app.command("check")
def check(
    workspace: str | None = typer.Option(None, "--workspace", "-w", help="Only this workspace."),
    days: int = typer.Option(
        30, "--days", min=0, max=3650, help="Also list models the gateway recorded in these days."
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any model is unpriced."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every configured model and what prices it.

    Configured models are the targets and aliases of the routing rules file,
    the entries of the prices file, models keys may call by ``provider/model``,
    and the models the gateway recorded in the last --days days. Each is shown
    with its provider (as configured in the workspace), the genai-prices
    provider id that prices it, and its price source: the genai-prices
    version and entry, the prices file, or *unpriced* (recorded with
    cost_source none, refused under a hard cap; never a silent $0). A
    malformed prices file is an error (exit 1).

    Example:

        metis prices check --workspace acme --strict
    """
    from metis import prices_file
    from metis.credentials import list_credentials
    from metis.db.tables import gateway_keys, usage_records
    from metis.gateway.upstreams.catalog import split_address
    from metis.gateway.upstreams.directory import builtin_price_provider
    from metis.pricing import price_source
    from metis.timeutil import utcnow
    from metis.workspaces import get_workspace, list_workspaces

    s = settings()
    path = prices_file.default_path()
    pf = prices_file.load(path)  # PricesFileError (a MetisError) when malformed
    prices_file.reset_cache()
    targets = _routing_targets()
    engine = ready_engine(s)
    try:
        with engine.connect() as conn:
            wss = [get_workspace(conn, workspace)] if workspace else list_workspaces(conn)
            ws_names = {w.id: w.name for w in wss}
            creds = [
                c for c in list_credentials(conn, purpose="inference") if c.workspace_id in ws_names
            ]
            keys = conn.execute(
                select(gateway_keys.c.workspace_id, gateway_keys.c.allowed_models).where(
                    gateway_keys.c.revoked_at.is_(None)
                )
            ).all()
            seen = conn.execute(
                select(
                    usage_records.c.workspace_id,
                    usage_records.c.provider,
                    usage_records.c.model_raw,
                )
                .where(
                    usage_records.c.source == "gateway",
                    usage_records.c.window_start >= utcnow() - timedelta(days=days),
                )
                .distinct()
            ).all()
    finally:
        engine.dispose()
    configured: dict[str, dict[str, Any]] = {}  # ws -> name -> credential
    for c in creds:
        configured.setdefault(c.workspace_id, {})[c.provider] = c
    rows: dict[tuple[str, str, str], set[str]] = {}

    def add(ws: str, provider: str, model: str, where: str) -> None:
        rows.setdefault((ws, provider, model), set()).add(where)

    for ws in ws_names:
        for provider, model, where in targets:
            add(ws, provider, model, where)
        if pf is not None:
            for e in pf.entries:
                if e.model != "*":
                    add(ws, e.provider, e.model, "prices file")
    for ws, allowed in keys:
        if ws not in ws_names:
            continue
        for m in allowed or ():
            addr = split_address(m) if isinstance(m, str) else None
            if addr is not None and addr[0] in configured.get(ws, {}):
                add(ws, addr[0], addr[1], "allowed_models of a key")
    for ws, provider, model in seen:
        if ws in ws_names:
            add(ws, provider, model, f"recorded (last {days} days)")
    out: list[dict[str, Any]] = []
    for (ws, provider, model), wheres in sorted(rows.items()):
        cred = configured.get(ws, {}).get(provider)
        pp = cred.effective_price_provider if cred is not None else builtin_price_provider(provider)
        source = price_source(pp, model, name=provider)
        out.append(
            {
                "workspace": ws_names[ws],
                "provider": provider,
                "family": cred.family if cred is not None else None,
                "price_provider": pp,
                "model": model,
                "priced_by": source,
                "configured": cred is not None,
                "from": sorted(wheres),
            }
        )
    unpriced = [r for r in out if r["priced_by"] == "unpriced"]
    if json_out:
        print_json(
            {
                "prices_file": str(path) if pf is not None else None,
                "prices_file_version": pf.version if pf is not None else None,
                "models": out,
                "unpriced": len(unpriced),
            }
        )
    else:
        console.print(
            f"prices file: {path} ({pf.version}, {len(pf.entries)} entries)"
            if pf is not None
            else f"prices file: {path} (none)"
        )
        if not out:
            console.print("no configured models: add routing targets or make calls first")
        else:
            print_table(
                "Configured models",
                ["workspace", "provider", "model", "priced by", "from"],
                [
                    (
                        r["workspace"],
                        r["provider"] + ("" if r["configured"] else " (no credential)"),
                        r["model"],
                        r["priced_by"],
                        ", ".join(r["from"]),
                    )
                    for r in out
                ],
            )
        console.print(f"{len(out)} models, {len(unpriced)} unpriced")
    if strict and unpriced:
        raise typer.Exit(1)
