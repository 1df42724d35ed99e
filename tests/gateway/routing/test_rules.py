"""Loading and validating the rules file."""

import pytest

from metis.gateway.routing import RoutingConfigError, Target, parse_rules
from metis.money import to_nanousd

H = "schema_version: 1\nrules:\n"

SPEC_EXAMPLE = """\
schema_version: 1
rules:
- name: "team-eng-daily-soft-cap"
  when:
    team_cost_today_exceeds_usd: 50
  use: anthropic:claude-haiku-4-5
  reason: "team daily soft cap hit; routing to haiku"
- name: "team-eng-monthly-soft-cap"
  when:
    team_cost_month_exceeds_usd: 1000
  use: anthropic:claude-haiku-4-5
  reason: "team monthly soft cap hit; routing to haiku"
"""


def test_spec_example_loads() -> None:
    rs = parse_rules(SPEC_EXAMPLE)
    assert [r.name for r in rs.rules] == ["team-eng-daily-soft-cap", "team-eng-monthly-soft-cap"]
    first = rs.rules[0]
    assert first.use == Target("anthropic", "claude-haiku-4-5")
    assert first.when.team_cost_today_exceeds == to_nanousd("50")
    assert rs.rules[1].when.team_cost_month_exceeds == to_nanousd("1000")
    assert first.reason == "team daily soft cap hit; routing to haiku"


def test_every_field_and_predicate() -> None:
    rs = parse_rules(
        """
schema_version: 1
rules:
  - name: all
    workspace: acme
    when:
      cost_today_exceeds_usd: "0.10"
      user_cost_today_exceeds_usd: 1.5
      team_cost_today_exceeds_usd: 2
      team_cost_month_exceeds_usd: 30
      model: gpt-4o
      model_in: [gpt-4o, gpt-4.1]
      workspace: acme
      inbound_shape: openai
    use: "openai:gpt-4o-mini"
    fallbacks: ["anthropic:claude-haiku-4-5"]
  - name: catch-all
    when: {}
    use: openai:gpt-4o-mini
fallbacks:
  gpt-4o-mini: [anthropic:claude-haiku-4-5]
  "anthropic:claude-haiku-4-5": ["openai:gpt-4o-mini"]
"""
    )
    r = rs.rules[0]
    assert r.workspace == "acme"
    assert r.when.cost_today_exceeds == 100_000_000
    assert r.when.user_cost_today_exceeds == 1_500_000_000
    assert r.when.model_in == frozenset({"gpt-4o", "gpt-4.1"})
    assert r.when.inbound_shape == "openai"
    assert r.fallbacks == (Target("anthropic", "claude-haiku-4-5"),)
    assert r.reason == "rule all"
    assert rs.fallbacks_for(Target("openai", "gpt-4o-mini")) == (
        Target("anthropic", "claude-haiku-4-5"),
    )
    assert rs.fallbacks_for(Target("anthropic", "claude-haiku-4-5")) == (
        Target("openai", "gpt-4o-mini"),
    )


def test_empty_file_sections() -> None:
    assert parse_rules("schema_version: 1\n").rules == ()
    assert parse_rules("schema_version: 1\nrules: []\n").rules == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must be a mapping"),
        ("rules: []", "schema_version: must be 1, got None"),
        ("schema_version: 2", "schema_version: must be 1, got 2"),
        ("schema_version: 1\nrules: {}", "rules: must be a list"),
        ("schema_version: 1\nextra: 1", "unknown top-level field 'extra'"),
        ("schema_version: 1\nrules: [1]", "rules[0]: must be a mapping"),
        (
            "schema_version: 1\nrules:\n  - when: {}\n    use: openai:m",
            "rules[0].name: must be a non-empty string",
        ),
        ("schema_version: 1\nrules:\n  - name: a\n", 'rules[0] "a".use: required'),
        (
            "schema_version: 1\nrules:\n  - name: a\n    use: gpt-4o",
            "rules[0] \"a\".use: must be 'provider:model'",
        ),
        (
            "schema_version: 1\nrules:\n  - name: a\n    use: Azure/EU:gpt-4o",
            "rules[0] \"a\".use: invalid provider 'Azure/EU'",
        ),
        (
            "schema_version: 1\nrules:\n  - name: a\n    use: 'openai:'",
            'rules[0] "a".use: model is empty',
        ),
        (
            H + "  - {name: a, use: 'openai:m'}\n  - {name: b, use: 'openai:m',"
            " when: {team_cost_today_exceeds_usd: -1}}",
            'rules[1] "b".when.team_cost_today_exceeds_usd: must be a non-negative number',
        ),
        (
            H + "  - {name: a, use: 'openai:m', when: {cost_today_exceeds_usd: x}}",
            'rules[0] "a".when.cost_today_exceeds_usd: must be a non-negative number',
        ),
        (
            "schema_version: 1\nrules:\n  - {name: a, use: 'openai:m', when: {team_cost: 1}}",
            'rules[0] "a".when.team_cost: unknown predicate',
        ),
        (
            "schema_version: 1\nrules:\n  - {name: a, use: 'openai:m', when: {model_in: []}}",
            'rules[0] "a".when.model_in: must be a non-empty list',
        ),
        (
            H + "  - {name: a, use: 'openai:m', when: {inbound_shape: grpc}}",
            'rules[0] "a".when.inbound_shape: must be',
        ),
        (
            "schema_version: 1\nrules:\n  - {name: a, use: 'openai:m', when: [1]}",
            'rules[0] "a".when: must be a mapping',
        ),
        (
            "schema_version: 1\nrules:\n  - {name: a, use: 'openai:m', fallbacks: openai:x}",
            'rules[0] "a".fallbacks: must be a list',
        ),
        (
            "schema_version: 1\nrules:\n  - {name: a, use: 'openai:m', fallbacks: [x]}",
            'rules[0] "a".fallbacks[0]: must be',
        ),
        (
            "schema_version: 1\nrules:\n  - {name: a, use: 'openai:m', usee: 1}",
            "rules[0] \"a\": unknown field 'usee'",
        ),
        (
            H + "  - {name: a, use: 'openai:m'}\n  - {name: a, use: 'openai:m'}",
            "rules[1] \"a\".name: duplicate rule name 'a'",
        ),
        ("schema_version: 1\nfallbacks: [1]", "fallbacks: must be a mapping"),
        ("schema_version: 1\nfallbacks: {gpt-4o: [nope]}", "fallbacks.gpt-4o[0]: must be"),
        ("schema_version: 1\nrules:\n  - name: [unclosed\n", "invalid YAML at line 4, column 1"),
    ],
)
def test_malformed_files_name_the_rule_and_field(text: str, message: str) -> None:
    with pytest.raises(RoutingConfigError) as ei:
        parse_rules(text, "routing.yaml")
    assert ei.value.message.startswith("routing.yaml: ")
    assert message in ei.value.message
    assert "\n" not in ei.value.message
