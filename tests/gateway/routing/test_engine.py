"""Rule evaluation: predicates, snapshot semantics, ordering, fallback chains."""

from collections.abc import Callable

import pytest

from metis.gateway.routing import (
    RouteContext,
    Target,
    decide,
    parse_rules,
    should_fall_back,
)
from metis.money import to_nanousd

DEFAULT = Target("openai", "gpt-4o")


def spend(**by_scope: str) -> tuple[Callable[[str, str], int], list[tuple[str, str]]]:
    """A reader: ``team_daily="1.50"`` etc.; records every read."""
    reads: list[tuple[str, str]] = []

    def read(scope: str, scope_id: str) -> int:
        reads.append((scope, scope_id))
        return to_nanousd(by_scope.get(scope, "0"))

    return read, reads


def ctx(**kw: object) -> RouteContext:
    base: dict[str, object] = {
        "model": "gpt-4o",
        "inbound_shape": "openai",
        "workspace_refs": frozenset({"ws_1", "acme"}),
        "key_id": "key_1",
        "user_id": "usr_1",
        "team_id": "team_1",
    }
    base.update(kw)
    return RouteContext(**base)  # type: ignore[arg-type]


SOFT_CAP = """
schema_version: 1
rules:
  - name: team-soft-cap
    when: {team_cost_today_exceeds_usd: 1.00}
    use: anthropic:claude-haiku-4-5
    reason: team daily soft cap hit; routing to haiku
"""


def test_spec_soft_cap_team_over_threshold_routes_to_rule_target() -> None:
    read, reads = spend(team_daily="1.50")
    d = decide(parse_rules(SOFT_CAP), ctx(), DEFAULT, read)
    assert d.candidates == (Target("anthropic", "claude-haiku-4-5"),)
    assert d.rule == "team-soft-cap"
    assert d.reason == "team daily soft cap hit; routing to haiku"
    assert reads == [("team_daily", "team_1")]


def test_soft_cap_at_or_under_threshold_does_not_match() -> None:
    read, _ = spend(team_daily="1.00")
    d = decide(parse_rules(SOFT_CAP), ctx(), DEFAULT, read)
    assert d.candidates == (DEFAULT,)
    assert d.rule is None and d.reason == "default"


def test_null_team_never_matches_and_reads_nothing() -> None:
    read, reads = spend(team_daily="99")
    d = decide(parse_rules(SOFT_CAP), ctx(team_id=None), DEFAULT, read)
    assert d.rule is None
    assert reads == []


@pytest.mark.parametrize(
    ("predicate", "scope", "ctx_field"),
    [
        ("cost_today_exceeds_usd", "key_daily", "key_id"),
        ("user_cost_today_exceeds_usd", "user_daily", "user_id"),
        ("team_cost_today_exceeds_usd", "team_daily", "team_id"),
        ("team_cost_month_exceeds_usd", "team_monthly", "team_id"),
    ],
)
def test_each_spend_predicate_reads_its_scope(predicate: str, scope: str, ctx_field: str) -> None:
    rules = parse_rules(
        f"schema_version: 1\nrules:\n  - {{name: r, use: 'anthropic:c', when: {{{predicate}: 2}}}}"
    )
    over, _ = spend(**{scope: "2.000000001"})
    under, _ = spend(**{scope: "2"})
    assert decide(rules, ctx(), DEFAULT, over).rule == "r"
    assert decide(rules, ctx(), DEFAULT, under).rule is None
    assert decide(rules, ctx(**{ctx_field: None}), DEFAULT, over).rule is None


def test_snapshot_reads_each_value_once_per_decision() -> None:
    rules = parse_rules(
        """
schema_version: 1
rules:
  - {name: a, use: 'anthropic:a', when: {team_cost_today_exceeds_usd: 5, model: other}}
  - {name: b, use: 'anthropic:b', when: {team_cost_today_exceeds_usd: 5}}
  - {name: c, use: 'anthropic:c', when: {team_cost_today_exceeds_usd: 1}}
"""
    )
    read, reads = spend(team_daily="2")
    assert decide(rules, ctx(), DEFAULT, read).rule == "c"
    # rule a is rejected on its model before any spend read; b and c share one read
    assert reads == [("team_daily", "team_1")]


def test_model_shape_and_workspace_predicates() -> None:
    rules = parse_rules(
        """
schema_version: 1
rules:
  - {name: by-model, use: 'anthropic:m1', when: {model: gpt-4.1}}
  - {name: by-set, use: 'anthropic:m2', when: {model_in: [o3, o4-mini]}}
  - {name: by-shape, use: 'openai:m3', when: {inbound_shape: anthropic}}
  - {name: by-ws, use: 'openai:m4', when: {workspace: acme, model: special}}
"""
    )
    read, _ = spend()
    assert decide(rules, ctx(model="gpt-4.1"), DEFAULT, read).rule == "by-model"
    assert decide(rules, ctx(model="o4-mini"), DEFAULT, read).rule == "by-set"
    assert decide(rules, ctx(inbound_shape="anthropic", model="claude"), DEFAULT, read).rule == (
        "by-shape"
    )
    assert decide(rules, ctx(model="special"), DEFAULT, read).rule == "by-ws"
    assert (
        decide(rules, ctx(model="special", workspace_refs=frozenset({"other"})), DEFAULT, read).rule
        is None
    )


def test_first_match_wins_and_workspace_rules_come_first() -> None:
    rules = parse_rules(
        """
schema_version: 1
rules:
  - {name: global-1, use: 'openai:g1'}
  - {name: scoped, workspace: acme, use: 'openai:s'}
  - {name: scoped-other, workspace: beta, use: 'openai:b'}
  - {name: global-2, use: 'openai:g2'}
"""
    )
    read, _ = spend()
    assert decide(rules, ctx(), DEFAULT, read).rule == "scoped"
    assert decide(rules, ctx(workspace_refs=frozenset({"ws_9"})), DEFAULT, read).rule == "global-1"
    assert decide(rules, ctx(workspace_refs=frozenset({"beta"})), DEFAULT, read).rule == (
        "scoped-other"
    )


def test_fallback_chain_rule_then_model_fallbacks_deduplicated() -> None:
    rules = parse_rules(
        """
schema_version: 1
rules:
  - name: r
    when: {model: gpt-4.1}
    use: anthropic:claude-sonnet-4-5
    fallbacks: [openai:gpt-4o, anthropic:claude-haiku-4-5]
fallbacks:
  claude-sonnet-4-5: [anthropic:claude-haiku-4-5, openai:gpt-4o-mini]
  gpt-4o: [openai:gpt-4o-mini]
"""
    )
    read, _ = spend()
    d = decide(rules, ctx(model="gpt-4.1"), DEFAULT, read)
    assert d.candidate_names == [
        "anthropic:claude-sonnet-4-5",
        "openai:gpt-4o",
        "anthropic:claude-haiku-4-5",
        "openai:gpt-4o-mini",
    ]
    # no rule matched: the request's own model and its model-level fallbacks
    d = decide(rules, ctx(), DEFAULT, read)
    assert d.candidate_names == ["openai:gpt-4o", "openai:gpt-4o-mini"]
    assert d.rule is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (413, False),
        (422, False),
    ],
)
def test_should_fall_back_only_on_429_5xx_and_no_response(
    status: int | None, expected: bool
) -> None:
    assert should_fall_back(status) is expected
