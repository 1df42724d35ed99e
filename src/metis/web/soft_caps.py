"""Soft caps for the dashboard: the spend thresholds of the routing rules, read from routing.yaml.

Hard caps live on teams and keys and refuse requests; soft caps are routing
rules (docs/routing.md) whose spend predicates reroute to cheaper models.
Both are budgets a person wants to see side by side, so the pages show each
team's (and key's) soft caps next to its hard caps, read here from the same
file the gateway loads (``METIS_ROUTING_FILE`` or ``$METIS_HOME/routing.yaml``).
A file that does not parse is reported, not fatal: the gateway keeps its last
good rules, and the page says the file is broken.
"""

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from metis.config import get_settings
from metis.errors import MetisError
from metis.gateway.routing.rules import RuleSet, parse_rules
from metis.money import from_nanousd
from metis.web.tables import fmt_usd

# When field -> (who it caps, period)
PREDICATES: dict[str, tuple[str, str]] = {
    "team_cost_today_exceeds": ("team", "day"),
    "team_cost_month_exceeds": ("team", "month"),
    "user_cost_today_exceeds": ("user", "day"),
    "cost_today_exceeds": ("key", "day"),
}


@dataclass(frozen=True)
class SoftCap:
    """One spend predicate of one rule."""

    scope: str  # team | user | key
    period: str  # day | month
    threshold: Decimal
    rule: str
    use: str
    workspace: str | None  # the rule only applies to this workspace
    models: tuple[str, ...] | None  # ... and to these requested models
    others: bool  # the rule has more conditions

    def text(self) -> str:
        """``$2.00/day → openai:gpt-4o-mini (rule x; gpt-4o only)``."""
        cond = []
        if self.models:
            cond.append(", ".join(self.models) + " only")
        if self.workspace:
            cond.append(f"workspace {self.workspace}")
        if self.others:
            cond.append("more conditions")
        extra = "; ".join([f"rule {self.rule}", *cond])
        return f"{fmt_usd(self.threshold)}/{self.period} → {self.use} ({extra})"


def soft_caps(rules: RuleSet) -> list[SoftCap]:
    """Every spend predicate of ``rules``, in evaluation order."""
    out: list[SoftCap] = []
    for r in rules.rules:
        w = r.when
        spend = [(f, getattr(w, f)) for f in PREDICATES if getattr(w, f) is not None]
        models = (w.model,) if w.model else tuple(sorted(w.model_in)) if w.model_in else None
        for field, nanos in spend:
            scope, period = PREDICATES[field]
            out.append(
                SoftCap(
                    scope=scope,
                    period=period,
                    threshold=from_nanousd(int(nanos)),
                    rule=r.name,
                    use=str(r.use),
                    workspace=r.workspace or w.workspace,
                    models=models,
                    others=len(spend) > 1 or w.inbound_shape is not None,
                )
            )
    return out


def load() -> tuple[list[SoftCap], str | None]:
    """The configured file's soft caps, and an error to show when it does not parse."""
    path: Path = get_settings().effective_routing_file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        return [], f"cannot read {path}: {exc.strerror}"
    try:
        return soft_caps(parse_rules(text, str(path))), None
    except MetisError as exc:
        return [], exc.message


def of(caps: list[SoftCap], scope: str, period: str) -> list[SoftCap]:
    return [c for c in caps if c.scope == scope and c.period == period]


def thresholds(caps: list[SoftCap]) -> tuple[Decimal, ...]:
    """The distinct thresholds (ticks on cap bars: from there some requests are rerouted)."""
    return tuple(sorted({c.threshold for c in caps}))
