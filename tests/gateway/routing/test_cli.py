"""``metis routing check``."""

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import Engine

from metis.db.tables import spend_counters
from tests.conftest import Cli


def test_check_valid_file_lists_rules_in_evaluation_order(cli: type[Cli], tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(
        """schema_version: 1
rules:
  - name: soft
    when: {team_cost_today_exceeds_usd: 1.00}
    use: anthropic:claude-haiku-4-5
  - name: scoped
    workspace: acme
    use: openai:gpt-4o-mini
    fallbacks: [anthropic:claude-haiku-4-5]
"""
    )
    r = cli.ok("routing", "check", str(f))
    assert "ok:" in r.stdout and "2 rules" in r.stdout
    r = cli.ok("routing", "check", str(f), "--json")
    doc = json.loads(r.stdout)
    assert [x["name"] for x in doc["rules"]] == ["scoped", "soft"]
    assert doc["rules"][1]["when"] == "team_cost_today_exceeds_usd > 1.000000000"
    assert doc["rules"][0]["fallbacks"] == ["anthropic:claude-haiku-4-5"]


def test_check_malformed_file_fails_naming_rule_and_field(cli: type[Cli], tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("schema_version: 1\nrules:\n  - {name: x, use: 'openai:m', when: {nope: 1}}\n")
    r = cli.run("routing", "check", str(f))
    assert r.exit_code == 1
    assert r.stderr.strip().startswith("error: ")
    assert 'rules[0] "x".when.nope: unknown predicate' in r.stderr
    assert "Traceback" not in r.output


def test_check_defaults_to_home_file_and_env_override(
    cli: type[Cli], metis_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli.run("routing", "check")
    assert r.exit_code == 1 and "routing.yaml: no such file" in r.stderr
    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text("schema_version: 1\n")
    assert "0 rules" in cli.ok("routing", "check").stdout
    other = tmp_path / "elsewhere.yaml"
    other.write_text("schema_version: 2\n")
    monkeypatch.setenv("METIS_ROUTING_FILE", str(other))
    r = cli.run("routing", "check")
    assert r.exit_code == 1 and "elsewhere.yaml: schema_version: must be 1" in r.stderr


def test_check_warns_about_targets_without_a_known_price(cli: type[Cli], tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(
        "schema_version: 1\nrules:\n  - {name: typo, use: 'anthropic:claude-haku-4-5',"
        " fallbacks: ['openai:gpt-4o-mini']}\n"
    )
    r = cli.ok("routing", "check", str(f))  # valid: a warning, not an error
    assert 'warning: rule "typo" use: no known price for anthropic:claude-haku-4-5' in r.stderr
    assert "gpt-4o-mini" not in r.stderr
    doc = json.loads(cli.ok("routing", "check", str(f), "--json").stdout)
    assert len(doc["warnings"]) == 1


def test_explain_uses_settled_spend_and_null_team(cli: type[Cli], engine: Engine) -> None:
    from metis.identity.keys import issue_key
    from metis.timeutil import day_key, utcnow
    from metis.workspaces import add_workspace

    with engine.begin() as conn:
        add_workspace(conn, "w")
        team_key, _ = issue_key(
            conn, name="a", workspace="w", user="alice", team="eng",
            create_user=True, create_team=True,
        )  # fmt: skip
        solo_key, _ = issue_key(conn, name="b", workspace="w", user="bob", create_user=True)
        conn.execute(
            spend_counters.insert().values(
                scope="team_daily", scope_id=team_key.team_id, period=day_key(utcnow()),
                spent_nanousd=1_500_000_000, reserved_nanousd=0, updated_at=utcnow(),
            )
        )  # fmt: skip
    home = Path(os.environ["METIS_HOME"])
    (home / "routing.yaml").write_text(
        "schema_version: 1\nrules:\n  - name: soft\n    when: {team_cost_today_exceeds_usd: 1}\n"
        "    use: anthropic:claude-haiku-4-5\n    reason: team soft cap\n"
    )
    doc = json.loads(
        cli.ok("routing", "explain", "--key", team_key.id, "--model", "gpt-4o", "--json").stdout
    )
    assert doc == {
        "key_id": team_key.id,
        "key_name": "a",
        "rule": "soft",
        "reason": "team soft cap",
        "candidates": ["anthropic:claude-haiku-4-5"],
        "spend_usd": {"team_daily": 1.5},
    }
    out = cli.ok("routing", "explain", "--key", solo_key.id, "--model", "gpt-4o").stdout
    assert "rule: (none" in out and "candidates: openai:gpt-4o" in out
    r = cli.run("routing", "explain", "--key", "key_nope", "--model", "m")
    assert r.exit_code == 1 and "unknown gateway key" in r.stderr
