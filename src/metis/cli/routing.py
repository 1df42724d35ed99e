"""``metis routing``: validate the routing rules file before the gateway loads it."""

from pathlib import Path

import typer

from metis.cli._common import console, err_console, print_json, print_table, settings
from metis.errors import MetisError
from metis.gateway.routing.rules import Rule, RuleSet, Target, parse_rules
from metis.money import from_nanousd
from metis.pricing import has_price

app = typer.Typer(help="Routing rules (soft caps, model routing, fallbacks).", no_args_is_help=True)


def _unpriced(rules: RuleSet) -> list[str]:
    """Targets without a known price: often a typo; under a hard cap they are refused."""
    out = []
    for r in rules.rules:
        for where, t in [("use", r.use)] + [("fallbacks", f) for f in r.fallbacks]:
            if not has_price(t.provider, t.model):
                out.append(f'rule "{r.name}" {where}: no known price for {t} (a typo?)')
    for model, targets in rules.model_fallbacks.items():
        for t in targets:
            if not has_price(t.provider, t.model):
                out.append(f"fallbacks.{model}: no known price for {t} (a typo?)")
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
