"""``metis routing``: validate the routing rules file before the gateway loads it."""

from pathlib import Path

import typer

from metis.cli import resolve
from metis.cli._common import console, err_console, print_json, print_table, settings
from metis.errors import MetisError
from metis.gateway.routing.rules import Rule, RuleSet, Target, parse_rules
from metis.money import from_nanousd
from metis.pricing import has_price

app = typer.Typer(help="Routing rules (soft caps, model routing, fallbacks).", no_args_is_help=True)


def _priced(t: Target) -> bool:
    from metis.gateway.upstreams.directory import builtin_price_provider

    return has_price(builtin_price_provider(t.provider), t.model, name=t.provider)


def _unpriced(rules: RuleSet) -> list[str]:
    """Targets without a known price: often a typo; under a hard cap they are refused.

    Priced as the provider's name implies (its family's or preset's genai-prices id, or
    the prices file); a credential naming another genai-prices id is not known here
    (`metis prices check` reads the workspaces' credentials)."""
    out = []
    for r in rules.rules:
        for where, t in [("use", r.use)] + [("fallbacks", f) for f in r.fallbacks]:
            if not _priced(t):
                out.append(f'rule "{r.name}" {where}: no known price for {t} (a typo?)')
    for model, targets in rules.model_fallbacks.items():
        for t in targets:
            if not _priced(t):
                out.append(f"fallbacks.{model}: no known price for {t} (a typo?)")
    for name, t in rules.aliases.items():
        if not _priced(t):
            out.append(f"aliases.{name}: no known price for {t} (a typo?)")
    return out


def _names(targets: tuple[Target, ...]) -> str:
    return ", ".join(str(t) for t in targets)


def _when_text(rule: Rule) -> str:
    parts = []
    for field in rule.when.__struct_fields__:
        value = getattr(rule.when, field)
        if value is None:
            continue
        if field.endswith("_exceeds"):
            parts.append(f"{field}_usd > {from_nanousd(value)}")
        elif isinstance(value, frozenset):
            parts.append(f"{field} in [{', '.join(sorted(value))}]")
        else:
            parts.append(f"{field} = {value}")
    return " and ".join(parts) or "always"


@app.command("check")
def check(
    file: str | None = typer.Argument(
        None, help="Rules file to check (default: METIS_ROUTING_FILE or $METIS_HOME/routing.yaml)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the parsed rules as JSON."),
) -> None:
    """Validate a routing rules file and show the rules it defines, in evaluation order.

    Exits non-zero with the rule index, name and field when the file is malformed
    (a running gateway keeps its last good rules in that case).

    Example:

        metis routing check ~/.metis/routing.yaml
    """
    path = Path(file).expanduser() if file is not None else settings().effective_routing_file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MetisError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MetisError(f"{path}: cannot read: {exc}") from None
    rules = parse_rules(text, str(path))
    ordered = [r for r in rules.rules if r.workspace] + [r for r in rules.rules if not r.workspace]
    warnings = _unpriced(rules)
    if json_out:
        print_json(
            {
                "file": str(path),
                "rules": [
                    {
                        "name": r.name,
                        "workspace": r.workspace,
                        "when": _when_text(r),
                        "use": str(r.use),
                        "fallbacks": [str(t) for t in r.fallbacks],
                        "reason": r.reason,
                    }
                    for r in ordered
                ],
                "model_fallbacks": {
                    k: [str(t) for t in v] for k, v in rules.model_fallbacks.items()
                },
                "warnings": warnings,
            }
        )
        return
    console.print(
        f"ok: {path}: {len(rules.rules)} rules, {len(rules.model_fallbacks)} model fallback entries"
    )
    if ordered:
        print_table(
            "rules (evaluation order: workspace-scoped first; first match wins)",
            ["name", "workspace", "when", "use", "fallbacks"],
            [
                [
                    r.name,
                    r.workspace or "*",
                    _when_text(r),
                    str(r.use),
                    _names(r.fallbacks),
                ]
                for r in ordered
            ],
        )
    for w in warnings:
        err_console.print(f"warning: {w}")


@app.command("explain")
def explain(
    key: str = typer.Option(
        ..., "--key", help="The gateway key the request uses: id (key_…), name or prefix."
    ),
    model: str = typer.Option(..., "--model", help="The model the client asks for."),
    shape: str = typer.Option(
        "openai", "--shape", help="Inbound shape: openai, anthropic or gemini."
    ),
    file: str | None = typer.Option(None, "--file", help="Rules file (default: configured)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show how the gateway would route a request of KEY for MODEL right now.

    Uses the rules file and the spend settled in the database now (today's and
    this month's counters of the key, its user and its team), the same values
    a gateway process routes on (it refreshes them every second).

    Example:

        metis routing explain --key alice-laptop --model gpt-4o --shape openai
    """
    from metis.cli._common import transaction
    from metis.gateway.plan import PROVIDER_OF_SHAPE
    from metis.gateway.routing.engine import RouteContext, decide
    from metis.identity.auth import load_key_snapshots
    from metis.ledger.counters import read_counter
    from metis.timeutil import day_key, month_key, utcnow
    from metis.workspaces import get_workspace

    if shape not in PROVIDER_OF_SHAPE:
        raise MetisError(f"--shape must be openai, anthropic or gemini, got {shape!r}")
    path = Path(file).expanduser() if file is not None else settings().effective_routing_file
    try:
        rules = parse_rules(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        rules = parse_rules("schema_version: 1\n", str(path))
    now = utcnow()
    seen: dict[str, int] = {}
    with transaction() as conn:
        key_id = resolve.key(conn, key).id
        snap = next((s for s in load_key_snapshots(conn).values() if s.key_id == key_id), None)
        if snap is None:
            raise MetisError(
                f"gateway key {key!r} ({key_id}) cannot make requests: it is revoked, "
                "or its user or team is disabled"
            )
        ws = get_workspace(conn, snap.workspace_id)

        def spent(scope: str, scope_id: str) -> int:
            period = month_key(now) if scope == "team_monthly" else day_key(now)
            seen[scope] = read_counter(conn, (scope, scope_id, period))[0]
            return seen[scope]

        ctx = RouteContext(
            model=model,
            inbound_shape=shape,
            workspace_refs=frozenset(x for x in (ws.id, ws.name, ws.path) if x),
            key_id=snap.key_id,
            user_id=snap.user_id,
            team_id=snap.team_id,
        )
        d = decide(rules, ctx, Target(PROVIDER_OF_SHAPE[shape], model), spent)
        who = {
            "key": f"{snap.name} ({snap.key_id})",
            "workspace": f"{ws.name} ({ws.id})",
            "user": f"{resolve.user(conn, snap.user_id).alias} ({snap.user_id})"
            if snap.user_id
            else None,
            "team": f"{resolve.team(conn, snap.team_id).name} ({snap.team_id})"
            if snap.team_id
            else None,
        }
    spend = {k: from_nanousd(v) for k, v in seen.items()}
    if json_out:
        print_json(
            {
                "key_id": snap.key_id,
                "key_name": snap.name,
                "rule": d.rule,
                "reason": d.reason,
                "candidates": d.candidate_names,
                "spend_usd": spend,
            }
        )
        return
    console.print(", ".join(f"{k} {v}" for k, v in who.items() if v))
    console.print(f"rule: {d.rule or '(none: the request keeps its own model)'}")
    console.print(f"reason: {d.reason}")
    console.print(f"candidates: {' -> '.join(d.candidate_names)}")
    for scope, usd in spend.items():
        console.print(f"spend read: {scope} = ${usd}")
