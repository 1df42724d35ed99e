"""Routing rules: which provider:model serves a request, with fallbacks.

`rules` parses and validates the YAML rules file, `engine.decide` picks the
ordered candidates for one request (first matching rule wins, workspace-scoped
rules before global ones, the request's own model otherwise), `watcher`
reloads the file on change and keeps the last good rules when it is malformed.
`fallback.should_fall_back` says which upstream failures move on to the next
candidate (429, 5xx, timeouts and connection errors; never other 4xx).
"""

from metis.gateway.routing.engine import (
    RouteContext,
    RouteDecision,
    SpendSnapshot,
    decide,
    matches,
)
from metis.gateway.routing.fallback import should_fall_back
from metis.gateway.routing.rules import (
    EMPTY,
    RoutingConfigError,
    Rule,
    RuleSet,
    Target,
    When,
    parse_rules,
    parse_target,
)
from metis.gateway.routing.watcher import RulesWatcher

__all__ = [
    "EMPTY",
    "RouteContext",
    "RouteDecision",
    "RoutingConfigError",
    "Rule",
    "RuleSet",
    "RulesWatcher",
    "SpendSnapshot",
    "Target",
    "When",
    "decide",
    "matches",
    "parse_rules",
    "parse_target",
    "should_fall_back",
]
