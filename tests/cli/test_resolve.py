"""Names where ids were required (metis.cli.resolve), through the real commands.

For each kind: a unique name works, an ambiguous one is refused listing every
candidate with its id (and changes nothing), an unknown one is refused with
close names suggested. Plus the table layout that keeps ids whole.
"""

import json
import re

import pytest
from sqlalchemy import Engine

from tests.conftest import Cli
from tests.identity.helpers import dump

ID = re.compile(r"\b[a-z]+_[0-9A-HJKMNP-TV-Z]{26}\b")


@pytest.fixture
def acme(cli: type[Cli]) -> type[Cli]:
    cli.ok("workspace", "add", "acme")
    cli.ok("gateway", "user", "add", "--name", "Alice Liu", "--alias", "alice")
    cli.ok("gateway", "team", "add", "--name", "platform")
    return cli


def _issue(cli: type[Cli], name: str, *args: str) -> dict[str, str]:
    out = cli.ok("gateway", "issue-key", "--name", name, "--workspace", "acme", "--json", *args)
    return dict(json.loads(out.stdout))


def _refused(r: object, *needles: str) -> str:
    assert r.exit_code == 1, r.output  # type: ignore[attr-defined]
    err: str = r.stderr  # type: ignore[attr-defined]
    assert err.startswith("error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


# ---------------------------------------------------------------- gateway keys


def test_key_by_name_unique_ambiguous_unknown(acme: type[Cli], engine: Engine) -> None:
    laptop = _issue(acme, "alice-laptop", "--user", "alice", "--team", "platform")
    a = _issue(acme, "shared")
    b = _issue(acme, "shared")
    # unique: the issue's own example now works
    r = acme.ok("routing", "explain", "--key", "alice-laptop", "--model", "gpt-4o")
    assert f"key alice-laptop ({laptop['id']})" in r.stdout
    assert "user alice (" in r.stdout and "team platform (" in r.stdout
    # ambiguous: both candidates with their ids, nothing revoked
    before = dump(engine)
    err = _refused(acme.run("gateway", "revoke-key", "shared"), "'shared' fits 2 gateway keys")
    assert a["id"] in err and b["id"] in err and "use one of their ids" in err
    assert dump(engine) == before
    # unknown: a close name is suggested
    _refused(
        acme.run("gateway", "revoke-key", "alice-lap"),
        "unknown gateway key 'alice-lap'; did you mean 'alice-laptop'?",
    )
    # by id and by display prefix
    acme.ok("gateway", "revoke-key", a["id"])
    assert "revoked gateway key " + b["id"] in acme.ok("gateway", "revoke-key", b["prefix"]).stdout


def test_a_name_reused_after_a_revoke_means_the_live_key(acme: type[Cli]) -> None:
    old = _issue(acme, "ci")
    acme.ok("gateway", "revoke-key", "ci", "--reason", "rotated")
    new = _issue(acme, "ci")
    r = acme.ok("routing", "explain", "--key", "ci", "--model", "gpt-4o", "--json")
    assert json.loads(r.stdout)["key_id"] == new["id"] != old["id"]
    r = acme.ok("gateway", "revoke-key", "ci")
    assert new["id"] in r.stdout
    # now both are revoked: the name is ambiguous again
    _refused(acme.run("routing", "explain", "--key", "ci", "--model", "x"), "fits 2 gateway keys")


# ---------------------------------------------------------------- users and teams


def test_user_by_alias_display_name_and_case(acme: type[Cli], engine: Engine) -> None:
    acme.ok("gateway", "user", "add", "--name", "Sam Lee", "--alias", "sam")
    acme.ok("gateway", "user", "add", "--name", "Sam Lee", "--alias", "sam-l")
    k = _issue(acme, "k1", "--user", "Alice Liu")  # display name
    k2 = _issue(acme, "k2", "--user", "ALICE")  # alias in another case
    assert k["user_id"] == k2["user_id"] is not None
    before = dump(engine)
    err = _refused(
        acme.run(
            "gateway", "issue-key", "--name", "k3", "--workspace", "acme", "--user", "sam lee"
        ),
        "'sam lee' fits 2 users",
        "alias sam,",
        "alias sam-l,",
    )
    assert len(ID.findall(err)) == 2
    assert dump(engine) == before  # no key, no user created
    _refused(acme.run("gateway", "user", "disable", "alise"), "did you mean 'alice'?")
    assert "disabled user sam-l" in acme.ok("gateway", "user", "disable", "sam-l").stdout


def test_team_by_name_in_any_case(acme: type[Cli]) -> None:
    r = acme.ok("gateway", "team", "set-cap", "PLATFORM", "--monthly-cap-usd", "100")
    assert r.stdout.startswith("team platform:")
    _refused(
        acme.run("gateway", "team", "disable", "platfrom"),
        "unknown team 'platfrom'; did you mean 'platform'?",
    )


# ---------------------------------------------------------------- workspaces, credentials, tokens


def test_workspace_name_that_is_another_ones_path_is_ambiguous(cli: type[Cli]) -> None:
    cli.ok("workspace", "add", "a", "--path", "shared")
    cli.ok("workspace", "add", "shared")
    err = _refused(
        cli.run("gateway", "issue-key", "--name", "k", "--workspace", "shared"),
        "'shared' fits 2 workspaces",
        "a (path shared)",
        "shared (path -)",
    )
    assert len(ID.findall(err)) == 2


def test_credential_by_provider_workspace_slash_provider_and_last_four(cli: type[Cli]) -> None:
    for ws, secret in (("acme", "sk-proj-aaaaaaaaaaaa1111"), ("beta", "sk-proj-bbbbbbbbbbbb2222")):
        cli.ok("workspace", "add", ws)
        cli.ok("provider-key", "add", "-w", ws, "--provider", "openai", "--purpose", "inference",
               input=secret)  # fmt: skip
    err = _refused(
        cli.run("provider-key", "remove", "openai"),
        "'openai' fits 2 credentials",
        "acme/openai (inference, key …1111)",
        "beta/openai (inference, key …2222)",
    )
    assert len(ID.findall(err)) == 2
    assert "removed credential" in cli.ok("provider-key", "remove", "acme/openai").stdout
    assert "removed credential" in cli.ok("provider-key", "remove", "…2222").stdout
    _refused(cli.run("provider-key", "remove", "openai"), "unknown credential 'openai'")


def test_ingest_token_by_name(cli: type[Cli]) -> None:
    cli.ok("workspace", "add", "acme")
    cli.ok("ingest", "token", "create", "--workspace", "acme", "--name", "laptop-hermes")
    assert "revoked ingest token" in cli.ok("ingest", "token", "revoke", "laptop-hermes").stdout
    listing = cli.ok("ingest", "token", "list", "--wide").stdout
    assert "acme" in listing and "ws_" not in listing  # the workspace by name
    _refused(cli.run("ingest", "token", "revoke", "laptop"), "unknown ingest token 'laptop'")


# ---------------------------------------------------------------- tables keep ids whole


def test_tables_at_80_columns_never_cut_an_id(
    acme: type[Cli], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    keys = [_issue(acme, f"key-with-a-long-name-{i}", "--user", "alice") for i in range(3)]
    out = acme.ok("gateway", "list-keys").stdout
    assert all(len(line) <= 80 for line in out.splitlines()), out
    for k in keys:  # each id whole, on one line, next to its name
        assert re.search(rf"^id\s+{k['id']}$", out, re.M), out
    users = acme.ok("gateway", "user", "list").stdout
    assert re.search(r"^disabled\s+no$", users, re.M) and "False" not in users  # not a bool
    wide = acme.ok("gateway", "list-keys", "--wide").stdout
    assert wide.splitlines()[1].split() == [
        "id", "name", "prefix", "workspace", "user", "team", "models", "daily", "cap", "$",
        "revoked",
    ]  # fmt: skip
    for k in keys:  # one row per key, the id whole
        assert any(line.startswith(k["id"] + " ") for line in wide.splitlines()), wide
