"""Choosing the chain of targets for one request.

`decide` walks the rules in order — rules scoped to the request's workspace
first, then global rules, each group in file order — and the first rule whose
``when`` predicates all hold wins: its ``use`` target, then its fallbacks,
then the model-level fallbacks of that target. When no rule matches, the
chain is the request's own model (``default``) plus its model-level fallbacks.

Spend predicates read a snapshot taken at request start (`SpendSnapshot`):
each value is read at most once per decision, from the gateway's in-memory
spend counters, and never updated mid-request. A request without a user (or
team) never matches a user (or team) predicate: there is nothing to cap.
Thresholds are strict: "exceeds" means spent > threshold.
"""

from collections.abc import Callable

import msgspec

from metis.gateway.routing.rules import Rule, RuleSet, Target, When

SpentReader = Callable[[str, str], int]
"""``(scope, scope_id) -> settled nano-USD this UTC day/month`` (the gateway's counters).

Scopes: ``key_daily``, ``user_daily``, ``team_daily``, ``team_monthly``.
"""


class RouteContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules may look at for one request."""

    model: str
    inbound_shape: str
    workspace_refs: frozenset[str] = frozenset()  # the workspace's id, name and path
    key_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None


class RouteDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The ordered candidates, the rule that chose them (None = default) and why."""

    candidates: tuple[Target, ...]
    rule: str | None
    reason: str

    @property
    def candidate_names(self) -> list[str]:
        return [str(t) for t in self.candidates]


class SpendSnapshot:
    """Spend values read lazily, once each, at request start."""

    __slots__ = ("_read", "_seen")

    def __init__(self, read: SpentReader) -> None:
        self._read = read
        self._seen: dict[tuple[str, str], int] = {}

    def get(self, scope: str, scope_id: str) -> int:
        key = (scope, scope_id)
        if key not in self._seen:
            self._seen[key] = self._read(scope, scope_id)
        return self._seen[key]


def _exceeds(snap: SpendSnapshot, scope: str, scope_id: str | None, limit: int | None) -> bool:
    if limit is None:
        return True
    if scope_id is None:
        return False
    return snap.get(scope, scope_id) > limit


def matches(when: When, ctx: RouteContext, snap: SpendSnapshot) -> bool:
    """Whether every predicate of ``when`` holds (cheap ones first)."""
    if when.model is not None and ctx.model != when.model:
        return False
    if when.model_in is not None and ctx.model not in when.model_in:
        return False
    if when.inbound_shape is not None and ctx.inbound_shape != when.inbound_shape:
        return False
    if when.workspace is not None and when.workspace not in ctx.workspace_refs:
        return False
    return (
        _exceeds(snap, "key_daily", ctx.key_id, when.cost_today_exceeds)
        and _exceeds(snap, "user_daily", ctx.user_id, when.user_cost_today_exceeds)
        and _exceeds(snap, "team_daily", ctx.team_id, when.team_cost_today_exceeds)
        and _exceeds(snap, "team_monthly", ctx.team_id, when.team_cost_month_exceeds)
    )


def _chain(first: Target, extra: tuple[Target, ...], rules: RuleSet) -> tuple[Target, ...]:
    out: list[Target] = []
    for t in (first, *extra, *rules.fallbacks_for(first)):
        if t not in out:
            out.append(t)
    return tuple(out)


def decide(rules: RuleSet, ctx: RouteContext, default: Target, spent: SpentReader) -> RouteDecision:
    """The route for ``ctx``: first matching rule, else ``default``."""
    snap = SpendSnapshot(spent)
    scoped: list[Rule] = []
    unscoped: list[Rule] = []
    for r in rules.rules:
        if r.workspace is None:
            unscoped.append(r)
        elif r.workspace in ctx.workspace_refs:
            scoped.append(r)
    for rule in (*scoped, *unscoped):
        if matches(rule.when, ctx, snap):
            return RouteDecision(
                candidates=_chain(rule.use, rule.fallbacks, rules),
                rule=rule.name,
                reason=rule.reason,
            )
    return RouteDecision(candidates=_chain(default, (), rules), rule=None, reason="default")
